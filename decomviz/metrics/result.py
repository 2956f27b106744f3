"""What every metric shares: `MetricResult` (values + protocol record) and input checks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Union

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = Union[np.ndarray, torch.Tensor]


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


def as_maps(x: ArrayLike, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if t.ndim < 2:
        raise ValueError(f"{name} must be (H, W) or (..., H, W); got shape {tuple(t.shape)}.")
    return t


def paired_maps(saliency: ArrayLike, mask: ArrayLike):
    s = as_maps(saliency, "saliency").float()
    m = as_maps(mask, "mask").to(torch.bool).to(s.device)
    if s.shape[-2:] != m.shape[-2:]:
        raise ValueError(f"saliency {tuple(s.shape[-2:])} and mask {tuple(m.shape[-2:])} differ in size; resize "
                         "the mask to the explained image (exp.images shows those pixels).")
    s, m = torch.broadcast_tensors(s, m)
    return s, m


def seen_extent(maps: torch.Tensor) -> int:
    """The larger side (pixels) of the region the maps have values in (NaN: not seen), over the whole batch;
    the maps' larger side when every pixel is seen."""
    H, W = maps.shape[-2:]
    seen = torch.isfinite(maps).reshape(-1, H, W).any(dim=0)
    if bool(seen.all()) or not bool(seen.any()):
        return max(H, W)
    rows, cols = seen.any(dim=1).nonzero()[:, 0], seen.any(dim=0).nonzero()[:, 0]
    return int(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of (..., H, W) masks by a disc of `radius` pixels."""
    if radius <= 0:
        return mask
    lead, (H, W) = mask.shape[:-2], mask.shape[-2:]
    r = torch.arange(-radius, radius + 1, device=mask.device)
    disc = ((r[:, None] ** 2 + r[None, :] ** 2) <= radius ** 2).float()[None, None]
    out = F.conv2d(mask.reshape(-1, 1, H, W).float(), disc, padding=radius) > 0
    return out.reshape(*lead, H, W)


def average_ranks(t: torch.Tensor) -> torch.Tensor:
    """Ranks (0-based, float) along the last dim, tied values sharing their average rank."""
    t = t.float().contiguous()
    s = t.sort(dim=-1).values
    lo = torch.searchsorted(s, t, right=False)
    hi = torch.searchsorted(s, t, right=True)
    return (lo + hi - 1).float() / 2


def spearman(a: ArrayLike, b: ArrayLike) -> torch.Tensor:
    """Spearman rank correlation along the last dim (ties get average ranks); NaN where either is constant.

    a, b : (..., N) of one shape. Returns (...)."""
    a, b = torch.as_tensor(np.asarray(a, dtype=np.float64) if not isinstance(a, torch.Tensor) else a), \
        torch.as_tensor(np.asarray(b, dtype=np.float64) if not isinstance(b, torch.Tensor) else b)
    if a.shape != b.shape or a.ndim < 1:
        raise ValueError(f"spearman needs two arrays of one shape (..., N); got {tuple(a.shape)} and {tuple(b.shape)}.")
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    den = ra.norm(dim=-1) * rb.norm(dim=-1)
    return torch.where(den > 0, (ra * rb).sum(-1) / den.clamp_min(1e-12), torch.full_like(den, float("nan")))
