"""Figure builders for components and concepts against parts: data in, figure out, no state.

- `concept_figure`: one concept's map over several images, each titled with the concept's share of a prompt;
- `splits_figure`: one image's components under several splits (e.g. SVD and NMF), a row per split, each
  component named by the part it covers.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import plotly.graph_objects as go

from ..ops import minmax_np
from .clusters import exemplar_grid_figure


def concept_figure(pixels: Sequence[np.ndarray], maps: Sequence[np.ndarray], concept: int, name: str = "",
                   shares: Optional[Sequence[float]] = None, cols: int = 6) -> go.Figure:
    """Concept ``concept``'s map (H, W) over each image (H, W, 3), one shared colour scale (the largest value over
    the images is 1), so a concept that is weak in an image looks weak there. ``shares``: the concept's share of
    the prompt's score in each image, shown in the titles."""
    top = max(float(np.max(m)) for m in maps) if len(maps) else 0.0
    heats = [np.asarray(m, np.float32) / top if top > 0 else np.zeros_like(m, np.float32) for m in maps]
    titles = [f"image {i}" + (f"<br>share {shares[i]:+.2f}" if shares is not None and np.isfinite(shares[i])
                              else "") for i in range(len(maps))]
    title = f"concept {concept}" + (f": {name}" if name else "") + " (one colour scale across the images)"
    return exemplar_grid_figure(list(pixels), heats, titles, cols=cols, title=title)


def splits_figure(pixels: np.ndarray, components: Mapping[str, np.ndarray], names: Mapping[str, Sequence[str]],
                  weights: Optional[Mapping[str, Sequence[float]]] = None, title: str = "") -> go.Figure:
    """One image's components (K, H, W) under each split: a row per split, each panel titled with the split,
    the component's index, the part it covers (``names``) and, where given, its integration weight. Each map is
    scaled on its own (its shape is what is compared here)."""
    rows = list(components)
    K = max(len(components[r]) for r in rows)
    images, heats, titles = [], [], []
    for r in rows:
        for k in range(K):
            if k < len(components[r]):
                images.append(pixels)
                heats.append(minmax_np(np.asarray(components[r][k], np.float32)))
                w = f", w={weights[r][k]:.2f}" if weights is not None and r in weights else ""
                titles.append(f"{r} {k + 1}{w}<br>{names[r][k]}")
            else:
                images.append(np.full_like(pixels, 255))
                heats.append(None)
                titles.append("")
    return exemplar_grid_figure(images, heats, titles, cols=K, title=title)


def covered_part(component: np.ndarray, parts: Dict[str, np.ndarray], min_share: float = 0.1) -> str:
    """The part holding most of a component's mass (H, W), with its share, or "background" when no part holds
    ``min_share`` of it; parts are masks (H, W) of the component's size, by name."""
    m = np.clip(np.asarray(component, np.float64), 0, None)
    total = m.sum()
    if total <= 0:
        return "empty"
    shares = {n: float(m[mask].sum() / total) for n, mask in parts.items()}
    best = max(shares, key=shares.get) if shares else None
    if best is None or shares[best] < min_share:
        return "background"
    return f"{best.split('/')[-1]} {shares[best]:.0%}"
