"""DecomCAM (Yang et al., 2024), as described in docs/method.md.

Stage 1 (decompose): gradient-weighted activation maps of the top-P channels -> truncated SVD -> OSSMs.
Stage 2 (integrate): each OSSM masks the image over a blurred reference; how much of the score it restores
weights it in the final map. All pairs (image, prompt) are processed together on the model's device.
"""
from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from ..explanation import Explanation, combine_ossms
from ..knobs import Knob
from ..models import CLIPModel
from ..models.attnpool import BlendedAttentionPool, is_attention_pool
from ..models.taps import tap
from ..ops import blurred_reference, embed_masked, minmax, pair_score, to_host, upsample
from .base import CAM
from .decompose import (SVD_DRIVERS, Decomposition, _svd, decompose, decompose_nmf,  # noqa: F401
                        decompose_with, gram_svd, select_channels)
from .targets import target_matrix

SIGN_RULES = ("gradcam", "both", "svd_flip")
BLENDS = ("convex", "max")
CONTRIBUTIONS = ("gain", "raw")
WEIGHT_NORMS = ("max", "minmax")
INTEGRATIONS = ("pixel", "feature", "none")
UPSAMPLING = ("bilinear", "bicubic")
DECOMPOSITIONS = ("svd", "nmf")


def integration_weights(contributions: torch.Tensor, threshold: float, norm: str) -> torch.Tensor:
    """Step 10: w_k = max(d_k, 0) / max_j d_j (or min-max), zeroed below `threshold` (of the max)."""
    d = contributions
    top = d.amax(dim=-1, keepdim=True)
    if norm == "max":
        w = d.clamp_min(0) / top.clamp_min(1e-12)
        w = torch.where(top > 0, w, torch.zeros_like(w))
    else:
        low = d.amin(dim=-1, keepdim=True)
        span = top - low
        w = torch.where(span > 0, (d - low) / span.clamp_min(1e-12), torch.zeros_like(d))
    return torch.where(w < threshold, torch.zeros_like(w), w)


def ossm_pooled(ossms_lowres: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """The activation vector under each OSSM: sum_cells OSSM_k(cell) A(:, cell) / sum OSSM_k, (B, T, K, C).

    A component-level descriptor of what the layer sees in the component's region (zero for an empty OSSM).
    """
    B, T, K = ossms_lowres.shape[:3]
    weights = ossms_lowres.reshape(B, T, K, -1)
    weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)
    return torch.einsum("btkn,bcn->btkc", weights, activations.reshape(B, activations.shape[1], -1))


def _pair_index(B: int, T: int, K: int, device):
    """For items laid out (B, T, K) and flattened: the image and the prompt of each item."""
    image_of = torch.arange(B, device=device).repeat_interleave(T * K)
    prompt_of = torch.arange(T, device=device).repeat_interleave(K).repeat(B)
    return image_of, prompt_of


def _pick(flip: torch.Tensor, stacked: torch.Tensor) -> torch.Tensor:
    """From (B, T, 2K, ...) holding both orientations, the second half where `flip` (B, T, K) is set."""
    K = flip.shape[-1]
    cond = flip.reshape(*flip.shape, *[1] * (stacked.ndim - 3))
    return torch.where(cond, stacked[:, :, K:], stacked[:, :, :K])


