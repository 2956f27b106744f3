"""Plotly figure builders: data in, figure out, no state. They read an Explanation, never recompute it."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..ops import minmax_np, upsample_np


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
        # at most ~8 component numbers under the spectrum, which has a third of the figure's width
        fig.update_xaxes(showticklabels=True, tick0=1, dtick=max(1, -(-exp.n_components // 8)),
                         row=1, col=1 + spans[0] + spans[1])
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


def comparison_figure(explanations: Dict[str, object], image: int = 0, prompt: Union[int, str] = 0,
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


# ================================================================== widget and teaching builders
# Used by decomviz.widgets (ComponentScrubber, StepThrough, Explorer) and usable on their own. Thumbnails are
# sent as JPEG/PNG data URIs (go.Image ``source``) rather than as arrays of numbers, which keeps figures with
# many images light enough to redraw in a browser.

import base64 as _base64
import functools as _functools
import io as _io

THUMB_SIZE = 112  # thumbnails (OSSM overlays, masked inputs) are encoded at this size
KEPT_COLOR = "#d1495b"
OTHER_COLOR = "#c5ccd3"
SPECTRUM_COLOR = "#9aa5b1"


@_functools.lru_cache(maxsize=4)
def heat_lut(colorscale: str = HEAT) -> np.ndarray:
    """A (256, 3) uint8 lookup table of a plotly colour scale."""
    from plotly.colors import sample_colorscale
    rgb = sample_colorscale(colorscale, np.linspace(0, 1, 256).tolist())
    return np.array([[round(float(v)) for v in c[c.index("(") + 1:-1].split(",")] for c in rgb], dtype=np.uint8)


def blend_heat(pixels: np.ndarray, heat: Optional[np.ndarray], opacity: float = 0.5,
               colorscale: str = HEAT) -> np.ndarray:
    """RGB uint8 (H, W, 3): ``heat`` in [0, 1] (H, W) coloured and alpha-blended over ``pixels``."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    if heat is None:
        return pixels
    idx = (np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float64)), 0, 1) * 255).round().astype(np.uint8)
    colour = heat_lut(colorscale)[idx].astype(np.float32)
    return (pixels.astype(np.float32) * (1 - opacity) + colour * opacity).round().clip(0, 255).astype(np.uint8)


def image_uri(pixels: np.ndarray, size: Optional[int] = None, fmt: str = "JPEG") -> str:
    """A data URI (JPEG or PNG) of an RGB uint8 image, optionally downscaled so its longer side is ``size``."""
    from PIL import Image
    im = Image.fromarray(np.ascontiguousarray(np.asarray(pixels, dtype=np.uint8)))
    if size is not None and max(im.size) > size:
        scale = size / max(im.size)
        im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), Image.BILINEAR)
    buf = _io.BytesIO()
    if fmt.upper() == "JPEG":
        im.save(buf, format="JPEG", quality=88)
        mime = "jpeg"
    else:
        im.save(buf, format="PNG", optimize=False)
        mime = "png"
    return f"data:image/{mime};base64," + _base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail_trace(pixels: np.ndarray, heat: Optional[np.ndarray] = None, opacity: float = 0.5,
                    size: Optional[int] = THUMB_SIZE, name: str = "thumbnail", dim: bool = False) -> go.Image:
    """A go.Image showing ``pixels`` (with ``heat`` blended over it), drawn at the full image's coordinates."""
    H, W = np.asarray(pixels).shape[:2]
    rgb = blend_heat(pixels, heat, opacity)
    dx = W / (min(W, size) if size and max(H, W) > size else W)
    dy = H / (min(H, size) if size and max(H, W) > size else H)
    return go.Image(source=image_uri(rgb, size), dx=dx, dy=dy, name=name, hoverinfo="skip",
                    opacity=0.25 if dim else 1.0)


