"""Localisation metrics on ground-truth masks. Each takes single maps (H, W) or batches (..., H, W).

Results come back as a `MetricResult`: the values plus the protocol record that makes them comparable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Union

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = Union[np.ndarray, torch.Tensor]
REFERENCE_SIZE = 224


@dataclass
class MetricResult:
    """Per-map values (shape of the batch dims) and the protocol record; `mean` over all maps."""

    name: str
    values: torch.Tensor
    protocol: Dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(self.values.float().mean()) if self.values.numel() else float("nan")

    def __float__(self) -> float:
        return self.mean

    def __repr__(self) -> str:
        return f"{self.name}: {self.mean:.4f} over {self.values.numel()} map(s) {self.protocol}"


def _as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if t.ndim < 2:
        raise ValueError(f"{name} must be (H, W) or (..., H, W); got shape {tuple(t.shape)}.")
    return t


def _pair(saliency: ArrayLike, mask: ArrayLike):
    s = _as_tensor(saliency, "saliency").float()
    m = _as_tensor(mask, "mask").to(torch.bool).to(s.device)
    if s.shape[-2:] != m.shape[-2:]:
        raise ValueError(f"saliency {tuple(s.shape[-2:])} and mask {tuple(m.shape[-2:])} differ in size; resize "
                         "the mask to the explained image (exp.images shows those pixels).")
    s, m = torch.broadcast_tensors(s, m)
    return s, m


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of (..., H, W) masks by a disc of `radius` pixels."""
    if radius <= 0:
        return mask
    lead, (H, W) = mask.shape[:-2], mask.shape[-2:]
    r = torch.arange(-radius, radius + 1, device=mask.device)
    disc = ((r[:, None] ** 2 + r[None, :] ** 2) <= radius ** 2).float()[None, None]
    out = F.conv2d(mask.reshape(-1, 1, H, W).float(), disc, padding=radius) > 0
    return out.reshape(*lead, H, W)


def pointing_game(saliency: ArrayLike, mask: ArrayLike, tolerance: int = 15) -> MetricResult:
    """Hit (1) when the arg-max of the saliency lies inside the mask dilated by `tolerance` pixels at 224 px
    (scaled with the map size). Maps that are all zero count as misses."""
    s, m = _pair(saliency, mask)
    H, W = s.shape[-2:]
    radius = int(round(tolerance * max(H, W) / REFERENCE_SIZE))
    region = dilate(m, radius)
    flat = s.reshape(*s.shape[:-2], H * W)
    idx = flat.argmax(dim=-1, keepdim=True)
    hit = region.reshape(*s.shape[:-2], H * W).gather(-1, idx)[..., 0]
    hit = hit & (flat.amax(dim=-1) > 0)
    return MetricResult("pointing_game", hit.float().cpu(), {"tolerance_px_at_224": tolerance, "radius_px": radius})


def energy_pointing_game(saliency: ArrayLike, mask: ArrayLike) -> MetricResult:
    """Share of the saliency mass inside the mask (0 for an all-zero map)."""
    s, m = _pair(saliency, mask)
    s = s.clamp_min(0)
    total = s.sum(dim=(-2, -1))
    inside = (s * m).sum(dim=(-2, -1))
    share = torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))
    return MetricResult("energy_pointing_game", share.cpu(), {})


# ---------------------------------------------------------------------------------------------- faithfulness
def _explanation_inputs(model, exp):
    x = model.prepare(list(exp.images.numpy())).tensor  # the very pixels that were explained
    text = model.encode_text(exp.prompts)
    score = exp.params.get("score", "cosine")
    return x, text, score


def _pair_scores(model, images: torch.Tensor, text: torch.Tensor, prompt_of: torch.Tensor, score: str,
                 batch_size: int) -> torch.Tensor:
    from .cam import pair_score
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            emb = model.embed(images[i:i + batch_size])
            out.append(pair_score(emb, text, prompt_of[i:i + batch_size], score, model.logit_scale))
    return torch.cat(out) if out else torch.zeros(0)


