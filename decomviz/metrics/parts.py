"""Parts and clusters: OSSMs against ground-truth part masks, cluster labels against part names."""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from .result import ArrayLike, MetricResult, as_maps


def part_alignment(ossms: ArrayLike, part_masks: ArrayLike) -> Dict[str, MetricResult]:
    """OSSMs (K, H, W) against ground-truth part masks (P, H, W).

    ossm_alignment: for each OSSM with energy, the share of its energy inside its best part.
    part_coverage: for each part, 1 if the arg-max of some OSSM lies inside it.
    NaN pixels (not seen, as `saliency_on_original` marks them) hold no energy.
    """
    o = torch.nan_to_num(as_maps(ossms, "ossms").float(), nan=0.0).clamp_min(0)
    m = as_maps(part_masks, "part_masks").to(torch.bool)
    if o.ndim != 3 or m.ndim != 3 or o.shape[-2:] != m.shape[-2:]:
        raise ValueError(f"Give ossms (K, H, W) and part_masks (P, H, W) of one size; got {tuple(o.shape)} and "
                         f"{tuple(m.shape)}. Masks in the photo's geometry: dv.metrics.masks_as_seen(exp, masks).")
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


def masks_as_seen(exp, part_masks: ArrayLike, image: int = 0) -> torch.Tensor:
    """Part masks given in the photo's own geometry, as the model saw them: cropped or squashed as image
    ``image`` of ``exp`` was (from ``exp.params["inputs"]``), each part keeping its area (`images.to_model_view`).

    part_masks : (P, h, w) or (h, w) bool, the size of the photo given to the method. Returns (P, H, W) (or
    (H, W)) bool at the explained size, ready for `part_alignment`, `part_mass` and `component_parts`. Masks
    already at the explained size are returned as they are.
    """
    from ..images import crop_box, to_model_view
    m = as_maps(part_masks, "part_masks").to(torch.bool)
    H, W = exp.saliency.shape[-2:]
    if tuple(m.shape[-2:]) == (H, W):
        return m
    inputs = exp.params.get("inputs")
    if not inputs:
        raise ValueError(f"This explanation does not record the geometry of its images (explained from a tensor), "
                         f"so masks of {tuple(m.shape[-2:])} cannot be laid on its {H}x{W} maps; give masks at "
                         f"{H}x{W}.")
    (h, w), box = inputs[image]["size"], inputs[image]["box"]
    if tuple(m.shape[-2:]) != (int(h), int(w)):
        raise ValueError(f"Masks of {tuple(m.shape[-2:])} do not match image {image} as given, {int(h)}x{int(w)} "
                         "(height x width): give masks in the photo's geometry, or at the explained size "
                         f"{H}x{W}.")
    whole = abs(box[0]) < 1e-6 and abs(box[1]) < 1e-6 and abs(box[2] - h) < 1e-6 and abs(box[3] - w) < 1e-6
    mode = "squash" if whole else "crop"  # a crop box that covers the whole photo is the same view as a squash
    # the crop's rounding, read off the recorded box: "floor" (Hugging Face processors) where only it gives the box
    floor = crop_box((int(w), int(h)), (H, W), "crop", "floor")
    offsets = "floor" if mode == "crop" and np.allclose(box, floor) and not np.allclose(
        box, crop_box((int(w), int(h)), (H, W), "crop", "round")) else "round"
    flat = m.reshape(-1, *m.shape[-2:]).numpy()
    out = (np.stack([to_model_view(mk, (H, W), mode, offsets=offsets) for mk in flat]) if len(flat)
           else np.zeros((0, H, W), bool))
    return torch.from_numpy(out).reshape(*m.shape[:-2], H, W)
