"""Plotly figure builders: data in, figure out, no state. They read an Explanation, never recompute it."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

HEAT = "Turbo"
STRIP_SIZE = 112  # OSSM thumbnails are drawn at this resolution to keep figures light


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _shrink(m: np.ndarray, size: int) -> np.ndarray:
    step = max(1, m.shape[0] // size)
    return m[::step, ::step]


def overlay_traces(pixels: np.ndarray, heat: np.ndarray, opacity: float = 0.5, showscale: bool = False,
                   name: str = "saliency", zmax: float = 1.0):
    """An image and a heat map drawn over it (same axes)."""
    return [go.Image(z=pixels, hoverinfo="skip", name="image"),
            go.Heatmap(z=heat, zmin=0, zmax=zmax, colorscale=HEAT, opacity=opacity, showscale=showscale,
                       name=name, hovertemplate="x=%{x} y=%{y} value=%{z:.2f}<extra></extra>")]


def _pair(exp, image, prompt):
    t = exp.prompts.index(prompt) if isinstance(prompt, str) else int(prompt)
    return int(image), t


def _hide_axes(fig):
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)


def explanation_figure(exp, image: int = 0, prompt: Union[int, str] = 0, max_components: Optional[int] = None,
                       opacity: float = 0.5) -> go.Figure:
    """One (image, prompt) pair: the image, the saliency overlay, the singular-value spectrum with weights, and
    (DecomCAM) every OSSM with its weight w and contribution d."""
    b, t = _pair(exp, image, prompt)
    pixels = _np(exp.images[b])
    sal = _np(exp.saliency[b, t])
    K = exp.n_components if max_components is None else min(exp.n_components, max_components)
    cols = max(6, min(K, 10))
    strip_rows = -(-K // cols) if K else 0
    rows = 1 + strip_rows
    spans = [cols // 3, cols // 3, cols - 2 * (cols // 3)] if K else [cols // 2, cols - cols // 2]
    top = []
    for span in spans:
        top += [{"colspan": span}] + [None] * (span - 1)
    specs = [top] + [[{}] * cols for _ in range(strip_rows)]
    titles = ["image", f"{exp.method}: “{exp.prompts[t]}”"] + (["variance share (bars) and weight w (line)"] if K else [])
    titles += [_component_title(exp, b, t, k) for k in range(K)]
    fig = make_subplots(rows=rows, cols=cols, specs=specs, subplot_titles=titles, horizontal_spacing=0.015,
                        vertical_spacing=0.1, row_heights=[3] + [1] * strip_rows if strip_rows else None)
    fig.add_trace(go.Image(z=pixels, hoverinfo="skip"), 1, 1)
    for tr in overlay_traces(pixels, sal, opacity, showscale=True):
        fig.add_trace(tr, 1, 1 + spans[0])
    if K:
        _add_spectrum(fig, exp, b, t, row=1, col=1 + spans[0] + spans[1])
        for k in range(K):
            r, c = 2 + k // cols, 1 + k % cols
            fig.add_trace(go.Heatmap(z=_shrink(_np(exp.ossms[b, t, k]), STRIP_SIZE), colorscale=HEAT, showscale=False,
                                     zmin=0, hovertemplate=f"OSSM {k + 1}: %{{z:.3f}}<extra></extra>"), r, c)
            fig.update_yaxes(autorange="reversed", row=r, col=c)
    _hide_axes(fig)
    if K:
        fig.update_xaxes(showticklabels=True, row=1, col=1 + spans[0] + spans[1])
        fig.update_yaxes(showticklabels=True, row=1, col=1 + spans[0] + spans[1])
    fig.update_annotations(font_size=11)
    score = "" if exp.base_score is None else f" · score {float(exp.base_score[b, t]):.4f}"
    fig.update_layout(title=f"{exp.method} · image {b} · “{exp.prompts[t]}”{score}",
                      height=380 + 150 * strip_rows, width=max(900, 110 * cols), margin=dict(l=10, r=10, t=70, b=10),
                      showlegend=False)
    return fig


def _component_title(exp, b, t, k) -> str:
    w = float(exp.weights[b, t, k]) if exp.weights is not None else float("nan")
    if exp.contributions is not None:
        return f"#{k + 1}: w={w:.2f}<br>d={float(exp.contributions[b, t, k]):+.3f}"
    return f"#{k + 1} w={w:.2f}"


def _add_spectrum(fig, exp, b, t, row, col):
    ks = np.arange(1, exp.n_components + 1)
    fig.add_trace(go.Bar(x=ks, y=_np(exp.explained_variance[b, t]), name="explained variance",
                         marker_color="#9aa5b1", hovertemplate="#%{x}: %{y:.1%} of variance<extra></extra>"), row, col)
    fig.add_trace(go.Scatter(x=ks, y=_np(exp.weights[b, t]), name="weight w_k", mode="lines+markers",
                             line_color="#d1495b", hovertemplate="#%{x}: weight %{y:.2f}<extra></extra>"), row, col)


def spectrum_figure(exp, image: int = 0, prompt: Union[int, str] = 0) -> go.Figure:
    """Singular values and explained variance, with weights and contributions, for one pair."""
    b, t = _pair(exp, image, prompt)
    ks = np.arange(1, exp.n_components + 1)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=ks, y=_np(exp.singular_values[b, t]), name="singular value σ_k", marker_color="#9aa5b1"))
    fig.add_trace(go.Scatter(x=ks, y=_np(exp.weights[b, t]), name="weight w_k", mode="lines+markers"), secondary_y=True)
    if exp.contributions is not None:
        fig.add_trace(go.Scatter(x=ks, y=_np(exp.contributions[b, t]), name="contribution d_k", mode="lines+markers",
                                 line_dash="dot"), secondary_y=True)
    fig.update_layout(title="spectrum", xaxis_title="component k", height=300, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def comparison_figure(explanations: Dict[str, "Explanation"], image: int = 0, prompt: Union[int, str] = 0,
                      opacity: float = 0.5) -> go.Figure:
    """Several methods side by side on one (image, prompt) pair."""
    names = list(explanations)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.01)
    for i, name in enumerate(names):
        exp = explanations[name]
        b, t = _pair(exp, image, prompt)
        for tr in overlay_traces(_np(exp.images[b]), _np(exp.saliency[b, t]), opacity, showscale=(i == len(names) - 1)):
            fig.add_trace(tr, 1, i + 1)
    _hide_axes(fig)
    first = next(iter(explanations.values()))
    b, t = _pair(first, image, prompt)
    fig.update_layout(title=f"“{first.prompts[t]}” · image {b}", height=300, width=max(600, 230 * len(names)),
                      margin=dict(l=10, r=10, t=60, b=10))
    return fig