def insertion_deletion(model, exp, steps: int = 16, blur_sigma: float = 10.0, batch_size: int = 32) -> Dict[str, MetricResult]:
    """Insertion and deletion AUC of every (image, prompt) map of an Explanation.

    Pixels are taken in order of saliency. Insertion starts from the blurred image and puts back the top
    fraction f of pixels; deletion starts from the image and blurs the top fraction f away; f runs over
    `steps` + 1 equal steps from 0 to 1. The curve is the explanation's own score (exp.params["score"]) for the
    pair's prompt; the AUC is its trapezoid mean. Higher insertion and lower deletion are better.
    """
    from .cam import gaussian_blur
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    x, text, score = _explanation_inputs(model, exp)
    ref = gaussian_blur(x, blur_sigma * x.shape[-1] / REFERENCE_SIZE)
    B, T, H, W = exp.saliency.shape
    sal = exp.saliency.to(x.device).reshape(B, T, H * W)
    # rank of each pixel (0 = most salient); ties broken by index, deterministic
    order = sal.argsort(dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(H * W, device=x.device).expand_as(order))
    fractions = torch.linspace(0, 1, steps + 1, device=x.device)
    curves = {}
    for name in ("insertion", "deletion"):
        n = B * T * (steps + 1)
        b_of = torch.arange(B, device=x.device).repeat_interleave(T * (steps + 1))
        t_of = torch.arange(T, device=x.device).repeat_interleave(steps + 1).repeat(B)
        s_of = torch.arange(steps + 1, device=x.device).repeat(B * T)
        scores = []
        for i in range(0, n, batch_size):
            b, t, s = b_of[i:i + batch_size], t_of[i:i + batch_size], s_of[i:i + batch_size]
            keep = (rank[b, t] < (fractions[s] * H * W).round()[:, None]).float().reshape(-1, 1, H, W)
            if name == "insertion":
                imgs = keep * x[b] + (1 - keep) * ref[b]
            else:
                imgs = keep * ref[b] + (1 - keep) * x[b]
            scores.append(_pair_scores(model, imgs, text, t, score, batch_size))
        curve = torch.cat(scores).reshape(B, T, steps + 1)
        auc = torch.trapezoid(curve, dx=1.0 / steps, dim=-1)
        curves[name] = MetricResult(f"{name}_auc", auc.cpu(), {"steps": steps, "baseline": f"gaussian blur sigma {blur_sigma} px at 224",
                                                             "score": score, **_record(exp)})
        curves[name].curves = curve.cpu()
    return curves


def confidence_change(model, exp, batch_size: int = 32) -> Dict[str, MetricResult]:
    """Average drop and increase in confidence (Chattopadhay et al., 2018): the image multiplied by the map
    (black elsewhere) against the full image, with the explanation's score. Drop = max(0, Y - O) / |Y| per
    pair (lower is better); increase = 1 where O > Y (higher is better)."""
    x, text, score = _explanation_inputs(model, exp)
    B, T, H, W = exp.saliency.shape
    pixels = (x * model.std + model.mean)
    b_of = torch.arange(B, device=x.device).repeat_interleave(T)
    t_of = torch.arange(T, device=x.device).repeat(B)
    masked = pixels[b_of] * exp.saliency.to(x.device).reshape(B * T, 1, H, W)
    masked = (masked - model.mean) / model.std
    full = _pair_scores(model, x[b_of], text, t_of, score, batch_size)
    kept = _pair_scores(model, masked, text, t_of, score, batch_size)
    drop = (full - kept).clamp_min(0) / full.abs().clamp_min(1e-12)
    record = {"baseline": "black (image x map)", "score": score, **_record(exp)}
    return {"average_drop": MetricResult("average_drop", drop.reshape(B, T).cpu(), record),
            "increase_in_confidence": MetricResult("increase_in_confidence", (kept > full).float().reshape(B, T).cpu(), record)}


def _record(exp) -> Dict[str, Any]:
    p = exp.params
    keep = ("method", "model", "layer", "score", "n_components", "top_channels", "center", "sign", "blur_sigma",
            "integration", "weight_norm", "weight_threshold")
    return {k: p[k] for k in keep if k in p}