def scrubber_figure(exp, image: int = 0, prompt: Union[int, str] = 0, selected: Optional[Sequence[bool]] = None,
                    weighting: str = "integration", opacity: float = 0.5, round_to: Optional[int] = 4) -> go.Figure:
    """What the ComponentScrubber draws, for one (image, prompt) pair of a DecomCAM explanation.

    Traces are named so that a view can find and update them: "combination" (the heat map of
    ``exp.combine(selected, weighting)`` over the image), "saliency" (the full map, for comparison),
    "weights" (a bar per component, selected ones coloured) and "ossm k" (thumbnail k, dimmed when not selected).
    """
    b, t = _pair(exp, image, prompt)
    K = exp.n_components
    if K == 0:
        raise ValueError(f"A {exp.method} explanation has no components to scrub; use DecomCAM.")
    sel = np.ones(K, bool) if selected is None else np.asarray(selected, bool)
    pixels = _np(exp.images[b])
    combo = _np(exp.combine(torch.as_tensor(sel), weighting)[b, t])
    if round_to is not None:
        combo = np.round(combo.astype(np.float64), round_to)
    full = _np(exp.saliency[b, t])
    cols = max(K, 6)
    main_span = cols // 3
    specs = [[{"colspan": main_span}] + [None] * (main_span - 1) + [{"colspan": main_span}] + [None] * (main_span - 1)
             + [{"colspan": cols - 2 * main_span}] + [None] * (cols - 2 * main_span - 1),
             [{} for _ in range(cols)]]
    titles = ["selected components", "all components (the saliency)",
              "weight of each component (selected in colour)"]
    titles += [_component_title(exp, b, t, k) for k in range(K)]
    fig = make_subplots(rows=2, cols=cols, specs=specs, subplot_titles=titles, horizontal_spacing=0.012,
                        vertical_spacing=0.12, row_heights=[0.72, 0.28])
    fig.add_trace(go.Image(source=image_uri(pixels, None, "PNG"), name="image", hoverinfo="skip"), 1, 1)
    fig.add_trace(go.Heatmap(z=combo, zmin=0, zmax=1, colorscale=HEAT, opacity=opacity, showscale=False,
                             name="combination", hovertemplate="x=%{x} y=%{y} value=%{z:.2f}<extra></extra>"), 1, 1)
    fig.add_trace(thumbnail_trace(pixels, full, opacity, size=None, name="saliency"), 1, 1 + main_span)
    w = _np(exp.component_weights(weighting)[b, t]).astype(float)
    fig.add_trace(go.Bar(x=np.arange(1, K + 1), y=w, name="weights",
                         marker_color=[KEPT_COLOR if s else OTHER_COLOR for s in sel],
                         hovertemplate="component %{x}: weight %{y:.2f}<extra></extra>"), 1, 1 + 2 * main_span)
    for k in range(K):
        fig.add_trace(thumbnail_trace(pixels, minmax_np(_np(exp.ossms[b, t, k])), opacity, name=f"ossm {k}",
                                      dim=not sel[k]), 2, 1 + k)
    _hide_axes(fig)
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
    return fig


def masked_input_pixels(exp, image: int = 0, prompt: Union[int, str] = 0) -> np.ndarray:
    """The masked inputs x_k = M_k x + (1 - M_k) r of one pair, rebuilt in pixel space (K, H, W, 3) uint8.

    M_k is the min-max-normalised OSSM k; the blend is convex, so it is the same in pixel space as in the
    normalised space the model saw (up to uint8 rounding of x and r).
    """
    b, t = _pair(exp, image, prompt)
    if exp.reference_images is None or exp.ossms is None:
        raise ValueError("This explanation has no blurred reference (integration='none' or a baseline method).")
    x = _np(exp.images[b]).astype(np.float32)
    r = _np(exp.reference_images[b]).astype(np.float32)
    masks = np.stack([minmax_np(_np(exp.ossms[b, t, k])) for k in range(exp.n_components)]).astype(np.float32)
    out = masks[..., None] * x + (1 - masks[..., None]) * r
    return out.round().clip(0, 255).astype(np.uint8)


def _grid_shape(exp):
    return tuple(_np(exp.gradcam_lowres).shape[-2:]) if exp.gradcam_lowres is not None else None


