"""Localisation on ground-truth masks. Each metric takes single maps (H, W) or batches (..., H, W)."""
from __future__ import annotations

import torch

from ..ops import scaled_pixels
from .result import ArrayLike, MetricResult, dilate, paired_maps


def pointing_game(saliency: ArrayLike, mask: ArrayLike, tolerance: int = 15) -> MetricResult:
    """Hit (1) when the arg-max of the saliency lies inside the mask dilated by `tolerance` pixels at 224 px
    (scaled with the map size). Maps that are all zero count as misses."""
    s, m = paired_maps(saliency, mask)
    H, W = s.shape[-2:]
    radius = int(round(scaled_pixels(tolerance, max(H, W))))
    region = dilate(m, radius)
    flat = s.reshape(*s.shape[:-2], H * W)
    idx = flat.argmax(dim=-1, keepdim=True)
    hit = region.reshape(*s.shape[:-2], H * W).gather(-1, idx)[..., 0]
    hit = hit & (flat.amax(dim=-1) > 0)
    return MetricResult("pointing_game", hit.float().cpu(), {"tolerance_px_at_224": tolerance, "radius_px": radius})


def energy_pointing_game(saliency: ArrayLike, mask: ArrayLike) -> MetricResult:
    """Share of the saliency mass inside the mask (0 for an all-zero map)."""
    s, m = paired_maps(saliency, mask)
    s = s.clamp_min(0)
    total = s.sum(dim=(-2, -1))
    inside = (s * m).sum(dim=(-2, -1))
    share = torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))
    return MetricResult("energy_pointing_game", share.cpu(), {})
