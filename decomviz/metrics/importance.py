"""Ground truth from the model itself, and part-level scores of any saliency map against it.

`part_importance` removes each part of a scene (a re-rendered intervention, not a blur) and measures how much
the prompt's score drops: what the model uses, measured rather than assumed. The other functions compare a
map's mass on each part with those importances.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..ops import clip_score, resize_masks
from .result import ArrayLike, MetricResult, as_maps, spearman


def _scores(model, images, prompt: str, score: str, contrast: Sequence[str]) -> torch.Tensor:
    """The prompt's score (N,) for each image; "softmax" is taken over the prompt and ``contrast``."""
    if score == "softmax" and not contrast:
        raise ValueError("A softmax score needs other prompts to compete with: pass contrast=[...] (e.g. the "
                         "names of the other classes), or use score='cosine'.")
    text = model.encode_text([prompt, *contrast])
    return clip_score(model.encode_image(images), text, score, model.logit_scale)[:, 0].cpu()


def part_importance(model, scene, prompt: str, score: str = "cosine", contrast: Sequence[str] = ()) -> MetricResult:
    """The drop of ``prompt``'s score when each part of ``scene`` is removed.

    Parameters
    ----------
    model : CLIPModel.
    scene : a PartsWorld `Scene` (it supports `without_part`).
    prompt : the text whose score is measured.
    score : "cosine", "logit" or "softmax" (over ``prompt`` and ``contrast``).
    contrast : other prompts, for the softmax.

    Returns
    -------
    MetricResult with values of shape (P,), one per ``scene.parts``: s(scene) - s(scene without part p). A part
    that is the last of its object is removed with its object. The protocol names each part and gives the
    full scene's score.
    """
    variants = [scene.without_part(i) if sum(q.object == p.object for q in scene.parts) > 1
                else scene.without_object(p.object) for i, p in enumerate(scene.parts)]
    s = _scores(model, [scene.image] + [v.image for v in variants], prompt, score, contrast)
    return MetricResult("part_importance", s[0] - s[1:],
                        {"prompt": prompt, "score": score, "full_score": float(s[0]),
                         "parts": [(p.object, p.name) for p in scene.parts]})


def object_importance(model, scene, prompt: str, score: str = "cosine", contrast: Sequence[str] = ()) -> MetricResult:
    """The drop of ``prompt``'s score when each object of ``scene`` is removed; values (N_objects,)."""
    variants = [scene.without_object(j) for j in range(len(scene.objects))]
    s = _scores(model, [scene.image] + [v.image for v in variants], prompt, score, contrast)
    return MetricResult("object_importance", s[0] - s[1:],
                        {"prompt": prompt, "score": score, "full_score": float(s[0]),
                         "objects": [o.label for o in scene.objects]})


def part_mass(saliency: ArrayLike, part_masks: ArrayLike) -> torch.Tensor:
    """Share of each map's mass on each part.

    saliency : (..., H, W) maps (negative values and NaN, "not seen", count as 0); part_masks : (P, H, W) bool,
    resized (nearest) to the maps' size if needed, which needs the maps' shape: masks of a photo of another
    shape go through `masks_as_seen` first. Returns (..., P); an all-zero map has all shares 0.
    """
    s = torch.nan_to_num(as_maps(saliency, "saliency").float(), nan=0.0).clamp_min(0)
    m = as_maps(part_masks, "part_masks")
    (mh, mw), (sh, sw) = m.shape[-2:], s.shape[-2:]
    if abs(mh * sw - mw * sh) > 0.02 * mw * sh:  # another aspect: a stretch would put the parts elsewhere
        raise ValueError(f"part_masks are {mh}x{mw} and the maps {sh}x{sw}, another shape: masks given in the photo's "
                         "geometry must be laid on the explained image first, dv.metrics.masks_as_seen(exp, masks).")
    m = resize_masks(m, s.shape[-2:]).float()
    total = s.sum(dim=(-2, -1))
    inside = torch.einsum("...hw,phw->...p", s, m)
    return torch.where(total[..., None] > 0, inside / total.clamp_min(1e-12)[..., None], torch.zeros_like(inside))


def deletion_rank_correlation(shares: ArrayLike, importance: ArrayLike) -> float:
    """Single-deletion rank correlation: Spearman between a map's mass on each part (P,) and the score drop
    when that part is removed (P,). 1: the map ranks parts as the model uses them."""
    return float(spearman(np.asarray(shares, float), np.asarray(importance, float)))


def background_mass(shares: ArrayLike, importance: ArrayLike, tolerance: float = 0.01) -> float:
    """Mass a map puts on parts whose removal changes the score by less than ``tolerance`` of the largest change
    (parts the model does not use); lower is better. 0 if no part is unused."""
    shares, importance = np.asarray(shares, float), np.abs(np.asarray(importance, float))
    unused = importance < tolerance * max(float(importance.max(initial=0.0)), 1e-12)
    return float(shares[unused].sum())


def target_sensitivity(map_for_a: ArrayLike, map_for_b: ArrayLike, mask_a: ArrayLike) -> bool:
    """On a scene with objects A and B: does the map for A put more of its mass on A than the map for B does?"""
    shares = part_mass(torch.stack([as_maps(map_for_a, "map_for_a").float(), as_maps(map_for_b, "map_for_b").float()]),
                       as_maps(mask_a, "mask_a")[None])
    return bool(shares[0, 0] > shares[1, 0])


def component_parts(ossms: ArrayLike, part_masks: ArrayLike, weights: Optional[ArrayLike] = None,
                    importance: Optional[ArrayLike] = None) -> dict:
    """Which part each OSSM covers, and whether the weights follow the importance of those parts.

    ossms : (K, H, W); part_masks : (P, H, W); weights, importance : (K,) and (P,).
    Returns ``part`` (K,) the index of the part holding most of each OSSM's mass (-1 for an empty OSSM),
    ``share`` (K,) that mass, and, given weights and importances, ``weight_importance_correlation``: the
    Spearman correlation between each non-empty component's weight and the importance of its part.
    """
    shares = part_mass(ossms, part_masks)                      # (K, P)
    share, part = shares.max(dim=-1)
    part = torch.where(share > 0, part, torch.full_like(part, -1))
    out = {"part": part, "share": share}
    if weights is not None and importance is not None:
        keep = (part >= 0).numpy()
        w = np.asarray(weights, float)[keep]
        imp = np.asarray(importance, float)[part.numpy()[keep]]
        out["weight_importance_correlation"] = float(spearman(w, imp)) if len(w) > 1 else float("nan")
    return out