def alpha_figure(exp, image: int = 0, prompt: Union[int, str] = 0) -> go.Figure:
    """The Grad-CAM weight alpha_c of every channel, sorted, with the P kept channels highlighted."""
    b, t = _pair(exp, image, prompt)
    alpha = _np(exp.alpha[b, t]).astype(float)
    kept = np.zeros(alpha.shape[0], bool)
    kept[_np(exp.channels[b, t]).astype(int)] = True
    order = np.argsort(-alpha, kind="stable")
    fig = go.Figure(go.Bar(x=np.arange(1, len(alpha) + 1), y=alpha[order], customdata=order,
                           marker_color=np.where(kept[order], KEPT_COLOR, OTHER_COLOR), marker_line_width=0,
                           name="alpha", hovertemplate="rank %{x}: channel %{customdata}, α=%{y:.3g}<extra></extra>"))
    fig.add_hline(y=0, line_color="#555", line_width=1)
    fig.update_layout(title=f"α_c for all {len(alpha)} channels of {exp.params.get('layer', 'the layer')}, sorted · "
                            f"{int(kept.sum())} kept (red)", xaxis_title="channel rank (by α)",
                      yaxis_title="α_c (mean gradient)", bargap=0, height=360, width=900,
                      margin=dict(l=10, r=10, t=50, b=10), showlegend=False, plot_bgcolor="white")
    return fig


def kept_channels_figure(exp, image: int = 0, prompt: Union[int, str] = 0, opacity: float = 0.5) -> go.Figure:
    """The Grad-CAM map that the kept channels' gradient-weighted activations add up to (the row sums of X):
    on the tapped grid, and upsampled over the image."""
    b, t = _pair(exp, image, prompt)
    P = exp.channels.shape[-1] if exp.channels is not None else "P"
    gc = _np(exp.gradcam_lowres[b, t]).astype(float)
    pixels = _np(exp.images[b])
    up = upsample_np(np.clip(gc, 0, None), pixels.shape[:2])
    h, w = gc.shape
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.06,
                        subplot_titles=[f"Σ over the {P} kept channels of α_c·A_c ({h}×{w} grid)",
                                        "the same, upsampled over the image"])
    lim = float(np.abs(gc).max()) or 1.0
    fig.add_trace(go.Heatmap(z=gc, colorscale="RdBu_r", zmin=-lim, zmax=lim, name="gradcam grid",
                             colorbar=dict(x=0.455, len=0.8, thickness=10, exponentformat="e"),
                             hovertemplate="cell (%{y}, %{x}): %{z:.3g}<extra></extra>"), 1, 1)
    fig.add_trace(thumbnail_trace(pixels, minmax_np(up), opacity, size=None, name="gradcam overlay"), 1, 2)
    fig.update_yaxes(autorange="reversed", scaleanchor="x", row=1, col=1)
    _hide_axes(fig)
    fig.update_annotations(font_size=12)
    fig.update_layout(height=400, width=800, margin=dict(l=10, r=10, t=40, b=10), showlegend=False,
                      plot_bgcolor="white")
    return fig


def svd_figure(exp, image: int = 0, prompt: Union[int, str] = 0) -> go.Figure:
    """The spectrum of X: singular values sigma_k (bars) and the cumulative share of variance (line)."""
    b, t = _pair(exp, image, prompt)
    K = exp.n_components
    ks = np.arange(1, K + 1)
    ev = _np(exp.explained_variance[b, t]).astype(float)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=ks, y=_np(exp.singular_values[b, t]), name="singular value σ_k", marker_color=SPECTRUM_COLOR,
                         hovertemplate="σ_%{x} = %{y:.3g}<extra></extra>"))
    fig.add_trace(go.Scatter(x=ks, y=np.cumsum(ev), name="cumulative share of ‖X‖²", mode="lines+markers",
                             line_color=KEPT_COLOR, hovertemplate="first %{x}: %{y:.1%}<extra></extra>"),
                  secondary_y=True)
    grid = exp.params.get("grid")
    shape = f"{grid[0] * grid[1]} grid cells × {exp.channels.shape[-1]} kept channels" if grid and \
        exp.channels is not None else "X"
    fig.update_yaxes(title_text="σ_k", exponentformat="e", secondary_y=False)
    fig.update_yaxes(title_text="cumulative share", tickformat=".0%", range=[0, 1.05], tickmode="array",
                     tickvals=[0, 0.25, 0.5, 0.75, 1], showgrid=False, secondary_y=True)
    fig.update_layout(title=f"spectrum of X ({shape}, {'centred' if exp.params.get('center') else 'not centred'})",
                      xaxis_title="component k", xaxis_dtick=1, height=360, width=900,
                      margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.2),
                      plot_bgcolor="white")
    return fig


