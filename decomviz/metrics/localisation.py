"""Localisation on ground-truth masks. Each metric takes single maps (H, W) or batches (..., H, W).

NaN in a map means "not seen": `Explanation.saliency_on_original` puts NaN where the photo lies outside the
explained crop. Such pixels carry no saliency and cannot be the peak; the pointing game's tolerance scales with
the seen region (the explained view), not the photo. A map in the photo's geometry with a mask in the photo's
geometry therefore scores as the explained map with the mask as the model saw it (`masks_as_seen`,
`images.to_model_view`), up to resampling.
"""
from __future__ import annotations

import torch

from ..ops import scaled_pixels
from .result import ArrayLike, MetricResult, dilate, paired_maps, seen_extent


def pointing_game(saliency: ArrayLike, mask: ArrayLike, tolerance: int = 15) -> MetricResult:
    """Hit (1) when the arg-max of the saliency lies inside the mask dilated by `tolerance` pixels at 224 px
    (scaled with the size of the seen map). Maps that are all zero (or all NaN: nothing seen) count as misses;
    NaN pixels (not seen) are never the peak."""
    s, m = paired_maps(saliency, mask)
    H, W = s.shape[-2:]
    radius = int(round(scaled_pixels(tolerance, seen_extent(s))))
    region = dilate(m, radius)
    flat = torch.nan_to_num(s.reshape(*s.shape[:-2], H * W), nan=float("-inf"))
    idx = flat.argmax(dim=-1, keepdim=True)
    hit = region.reshape(*s.shape[:-2], H * W).gather(-1, idx)[..., 0]
    hit = hit & (flat.amax(dim=-1) > 0)
    return MetricResult("pointing_game", hit.float().cpu(), {"tolerance_px_at_224": tolerance, "radius_px": radius})


def energy_pointing_game(saliency: ArrayLike, mask: ArrayLike) -> MetricResult:
    """Share of the saliency mass inside the mask (0 for an all-zero map); NaN pixels (not seen) hold no mass."""
    s, m = paired_maps(saliency, mask)
    s = torch.nan_to_num(s, nan=0.0).clamp_min(0)
    total = s.sum(dim=(-2, -1))
    inside = (s * m).sum(dim=(-2, -1))
    share = torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))
    return MetricResult("energy_pointing_game", share.cpu(), {})
