"""Figures of one explanation: data in, figure out, no state. They read an Explanation, never recompute it.

- `explanation_figure`: one (image, prompt) pair: the image, the saliency over it, the spectrum, every OSSM;
- `spectrum_figure`: singular values with weights and contributions;
- `comparison_figure`: several methods side by side on one pair;
- `components_figure`: the components on their own scales and, weighted, on one shared scale;
- `scrubber_figure`: what the ComponentScrubber draws (a combination of selected components).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..ops import minmax_np
from .caveats import short_caveat
from .images import HEAT, image_uri, overlay_traces, thumbnail_trace
from .pairs import KEPT_COLOR, OTHER_COLOR, component_title, hide_axes, mark_flag, pair_index, to_numpy

STRIP_SIZE = 112  # OSSM thumbnails are drawn at this resolution to keep figures light


def explanation_figure(exp, image: int = 0, prompt: Union[int, str] = 0, max_components: Optional[int] = None,
                       opacity: float = 0.5, title: Optional[str] = None) -> go.Figure:
    """One (image, prompt) pair: the image, the saliency overlay, the singular-value spectrum with weights, and
    (DecomCAM) every OSSM over the image with its weight w and contribution d. ``title`` names the image
    (default "image b"); an empty map is marked on its panel with the reason (`exp.flags`)."""
    b, t = pair_index(exp, image, prompt)
    pixels = to_numpy(exp.images[b])
    sal = to_numpy(exp.saliency[b, t])
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
    titles += [component_title(exp, b, t, k) for k in range(K)]
    fig = make_subplots(rows=rows, cols=cols, specs=specs, subplot_titles=titles, horizontal_spacing=0.015,
                        vertical_spacing=0.1, row_heights=[3] + [1] * strip_rows if strip_rows else None)
    fig.add_trace(thumbnail_trace(pixels, size=None, name="input"), 1, 1)
    for tr in overlay_traces(pixels, sal, opacity, showscale=True):
        fig.add_trace(tr, 1, 1 + spans[0])
    mark_flag(fig, exp, b, t, 1, 1 + spans[0])
    if K:
        _add_spectrum(fig, exp, b, t, row=1, col=1 + spans[0] + spans[1])
        for k in range(K):
            r, c = 2 + k // cols, 1 + k % cols
            fig.add_trace(thumbnail_trace(pixels, minmax_np(to_numpy(exp.ossms[b, t, k])), opacity, size=STRIP_SIZE,
                                          name=f"ossm {k}"), r, c)
    hide_axes(fig)
    if K:
        # at most ~8 component numbers under the spectrum, which has a third of the figure's width
        fig.update_xaxes(showticklabels=True, tick0=1, dtick=max(1, -(-exp.n_components // 8)),
                         row=1, col=1 + spans[0] + spans[1])
        fig.update_yaxes(showticklabels=True, row=1, col=1 + spans[0] + spans[1])
    fig.update_annotations(font_size=11)
    kind = exp.params.get("score", "cosine")
    score = "" if exp.base_score is None else f" · {kind} score s(x, t) = {float(exp.base_score[b, t]):.4f}"
    fig.update_layout(title=_warned(f"{exp.method} · {title or f'image {b}'} · “{exp.prompts[t]}”{score}", exp, b, t),
                      height=380 + 150 * strip_rows, width=max(900, 110 * cols), margin=dict(l=10, r=10, t=70, b=10),
                      showlegend=False)
    return fig



def components_figure(exp, image: int = 0, prompt: Union[int, str] = 0, max_components: int = 10,
                      opacity: float = 0.6) -> go.Figure:
    """DecomCAM's components of one pair on two scales: top row, each OSSM min-max scaled on its own (its shape;
    a faint component looks as strong as the main one); bottom row, w_k * OSSM_k on one shared scale (what each
    adds to the map; components with weight 0 are blank)."""
    b, t = pair_index(exp, image, prompt)
    K = min(exp.n_components, max_components)
    if K == 0:
        raise ValueError(f"A {exp.method} explanation has no components; use DecomCAM.")
    pixels = to_numpy(exp.images[b])
    own = [to_numpy(exp.ossms[b, t, k]).astype(np.float32) for k in range(K)]
    weighted = [m * max(float(exp.weights[b, t, k]), 0.0) for k, m in enumerate(own)]
    top = max([float(m.max()) for m in weighted] + [1e-12])
    titles = [component_title(exp, b, t, k) for k in range(K)] + [""] * K
    fig = make_subplots(rows=2, cols=K, subplot_titles=titles, horizontal_spacing=0.01, vertical_spacing=0.12)
    for k in range(K):
        fig.add_trace(thumbnail_trace(pixels, minmax_np(own[k]), opacity, size=STRIP_SIZE, name=f"own {k}"), 1, k + 1)
        fig.add_trace(thumbnail_trace(pixels, np.clip(weighted[k] / top, 0, 1), opacity, size=STRIP_SIZE,
                                      name=f"shared {k}"), 2, k + 1)
    hide_axes(fig)
    fig.update_yaxes(title_text="own scale", title_font_size=11, row=1, col=1)
    fig.update_yaxes(title_text="w·OSSM, shared", title_font_size=11, row=2, col=1)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=_warned(f"components of “{exp.prompts[t]}”: each on its own scale (top) and weighted on "
                                    "one scale (bottom)", exp, b, t),
                      height=360, width=max(700, 105 * K), margin=dict(l=40, r=10, t=70, b=10), showlegend=False)
    return fig


def _warned(title: str, exp, b: int, t: int) -> str:
    """A figure's title, with a red line above it when the pair's map cannot mean anything (`viz.caveats`)."""
    note = short_caveat(exp, b, t)
    if not note:
        return title
    return f"<span style='color:#8a1c1c'><b>⚠ {note}</b></span>" + (f"<br>{title}" if title else "")


def _add_spectrum(fig, exp, b, t, row, col):
    ks = np.arange(1, exp.n_components + 1)
    fig.add_trace(go.Bar(x=ks, y=to_numpy(exp.explained_variance[b, t]), name="explained variance",
                         marker_color="#9aa5b1", hovertemplate="#%{x}: %{y:.1%} of variance<extra></extra>"), row, col)
    fig.add_trace(go.Scatter(x=ks, y=to_numpy(exp.weights[b, t]), name="weight w_k", mode="lines+markers",
                             line_color="#d1495b", hovertemplate="#%{x}: weight %{y:.2f}<extra></extra>"), row, col)


def spectrum_figure(exp, image: int = 0, prompt: Union[int, str] = 0) -> go.Figure:
    """Singular values and explained variance, with weights and contributions, for one pair."""
    b, t = pair_index(exp, image, prompt)
    ks = np.arange(1, exp.n_components + 1)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=ks, y=to_numpy(exp.singular_values[b, t]), name="singular value σ_k",
                         marker_color="#9aa5b1"))
    fig.add_trace(go.Scatter(x=ks, y=to_numpy(exp.weights[b, t]), name="weight w_k", mode="lines+markers"),
                  secondary_y=True)
    if exp.contributions is not None:
        fig.add_trace(go.Scatter(x=ks, y=to_numpy(exp.contributions[b, t]), name="contribution d_k",
                                 mode="lines+markers", line_dash="dot"), secondary_y=True)
    fig.update_layout(title="spectrum", xaxis_title="component k", height=300, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def comparison_figure(explanations: Dict[str, object], image: int = 0, prompt: Union[int, str] = 0,
                      opacity: float = 0.5, title: Optional[str] = None) -> go.Figure:
    """Several methods side by side on one (image, prompt) pair; ``title`` names the image (default "image b");
    an empty map is marked on its panel with the reason."""
    names = list(explanations)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.01)
    for i, name in enumerate(names):
        exp = explanations[name]
        b, t = pair_index(exp, image, prompt)
        for tr in overlay_traces(to_numpy(exp.images[b]), to_numpy(exp.saliency[b, t]), opacity,
                                 showscale=(i == len(names) - 1)):
            fig.add_trace(tr, 1, i + 1)
        mark_flag(fig, exp, b, t, 1, i + 1)
    hide_axes(fig)
    first = next(iter(explanations.values()))
    b, t = pair_index(first, image, prompt)
    fig.update_layout(title=_warned(f"“{first.prompts[t]}” · {title or f'image {b}'}", first, b, t), height=300, width=max(600, 230 * len(names)),
                      margin=dict(l=10, r=10, t=60, b=10))
    return fig



def scrubber_figure(exp, image: int = 0, prompt: Union[int, str] = 0, selected: Optional[Sequence[bool]] = None,
                    weighting: str = "integration", opacity: float = 0.5, round_to: Optional[int] = 4) -> go.Figure:
    """What the ComponentScrubber draws, for one (image, prompt) pair of a DecomCAM explanation.

    Traces are named so that a view can find and update them: "combination" (the heat map of
    ``exp.combine(selected, weighting)`` over the image), "saliency" (the full map, for comparison),
    "weights" (a bar per component, selected ones coloured) and "ossm k" (thumbnail k, dimmed when not selected).
    """
    b, t = pair_index(exp, image, prompt)
    K = exp.n_components
    if K == 0:
        raise ValueError(f"A {exp.method} explanation has no components to scrub; use DecomCAM.")
    sel = np.ones(K, bool) if selected is None else np.asarray(selected, bool)
    pixels = to_numpy(exp.images[b])
    combo = to_numpy(exp.combine(torch.as_tensor(sel), weighting)[b, t])
    if round_to is not None:
        combo = np.round(combo.astype(np.float64), round_to)
    full = to_numpy(exp.saliency[b, t])
    cols = max(K, 6)
    main_span = cols // 3
    specs = [[{"colspan": main_span}] + [None] * (main_span - 1) + [{"colspan": main_span}] + [None] * (main_span - 1)
             + [{"colspan": cols - 2 * main_span}] + [None] * (cols - 2 * main_span - 1),
             [{} for _ in range(cols)]]
    titles = ["selected components", "all components (the saliency)",
              "weight of each component (selected in colour)"]
    titles += [component_title(exp, b, t, k) for k in range(K)]
    fig = make_subplots(rows=2, cols=cols, specs=specs, subplot_titles=titles, horizontal_spacing=0.012,
                        vertical_spacing=0.12, row_heights=[0.72, 0.28])
    fig.add_trace(go.Image(source=image_uri(pixels, None, "PNG"), name="image", hoverinfo="skip"), 1, 1)
    fig.add_trace(go.Heatmap(z=combo, zmin=0, zmax=1, colorscale=HEAT, opacity=opacity, showscale=False,
                             name="combination", hovertemplate="x=%{x} y=%{y} value=%{z:.2f}<extra></extra>"), 1, 1)
    fig.add_trace(thumbnail_trace(pixels, full, opacity, size=None, name="saliency"), 1, 1 + main_span)
    w = to_numpy(exp.component_weights(weighting)[b, t]).astype(float)
    fig.add_trace(go.Bar(x=np.arange(1, K + 1), y=w, name="weights",
                         marker_color=[KEPT_COLOR if s else OTHER_COLOR for s in sel],
                         hovertemplate="component %{x}: weight %{y:.2f}<extra></extra>"), 1, 1 + 2 * main_span)
    for k in range(K):
        fig.add_trace(thumbnail_trace(pixels, minmax_np(to_numpy(exp.ossms[b, t, k])), opacity, name=f"ossm {k}",
                                      dim=not sel[k]), 2, 1 + k)
    hide_axes(fig)
    fig.update_xaxes(showticklabels=True, dtick=1, title_text="component", title_standoff=2, row=1,
                     col=1 + 2 * main_span)
    fig.update_yaxes(showticklabels=True, showgrid=True, gridcolor="#eee", side="right", rangemode="tozero",
                     row=1, col=1 + 2 * main_span)
    bars_x = fig.get_subplot(1, 1 + 2 * main_span).xaxis
    lo, hi = bars_x.domain
    bars_x.domain = [lo + 0.03, hi - 0.03]  # room for the axis labels between the images and the bars
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=560, width=max(900, 100 * cols), margin=dict(l=10, r=10, t=40, b=10), showlegend=False,
                      plot_bgcolor="white", bargap=0.25)
    if short_caveat(exp, b, t):
        fig.update_layout(title=_warned("", exp, b, t), margin=dict(t=70))
    return fig