def ossm_grid_figure(exp, image: int = 0, prompt: Union[int, str] = 0, opacity: float = 0.5) -> go.Figure:
    """Each OSSM: on the tapped grid (top row, ReLU(u_k sigma_k)) and upsampled over the image (bottom row)."""
    b, t = _pair(exp, image, prompt)
    K = exp.n_components
    pixels = _np(exp.images[b])
    titles = [f"OSSM {k + 1}<br>σ={float(exp.singular_values[b, t, k]):.3g}" for k in range(K)] + [""] * K
    fig = make_subplots(rows=2, cols=K, subplot_titles=titles, horizontal_spacing=0.01, vertical_spacing=0.04)
    for k in range(K):
        low = _np(exp.ossms_lowres[b, t, k]).astype(float)
        fig.add_trace(go.Heatmap(z=low, zmin=0, colorscale=HEAT, showscale=False, name=f"ossm {k} grid",
                                 hovertemplate=f"OSSM {k + 1} cell (%{{y}}, %{{x}}): %{{z:.3g}}<extra></extra>"),
                      1, k + 1)
        fig.update_yaxes(autorange="reversed", row=1, col=k + 1)
        fig.add_trace(thumbnail_trace(pixels, minmax_np(_np(exp.ossms[b, t, k])), opacity, name=f"ossm {k}"), 2, k + 1)
    _hide_axes(fig)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=330, width=max(900, 105 * K), margin=dict(l=10, r=10, t=50, b=10), showlegend=False,
                      plot_bgcolor="white")
    return fig


def reference_figure(exp, image: int = 0, prompt: Union[int, str] = 0) -> go.Figure:
    """The input and its blurred reference r, with their scores."""
    b, t = _pair(exp, image, prompt)
    sx = float(exp.base_score[b, t])
    sr = float(exp.reference_score[b, t])
    kind = exp.params.get("score", "score")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.03,
                        subplot_titles=[f"input x · s(x, t) = {sx:.4f}", f"blurred reference r · s(r, t) = {sr:.4f}"])
    fig.add_trace(thumbnail_trace(_np(exp.images[b]), size=None, name="input"), 1, 1)
    fig.add_trace(thumbnail_trace(_np(exp.reference_images[b]), size=None, name="reference"), 1, 2)
    _hide_axes(fig)
    fig.update_layout(title=f"{kind} score against “{exp.prompts[t]}”", height=400, width=760,
                      margin=dict(l=10, r=10, t=70, b=10), showlegend=False)
    return fig


def masked_inputs_figure(exp, image: int = 0, prompt: Union[int, str] = 0) -> go.Figure:
    """The masked inputs x_k = M_k x + (1 - M_k) r, rebuilt in pixel space, with the score of each."""
    b, t = _pair(exp, image, prompt)
    K = exp.n_components
    imgs = masked_input_pixels(exp, b, t)
    scores = _np(exp.masked_scores[b, t]) if exp.masked_scores is not None else [float("nan")] * K
    cols = min(K, 5)
    rows = -(-K // cols)
    titles = [f"x_{k + 1} · s={float(scores[k]):.4f}" for k in range(K)]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.01, vertical_spacing=0.07)
    for k in range(K):
        fig.add_trace(thumbnail_trace(imgs[k], size=160, name=f"masked {k}"), 1 + k // cols, 1 + k % cols)
    _hide_axes(fig)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=40 + 190 * rows, width=max(600, 180 * cols), margin=dict(l=10, r=10, t=30, b=10),
                      showlegend=False)
    return fig


