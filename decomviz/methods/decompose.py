"""DecomCAM's stage 1: select the top channels by gradient weight, then split the gradient-weighted maps into
components (a truncated SVD, through the Gram matrix where that is cheaper; an NMF; or a function of your own)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .nmf import nmf

_NULL_RTOL = 1e-6  # a singular value below this share of the largest is numerically zero
# cuSOLVER's gesvda goes through the Gram matrix, so in fp32 it resolves singular values only down to about
# sqrt(eps) of the largest; below that a component is treated as zero
_APPROX_NULL_RTOL = 1e-3
SVD_DRIVERS = ("auto", None, "gram", "gesvd", "gesvdj", "gesvda")


@dataclass
class Decomposition:
    """Stage 1 for all pairs. Shapes: B images, T prompts, K components, P kept channels, n = h*w."""

    alpha: torch.Tensor  # (B, T, C)
    channels: torch.Tensor  # (B, T, P)
    u: torch.Tensor  # (B, T, K, n), oriented
    v: torch.Tensor  # (B, T, K, P), oriented
    singular_values: torch.Tensor  # (B, T, K)
    explained_variance: torch.Tensor  # (B, T, K)
    gradcam: torch.Tensor  # (B, T, n): row sums of X
    null: torch.Tensor  # (B, T, K) bool: numerically zero components

    def spatial(self, sign: float = 1.0) -> torch.Tensor:
        """u_k * sigma_k, (B, T, K, n), with null components zeroed."""
        maps = sign * self.u * self.singular_values[..., None]
        return maps.masked_fill(self.null[..., None], 0.0)


def select_channels(activations: torch.Tensor, gradients: torch.Tensor, top_channels: int):
    """Steps 1-3 (docs/method.md): alpha (B, T, C), the kept channels (B, T, P), their weights (B, T, P) and the
    gradient-weighted maps X (B, T, n, P), one row per grid cell. activations (B, C, h, w); gradients
    (B, T, C, h, w)."""
    B, C, h, w = activations.shape
    T = gradients.shape[1]
    n = h * w
    A = activations.reshape(B, 1, C, n).float()
    G = gradients.reshape(B, T, C, n).float()
    alpha = G.mean(dim=-1)  # (B, T, C)
    P = min(top_channels, C)
    alpha_kept, channels = alpha.topk(P, dim=-1, sorted=True)  # signed, descending
    A_kept = A.expand(B, T, C, n).gather(2, channels[..., None].expand(B, T, P, n))  # (B, T, P, n)
    X = (alpha_kept[..., None] * A_kept).transpose(-1, -2)  # (B, T, n, P): rows = grid cells
    return alpha, channels, alpha_kept, X


def decompose_nmf(activations: torch.Tensor, gradients: torch.Tensor, top_channels: int, n_components: int,
                  max_iter: int = 200, tol: float = 1e-4) -> Decomposition:
    """The non-negative split: the gradient-weighted maps of the kept channels with positive weight, clipped at
    zero, X+ (n, P) ~ W H with W, H >= 0, for every pair at once (`nmf.nmf`, NNDSVDa start, so deterministic).

    Component k's map is W_k ||H_k|| (u_k = W_k / ||W_k||, sigma_k = ||W_k|| ||H_k||, v_k = H_k / ||H_k||):
    non-negative, so no sign rule applies; components come by decreasing sigma_k. ``explained_variance`` is
    sigma_k^2 / ||X+||^2, each component's energy alone (the components overlap, so the shares need not sum to
    the fit's)."""
    alpha, channels, alpha_kept, X = select_channels(activations, gradients, top_channels)
    B, T, n, P = X.shape
    gradcam = X.sum(dim=-1)
    Xp = torch.where(alpha_kept[..., None, :] > 0, X, torch.zeros_like(X)).clamp_min(0)
    K = min(n_components, n, P)
    W, H, _ = nmf(Xp.reshape(B * T, n, P), K, max_iter=max_iter, tol=tol)
    wn, hn = W.norm(dim=1), H.norm(dim=2)  # (BT, K)
    s = (wn * hn).reshape(B, T, K)
    u = (W / wn.clamp_min(1e-30)[:, None]).transpose(1, 2).reshape(B, T, K, n)
    v = (H / hn.clamp_min(1e-30)[..., None]).reshape(B, T, K, P)
    total = Xp.pow(2).sum(dim=(-2, -1))[..., None]
    explained = torch.where(total > 0, s ** 2 / total.clamp_min(1e-30), torch.zeros_like(s))
    null = s <= _NULL_RTOL * s[..., :1]
    return Decomposition(alpha, channels, u, v, s, explained, gradcam, null)