class DecomCAM(CAM):
    """DecomCAM: decomposition into orthogonal sub-saliency maps (OSSMs) and their integration.

    Parameters
    ----------
    model : CLIPModel
    n_components : K, number of singular components kept (clipped to the rank with a warning).
    top_channels : P, channels kept by largest (signed) Grad-CAM weight alpha_c (clipped to C).
    layer : layer to tap; default ``model.default_layer``.
    center : centre each column of X before the SVD (PCA, as the authors' code) or not (plain SVD).
    sign : "gradcam" (orient u_k to correlate with Grad-CAM), "both" (score both orientations, keep the better)
        or "svd_flip" (the largest-magnitude entry of u_k positive, as the authors' code).
    blur_sigma : Gaussian sigma in pixels at 224 px for the reference image (scaled with the input size).
    score : "cosine", "logit" or "softmax" (over the prompts of the call and ``contrast``).
    contrast : prompts that enter the softmax without being explained (class-discriminative maps).
    weight_threshold : weights below this share of the largest are set to 0.
    weight_norm : "max" (w = max(d, 0) / max d) or "minmax" (the paper's figure).
    integration : "pixel" (masked images, the method), "feature" (mask the tapped activations and run only the
        rest of the tower; much cheaper, a different method) or "none" (OSSMs weighted by singular value; ablation).
    upsample : "bilinear" or "bicubic" for OSSMs to input resolution.
    blend : "convex" (x_k = M_k x + (1 - M_k) r) or "max" (element-wise max(M_k x, (1 - M_k) r), the authors' code).
    contribution : "gain" (d_k = s(x_k) - s(r)) or "raw" (d_k = s(x_k), the authors' code).
    batch_size : masked images per forward pass (None: 8 on a CPU, 32 on a GPU).
    autocast : None, "bf16" or "fp16" for the towers; the SVD always runs in fp32.
    svd_driver : "auto" (default: "gram" when P >= 2 n, the cells n being much fewer than the channels P,
        else torch's default), "gram" (the SVD through the n x n Gram matrix X X^T, a batched ``eigh``), None
        (torch's default SVD) or a cuSOLVER driver, "gesvd", "gesvdj" or "gesvda", for models on a GPU
        (ignored on the CPU). "gesvda" is an approximate SVD for wide matrices: on an H200 it took DecomCAM's
        SVD of 32 ViT-B-16 pairs from 194 ms to 9 ms (BENCHMARKS.md). "gram" and "gesvda" treat components
        below 1e-3 of the largest singular value as zero (fp32 resolves no finer through X X^T).

    decomposition : how the gradient-weighted maps are split into components. "svd" (the paper: orthogonal
        components, signed contrasts after the first), "nmf" (non-negative components of the positive part, as
        Deep Feature Factorization and CRAFT do; ``center`` does not apply), or a function
        ``X (pairs, cells, channels) -> maps (pairs, K, cells)`` (see `decompose_with`). Everything after the
        split (integration, weights, the Explanation) is the same.
    nmf_iter, nmf_tol : most multiplicative updates of the NMF, and its stopping tolerance (the fall of the error
        over 10 iterations, as a share of the matrix's squared norm).

    Calling it returns an `Explanation` with every intermediate (see ``decomviz.explanation.ARRAY_FIELDS``).
    """

    method = "decomcam"
    _knobs = (
        Knob("n_components", "int", "K, singular components kept (clipped to the rank)", low=1, widget=(1, 30, 1)),
        Knob("top_channels", "int", "P, channels kept by largest signed Grad-CAM weight alpha_c (clipped to the "
             "layer's channel count)", low=1, widget=(1, 2048, 1)),
        Knob("center", "bool", "centre each channel column before the SVD (PCA) instead of a plain SVD"),
        Knob("sign", "choice", "orient each component by the Grad-CAM map, score both orientations and keep the "
             "one that restores more, or make the largest entry of u_k positive (svd_flip, the authors' code)",
             choices=SIGN_RULES),
        Knob("blur_sigma", "float", "Gaussian sigma of the blurred reference, in pixels at 224 px", low=0,
             open_low=True, widget=(0.5, 40.0, 0.5)),
        Knob("weight_threshold", "float", "weights below this share of the largest become 0", low=0, high=1,
             open_high=True, widget=(0.0, 0.5, 0.01), advanced=True),
        Knob("weight_norm", "choice", "w = max(d, 0) / max d, or min-max of d", choices=WEIGHT_NORMS, advanced=True),
        Knob("integration", "choice", "pixel: mask the image (the method); feature: mask the activations at the "
             "tap (cheaper, a different method); none: weigh OSSMs by singular value", choices=INTEGRATIONS),
        Knob("upsample", "choice", "interpolation of OSSMs to the input size", choices=UPSAMPLING, advanced=True),
        Knob("blend", "choice", "masked input: the convex M x + (1 - M) r, or the element-wise max(M x, (1 - M) r) "
             "of the authors' code", choices=BLENDS, advanced=True),
        Knob("contribution", "choice", "d_k: the score restored over the reference, s(x_k) - s(r), or the raw "
             "s(x_k) of the authors' code", choices=CONTRIBUTIONS, advanced=True),
        Knob("svd_driver", "choice", "SVD route: auto (Gram matrix when channels >= 2 x cells), gram, torch's "
             "default (None), or a cuSOLVER driver for models on a GPU",
             choices=SVD_DRIVERS, advanced=True),
        Knob("decomposition", "choice", "how the gradient-weighted maps are split: svd (the paper: orthogonal, "
             "signed contrasts) or nmf (non-negative parts of the positive evidence); in Python also a function",
             choices=DECOMPOSITIONS, callable_ok=True),
        Knob("nmf_iter", "int", "most NMF iterations (multiplicative updates)", low=1, widget=(10, 1000, 10),
             advanced=True),
        Knob("nmf_tol", "float", "NMF stops when the error fell by less than this share over 10 iterations",
             low=0, widget=(0.0, 0.01, 0.0001), advanced=True),
    )

    def __init__(self, model: CLIPModel, n_components: int = 10, top_channels: int = 500,
                 layer: Optional[str] = None, center: bool = True, sign: str = "gradcam",
                 blur_sigma: float = 10.0, score: str = "cosine", weight_threshold: float = 0.01,
                 weight_norm: str = "max", integration: str = "pixel", upsample: str = "bilinear",
                 batch_size: Optional[int] = None, autocast: Optional[str] = None, svd_driver: Optional[str] = "auto",
                 blend: str = "convex", contribution: str = "gain", contrast: Sequence[str] = (),
                 decomposition="svd", nmf_iter: int = 200, nmf_tol: float = 1e-4):
        super().__init__(model, layer=layer, score=score, batch_size=batch_size, autocast=autocast,
                         contrast=contrast)
        self._set_knobs(n_components=n_components, top_channels=top_channels, center=center, sign=sign,
                        blur_sigma=blur_sigma, weight_threshold=weight_threshold, weight_norm=weight_norm,
                        integration=integration, upsample=upsample, svd_driver=svd_driver, blend=blend,
                        contribution=contribution, decomposition=decomposition, nmf_iter=nmf_iter,
                        nmf_tol=nmf_tol)
        if self.decomposition == "nmf" and self.sign != "gradcam":
            raise ValueError(f"sign={self.sign!r} orients signed SVD components; NMF components are non-negative and "
                             "need no orientation. Use sign='gradcam' (the default) with decomposition='nmf'.")
        if callable(self.decomposition) and self.sign == "svd_flip":
            raise ValueError("sign='svd_flip' is the SVD's sign rule; a decomposition function's maps are used as "
                             "given. Use sign='gradcam' or sign='both'.")
        if self.integration == "feature" and self.blend != "convex":
            raise ValueError("blend='max' is a pixel-space blend; feature-space integration blends activations "
                             "convexly. Use integration='pixel' with blend='max'.")

    # ----------------------------------------------------------------- the method
    def _explain(self, x: torch.Tensor, text: torch.Tensor, prompts: List[str]) -> Explanation:
        tapped = self._tapped(x, text)
        B, C, h, w = tapped.activations.shape
        self._warn_rank(C, h * w)
        dec = self.decompose(tapped.activations, tapped.gradients)
        K = dec.u.shape[2]
        flags = {"zero_gradient": (dec.alpha == 0).all(dim=-1), "rank_deficient": dec.null.any(dim=-1)}
        if self.integration == "none":
            ossms = self._upsampled(dec.spatial().clamp_min(0).reshape(B, -1, K, h, w), x.shape[-2:])
            top = dec.singular_values[..., :1]
            weights = torch.where(top > 0, dec.singular_values / top.clamp_min(1e-30),
                                  torch.zeros_like(dec.singular_values))
            extra: Dict[str, torch.Tensor] = {}
        else:
            ossms, weights, extra = self._integrate(x, text, tapped, dec, flags)
        ossms_lowres = dec.spatial().clamp_min(0).reshape(B, -1, K, h, w)  # after any sign flips
        saliency = combine_ossms(ossms, weights)
        flags["empty_map"] = saliency.amax(dim=(-2, -1)) <= 0
        arrays = dict(saliency=saliency, ossms=ossms, ossms_lowres=ossms_lowres, u=dec.u, v=dec.v,
                      singular_values=dec.singular_values, explained_variance=dec.explained_variance,
                      weights=weights, channels=dec.channels, alpha=dec.alpha,
                      gradcam_lowres=dec.gradcam.reshape(B, -1, h, w), base_score=tapped.base_score,
                      pooled=ossm_pooled(ossms_lowres, tapped.activations), **extra)
        self._warn_flags(flags, prompts)
        method = {"pixel": self.method, "feature": "decomcam-feature", "none": "decomcam-nointegration"}
        arrays, flags = to_host(arrays, flags)
        return Explanation(method=method[self.integration], prompts=prompts, images=None, flags=flags,
                           params={"grid": [h, w], "n_channels": C, "n_components_used": K}, **arrays)

    def decompose(self, activations: torch.Tensor, gradients: torch.Tensor) -> Decomposition:
        """Stage 1 with this method's knobs: activations (B, C, h, w) and gradients (B, T, C, h, w), as
        `decomviz.tap_gradients` gives them, to the split of every (image, prompt) pair."""
        if self.decomposition == "nmf":
            return decompose_nmf(activations, gradients, self.top_channels, self.n_components, self.nmf_iter,
                                 self.nmf_tol)
        if callable(self.decomposition):
            return decompose_with(self.decomposition, activations, gradients, self.top_channels,
                                  self.n_components)
        return decompose(activations, gradients, self.top_channels, self.n_components, self.center,
                         self.svd_driver, orient="svd_flip" if self.sign == "svd_flip" else "gradcam")

    def _integrate(self, x, text, tapped, dec: Decomposition, flags):
        """Stage 2 (steps 7-10). Returns the upsampled OSSMs, the weights and the integration's arrays;
        with sign="both" it re-orients `dec` in place where the negative orientation restores more."""
        h, w = tapped.activations.shape[-2:]
        K = dec.u.shape[2]
        ref = blurred_reference(x, self.blur_sigma)
        both = self.sign == "both"
        spatial = torch.cat([dec.spatial(), dec.spatial(-1.0)], dim=2) if both else dec.spatial()
        lowres = spatial.clamp_min(0).reshape(*spatial.shape[:3], h, w)
        ossms = self._upsampled(lowres, x.shape[-2:])
        if self.integration == "pixel":
            emb, masked, ref_score = self._score_masked(x, ref, ossms, text)
        else:
            emb, masked, ref_score = self._score_masked_features(tapped, ref, lowres, text)
        d = self.contribution_of(masked, ref_score)
        if both:
            flip = d[..., K:] > d[..., :K]  # (B, T, K)
            ossms, emb, masked, d = (_pick(flip, t) for t in (ossms, emb, masked, d))
            sign = torch.where(flip, -1.0, 1.0)[..., None]
            dec.u, dec.v = dec.u * sign, dec.v * sign
            flags["sign_flipped"] = flip.any(dim=-1)
        flags["no_positive_contribution"] = d.amax(dim=-1) <= 0
        weights = integration_weights(d, self.weight_threshold, self.weight_norm)
        extra = dict(contributions=d, masked_scores=masked, reference_score=ref_score, embeddings=emb,
                     reference_images=self._pixels(ref))
        return ossms, weights, extra

    def contribution_of(self, masked_scores: torch.Tensor, reference_score: torch.Tensor) -> torch.Tensor:
        """Step 10's contribution d of masked scores (..., N) given s(r, t) (...): the gain over the reference
        (contribution="gain") or the masked score itself ("raw"). `integration_weights` turns d into weights."""
        return masked_scores - reference_score[..., None] if self.contribution == "gain" else masked_scores

    def score_masks(self, images, prompts, masks) -> Dict[str, torch.Tensor]:
        """Stage 2 on masks of your own, with this method's knobs (blend, integration, blur_sigma, score, ...):
        masks (B, T, N, H, W) at the input size, or on the layer's grid with integration="feature", are min-max
        normalised, blended and scored as OSSMs are. Returns "masked_scores", "contributions" (B, T, N),
        "reference_score" and "score" (B, T), the last of the whole image; for the OSSMs themselves, the
        Explanation's arrays of the same names."""
        with self.model.lock:
            names, text = target_matrix(self.model, prompts, self.contrast)
            x = self.model.prepare(images).tensor
            m, ref = torch.as_tensor(masks, dtype=torch.float32, device=x.device), blurred_reference(x, self.blur_sigma)
            tapped = self._tapped(x, text, gradients=False) if self.integration == "feature" else None
            want = (x.shape[0], len(names), *(tapped.activations if tapped is not None else x).shape[-2:])
            if m.dim() != 5 or (*m.shape[:2], *m.shape[-2:]) != want:
                raise ValueError(f"masks must have shape (B, T, N, H, W) = {want[:2] + ('N',) + want[2:]} with "
                                 f"integration={self.integration!r}; got {tuple(m.shape)}.")
            _, masked, ref_score = (self._score_masked(x, ref, m, text) if tapped is None
                                    else self._score_masked_features(tapped, ref, m, text))
            with torch.no_grad():
                full = self._scores(self._embed(x), text).float().cpu()
        masked, ref_score = masked.float().cpu(), ref_score.float().cpu()
        return {"masked_scores": masked, "reference_score": ref_score, "score": full,
                "contributions": self.contribution_of(masked, ref_score)}

    def _upsampled(self, maps: torch.Tensor, size) -> torch.Tensor:
        up = upsample(maps, size, mode=self.upsample)
        return up.clamp_min(0) if self.upsample == "bicubic" else up

    def _score_masked(self, x, ref, ossms, text):
        """Steps 8-9: x_k = M_k x + (1 - M_k) r for every (b, t, k), and the references r_b, in batches.
        Returns masked-input embeddings (B, T, K, D), their scores (B, T, K) and s(r, t) (B, T)."""
        B, T, K, H, W = ossms.shape
        masks = minmax(ossms).reshape(B * T * K, 1, H, W)
        image_of, prompt_of = _pair_index(B, T, K, x.device)
        ref_score = self._scores(self._embed_batched(lambda i, j: ref[i:j], B), text)
        emb = embed_masked(self._embed, x, ref, masks, image_of, self.batch_size, how=self.blend)
        scores = pair_score(emb, text, prompt_of, self.score, self.model.logit_scale)
        return emb.reshape(B, T, K, -1), scores.reshape(B, T, K), ref_score

    def _score_masked_features(self, tapped, ref, ossms_lowres, text):
        """Feature-space integration (an option, not the paper's method): blend the tapped activations of the
        image and of the blurred reference with each low-resolution mask, and run only the rest of the tower."""
        B, T, K, h, w = ossms_lowres.shape
        with tap(self.model, self.layer, requires_grad=False) as ref_tap, torch.no_grad():
            ref_score = self._scores(self._embed(ref), text)
        masks = minmax(ossms_lowres).reshape(B * T * K, h, w)
        image_of, prompt_of = _pair_index(B, T, K, ref.device)

        pool = self.model.tower.pooling_head(self.layer)
        if pool is not None and is_attention_pool(pool):
            # the tail is the attention pool alone: blend its projections instead of running it per mask
            blended = BlendedAttentionPool(pool, tapped.tap.raw, ref_tap.raw)

            def make(i, j):
                return image_of[i:j], masks[i:j]

            def run(args):
                return blended(*args)
        else:
            def make(i, j):
                return tapped.tap.blend(image_of[i:j], ref_tap.raw, masks[i:j])

            def run(raw):
                return self.model.forward_from(self.layer, raw)

        def tail(batch):
            with self._autocast():
                return F.normalize(run(batch).float(), dim=-1)

        emb = self._embed_batched(make, B * T * K, embed=tail)
        scores = pair_score(emb, text, prompt_of, self.score, self.model.logit_scale)
        return emb.reshape(B, T, K, -1), scores.reshape(B, T, K), ref_score

    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        return ((x * self.model.std + self.model.mean).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)

    def _warn_rank(self, C: int, n: int) -> None:
        P = min(self.top_channels, C)
        rank = min(n - int(self.center and self.decomposition == "svd"), P)
        if self.n_components > rank:
            warnings.warn(f"n_components={self.n_components} exceeds the rank ({rank}) of the {n} x {P} matrix of "
                          f"this layer; using {min(self.n_components, n, P)} components, of which those beyond the "
                          "rank have zero singular value and zero weight.", stacklevel=4)

    @staticmethod
    def _warn_flags(flags: Dict[str, torch.Tensor], prompts: List[str]) -> None:
        none_pos = flags.get("no_positive_contribution")
        if none_pos is not None and bool(none_pos.any()):
            pairs = none_pos.nonzero().tolist()
            warnings.warn(f"No component raised the score over the blurred reference for {len(pairs)} "
                          f"(image, prompt) pair(s), e.g. image {pairs[0][0]} with {prompts[pairs[0][1]]!r}: their "
                          "saliency is all zero; see exp.flags['no_positive_contribution'] and exp.contributions.",
                          stacklevel=4)
