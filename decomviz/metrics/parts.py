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
    """
    o = as_maps(ossms, "ossms").float().clamp_min(0)
    m = as_maps(part_masks, "part_masks").to(torch.bool)
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