def contributions_figure(exp, image: int = 0, prompt: Union[int, str] = 0) -> go.Figure:
    """Contributions d_k = s(x_k, t) - s(r, t) (bars, red where positive) and weights w_k (line)."""
    b, t = _pair(exp, image, prompt)
    K = exp.n_components
    ks = np.arange(1, K + 1)
    d = _np(exp.contributions[b, t]).astype(float)
    w = _np(exp.weights[b, t]).astype(float)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=ks, y=d, name="contribution d_k", marker_color=np.where(d > 0, KEPT_COLOR, OTHER_COLOR),
                         hovertemplate="d_%{x} = %{y:+.4f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=ks, y=w, name="weight w_k", mode="lines+markers", line_color="#2e4057",
                             hovertemplate="w_%{x} = %{y:.2f}<extra></extra>"), secondary_y=True)
    fig.add_hline(y=0, line_color="#555", line_width=1)
    # Align the axes so that w = 0 sits on d = 0 and w = 1 on the largest d: then w_k = d_k / max_j d_j is
    # visible as the weight markers sitting on top of the positive bars.
    top = float(d.max()) if d.size and d.max() > 0 else 1.0
    low = min(float(d.min()) if d.size else 0.0, 0.0)
    pad = 0.08
    fig.update_yaxes(title_text="d_k = s(x_k, t) − s(r, t)", exponentformat="e",
                     range=[low - pad * top, top * (1 + pad)], secondary_y=False)
    fig.update_yaxes(title_text="w_k", range=[low / top - pad, 1 + pad], tickmode="array",
                     tickvals=[0, 0.25, 0.5, 0.75, 1], showgrid=False, secondary_y=True)
    fig.update_layout(title="what each component restores over the blurred reference, and its weight",
                      xaxis_title="component k", xaxis_dtick=1, height=360, width=900,
                      margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.2), plot_bgcolor="white")
    return fig


def final_figure(exp, image: int = 0, prompt: Union[int, str] = 0, opacity: float = 0.5) -> go.Figure:
    """The final saliency next to the plain Grad-CAM map (when the explanation holds it) for comparison."""
    b, t = _pair(exp, image, prompt)
    pixels = _np(exp.images[b])
    panels = [("DecomCAM: ReLU(Σ w_k·OSSM_k), scaled to [0, 1]", _np(exp.saliency[b, t]))]
    if exp.gradcam_lowres is not None:
        gc = np.clip(_np(exp.gradcam_lowres[b, t]).astype(float), 0, None)
        panels.append(("Grad-CAM (kept channels), to compare", minmax_np(upsample_np(gc, pixels.shape[:2]))))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.03)
    for i, (name, heat) in enumerate(panels):
        for tr in overlay_traces(pixels, np.round(heat.astype(np.float64), 4), opacity, showscale=(i == 0),
                                 name="saliency" if i == 0 else "gradcam"):
            if isinstance(tr, go.Image):
                tr = go.Image(source=image_uri(pixels, None, "PNG"), hoverinfo="skip", name="image")
            fig.add_trace(tr, 1, i + 1)
        fig.update_yaxes(autorange="reversed", row=1, col=i + 1)
    _hide_axes(fig)
    fig.update_traces(colorbar=dict(len=0.8, thickness=12), selector=dict(type="heatmap"))
    fig.update_layout(title=f"“{exp.prompts[t]}”", height=440, width=400 * len(panels) + 80,
                      margin=dict(l=20, r=10, t=80, b=10), showlegend=False)
    return fig


def input_figure(exp, image: int = 0, prompt: Union[int, str] = 0) -> go.Figure:
    """The image that was explained, titled with the prompt and its score."""
    b, t = _pair(exp, image, prompt)
    fig = go.Figure(thumbnail_trace(_np(exp.images[b]), size=None, name="input"))
    score = "" if exp.base_score is None else \
        f" · {exp.params.get('score', 'score')} score s(x, t) = {float(exp.base_score[b, t]):.4f}"
    _hide_axes(fig)
    fig.update_layout(title=f"x = image {b} · t = “{exp.prompts[t]}”{score}", height=420, width=520,
                      margin=dict(l=10, r=10, t=50, b=10), showlegend=False)
    return fig