def decompose_with(split, activations: torch.Tensor, gradients: torch.Tensor, top_channels: int,
                   n_components: int) -> Decomposition:
    """A user's split: ``split(X)`` takes the gradient-weighted maps X (pairs, cells, channels) of the kept
    channels (signed, not centred) and returns component maps (pairs, K, cells), or (maps, loadings) with
    loadings (pairs, K, channels). Maps are used as given (OSSM k is ReLU of map k); without loadings, v_k is the
    normalised projection of X on map k. At most ``n_components`` maps are kept."""
    alpha, channels, _, X = select_channels(activations, gradients, top_channels)
    B, T, n, P = X.shape
    out = split(X.reshape(B * T, n, P))
    maps, loadings = out if isinstance(out, (tuple, list)) else (out, None)
    maps = torch.as_tensor(maps, dtype=torch.float32, device=X.device)
    if maps.ndim != 3 or maps.shape[0] != B * T or maps.shape[2] != n or maps.shape[1] < 1:
        raise ValueError(f"A decomposition function must return component maps of shape (pairs, K, cells) = "
                         f"({B * T}, K, {n}) for the matrix of shape {(B * T, n, P)} it was given; got "
                         f"{tuple(maps.shape)}.")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("The decomposition function returned maps with NaN or inf values.")
    maps = maps[:, :n_components]
    K = maps.shape[1]
    s = maps.norm(dim=-1)  # (BT, K)
    u = maps / s.clamp_min(1e-30)[..., None]
    if loadings is None:
        v = u @ X.reshape(B * T, n, P)
    else:
        v = torch.as_tensor(loadings, dtype=torch.float32, device=X.device)[:, :K]
        if tuple(v.shape) != (B * T, K, P):
            raise ValueError(f"Loadings returned by the decomposition function must have shape {(B * T, K, P)}; "
                             f"got {tuple(v.shape)}.")
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    total = X.pow(2).sum(dim=(-2, -1)).reshape(B * T, 1)
    explained = torch.where(total > 0, s ** 2 / total.clamp_min(1e-30), torch.zeros_like(s))
    s = s.reshape(B, T, K)
    return Decomposition(alpha, channels, u.reshape(B, T, K, n), v.reshape(B, T, K, P), s,
                         explained.reshape(B, T, K), X.sum(dim=-1), s <= 0)


def decompose(activations: torch.Tensor, gradients: torch.Tensor, top_channels: int, n_components: int,
              center: bool, svd_driver: Optional[str] = "auto", orient: str = "gradcam") -> Decomposition:
    """Stage 1 (docs/method.md). activations (B, C, h, w); gradients (B, T, C, h, w). All fp32.
    ``svd_driver``: "auto" (the Gram route where P >= 2n, else torch's default), "gram" (`gram_svd`), None
    (torch's default) or a cuSOLVER algorithm for CUDA tensors (ignored on the CPU). ``orient`` is the sign
    rule: "gradcam" (u_k sigma_k correlates positively with the Grad-CAM map) or "svd_flip" (the entry of u_k
    with the largest magnitude is positive, the rule of scikit-learn's ``svd_flip`` on U)."""
    alpha, channels, _, X = select_channels(activations, gradients, top_channels)
    gradcam = X.sum(dim=-1)
    if center:
        X = X - X.mean(dim=-2, keepdim=True)
    U, S, Vh, null_rtol = _svd(X, svd_driver, n_components)
    K = min(n_components, S.shape[-1])
    u, s, v = U[..., :K].transpose(-1, -2), S[..., :K], Vh[..., :K, :]
    total = (S ** 2).sum(dim=-1, keepdim=True)
    explained = torch.where(total > 0, s ** 2 / total.clamp_min(1e-30), torch.zeros_like(s))
    null = s <= null_rtol * S[..., :1]
    spatial = u * s[..., None]
    if orient == "svd_flip":
        sign = torch.sign(u.gather(-1, u.abs().argmax(-1, keepdim=True))[..., 0])
    else:  # correlate positively with the Grad-CAM map
        corr = ((spatial - spatial.mean(-1, keepdim=True)) * (gradcam - gradcam.mean(-1, keepdim=True))[..., None, :]).sum(-1)
        sign = torch.sign(corr)
    sign = torch.where(sign == 0, torch.sign(spatial.sum(-1)), sign)
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return Decomposition(alpha, channels, u * sign[..., None], v * sign[..., None], s, explained, gradcam, null)


def _svd(X: torch.Tensor, driver: Optional[str], k: int):
    """Reduced SVD of X (at least the first ``k`` components) and the share of the largest singular value
    below which one counts as zero."""
    if driver == "gram" or (driver == "auto" and X.shape[-1] >= 2 * X.shape[-2]):
        return gram_svd(X, k)
    if driver in (None, "auto") or not X.is_cuda:
        return (*torch.linalg.svd(X, full_matrices=False), _NULL_RTOL)
    U, S, Vh = torch.linalg.svd(X, full_matrices=False, driver=driver)
    if driver == "gesvda":
        if not bool(torch.isfinite(S).all()):  # the approximate driver gave up: take the default one
            return (*torch.linalg.svd(X, full_matrices=False), _NULL_RTOL)
        return U, S, Vh, _APPROX_NULL_RTOL
    return U, S, Vh, _NULL_RTOL


def gram_svd(X: torch.Tensor, k: int):
    """The SVD of wide matrices X (..., n, P), n < P, through their n x n Gram matrices X X^T (a batched ``eigh``).

    Returns U (..., n, n), S (..., n) descending, Vh (..., k, P) for the first k components only (rows of null
    components are zero) and the null tolerance. In fp32 the Gram matrix resolves singular values only down to
    about sqrt(eps) of the largest, so components below 1e-3 of it count as zero, as for "gesvda".
    """
    lam, U = torch.linalg.eigh(X @ X.transpose(-1, -2))  # ascending
    S = lam.flip(-1).clamp_min(0).sqrt()
    U = U.flip(-1)
    k = min(k, S.shape[-1])
    s = S[..., :k]
    keep = s > _APPROX_NULL_RTOL * S[..., :1]
    Vh = (U[..., :k].transpose(-1, -2) @ X) / torch.where(keep, s, torch.ones_like(s))[..., None]
    return U, S, Vh * keep[..., None], _APPROX_NULL_RTOL