# ---------------------------------------------------------------------------------------------- parts and clusters
def part_alignment(ossms: ArrayLike, part_masks: ArrayLike) -> Dict[str, MetricResult]:
    """OSSMs (K, H, W) against ground-truth part masks (P, H, W).

    ossm_alignment: for each OSSM with energy, the share of its energy inside its best part.
    part_coverage: for each part, 1 if the arg-max of some OSSM lies inside it.
    """
    o = _as_tensor(ossms, "ossms").float().clamp_min(0)
    m = _as_tensor(part_masks, "part_masks").to(torch.bool)
    if o.ndim != 3 or m.ndim != 3 or o.shape[-2:] != m.shape[-2:]:
        raise ValueError(f"Give ossms (K, H, W) and part_masks (P, H, W) of one size; got {tuple(o.shape)} and {tuple(m.shape)}.")
    energy = o.sum(dim=(-2, -1))
    inside = torch.einsum("khw,phw->kp", o, m.float())
    share = inside / energy[:, None].clamp_min(1e-12)
    has = energy > 0
    K, H, W = o.shape
    peak = o.reshape(K, -1).argmax(-1)
    covered = m.reshape(m.shape[0], -1)[:, peak[has]].any(dim=1) if bool(has.any()) else torch.zeros(m.shape[0], dtype=torch.bool)
    return {"ossm_alignment": MetricResult("ossm_alignment", share.max(dim=1).values[has], {}),
            "part_coverage": MetricResult("part_coverage", covered.float(), {})}


def cluster_scores(labels: ArrayLike, parts: ArrayLike) -> Dict[str, float]:
    """Purity, NMI and ARI of cluster labels against (dominant) ground-truth part names."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    labels, parts = np.asarray(labels), np.asarray(parts)
    if labels.shape != parts.shape or labels.ndim != 1:
        raise ValueError(f"labels and parts must be 1-D and the same length; got {labels.shape} and {parts.shape}.")
    purity = 0
    for c in np.unique(labels):
        _, counts = np.unique(parts[labels == c], return_counts=True)
        purity += counts.max()
    return {"purity": float(purity / len(labels)), "nmi": float(normalized_mutual_info_score(parts, labels)),
            "ari": float(adjusted_rand_score(parts, labels))}


# ---------------------------------------------------------------------------------------------- sanity check
def _tower_blocks(model):
    v = model.visual
    if model.kind == "resnet":
        return [("visual.attnpool", v.attnpool)] + [(f"visual.layer{i}", getattr(v, f"layer{i}")) for i in (4, 3, 2, 1)]
    blocks = v.transformer.resblocks
    return [("visual.ln_post+proj", v.ln_post)] + [(f"visual.transformer.resblocks.{i}", blocks[i])
                                                   for i in range(len(blocks) - 1, -1, -1)]


def sanity_check(make_cam, model, images, prompts, steps: int = 3, seed: int = 0) -> MetricResult:
    """Cascading randomisation (Adebayo et al., 2018): re-initialise the image tower from the top, one block
    more at each step, and recompute the saliency with ``make_cam(randomised_model)``. Values: the Spearman
    rank correlation of each step's maps with the original ones (should fall well below 1)."""
    import copy
    from .models import CLIPModel
    base = make_cam(model)(images, prompts).saliency
    clone = copy.deepcopy(model.model)
    wrapper = CLIPModel.__new__(CLIPModel)
    wrapper.__dict__.update(model.__dict__)
    wrapper.model = clone
    wrapper._text_cache = model._text_cache.copy()
    gen = torch.Generator().manual_seed(seed)
    names, corrs = [], []
    blocks = dict((n, m) for n, m in _tower_blocks(wrapper))
    for name, _ in list(blocks.items())[:steps]:
        module = blocks[name]
        for p in module.parameters():
            p.data.copy_(torch.randn(p.shape, generator=gen) * 0.02)
        if name.endswith("proj") and clone.visual.proj is not None:
            clone.visual.proj.data.copy_(torch.randn(clone.visual.proj.shape, generator=gen) * 0.02)
        sal = make_cam(wrapper)(images, prompts).saliency
        names.append(name)
        corrs.append(_spearman(base, sal))
    return MetricResult("sanity_check_spearman", torch.stack(corrs), {"randomised_from_top": names, "seed": seed})


def _spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean Spearman correlation over maps (..., H, W)."""
    def ranks(t):
        flat = t.reshape(-1, t.shape[-2] * t.shape[-1])
        return flat.argsort(-1).argsort(-1).float()
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    c = (ra * rb).sum(-1) / (ra.norm(dim=-1) * rb.norm(dim=-1)).clamp_min(1e-12)
    return c.mean()
