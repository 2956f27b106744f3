"""The step-by-step teaching figures of DecomCAM (what `decomviz.widgets.StepThrough` shows), each read from one
(image, prompt) pair of an Explanation: the input and its score, the channel weights alpha, the kept channels'
Grad-CAM map, the spectrum of X, the OSSMs, the blurred reference, the masked inputs, the contributions and
weights, and the final map."""
from __future__ import annotations

from typing import Union

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..ops import minmax_np, upsample_np
from .images import HEAT, overlay_traces, thumbnail_trace
from .pairs import KEPT_COLOR, OTHER_COLOR, SPECTRUM_COLOR, hide_axes, pair_index, to_numpy


def masked_input_pixels(exp, image: int = 0, prompt: Union[int, str] = 0) -> np.ndarray:
    """The masked inputs x_k = M_k x + (1 - M_k) r of one pair, rebuilt in pixel space (K, H, W, 3) uint8.

    M_k is the min-max-normalised OSSM k; the blend is convex, so it is the same in pixel space as in the
    normalised space the model saw (up to uint8 rounding of x and r).
    """
    b, t = pair_index(exp, image, prompt)
    if exp.reference_images is None or exp.ossms is None:
        raise ValueError("This explanation has no blurred reference (integration='none' or a baseline method).")
    x = to_numpy(exp.images[b]).astype(np.float32)
    r = to_numpy(exp.reference_images[b]).astype(np.float32)
    masks = np.stack([minmax_np(to_numpy(exp.ossms[b, t, k])) for k in range(exp.n_components)]).astype(np.float32)
    out = masks[..., None] * x + (1 - masks[..., None]) * r
    return out.round().clip(0, 255).astype(np.uint8)


def alpha_figure(exp, image: int = 0, prompt: Union[int, str] = 0) -> go.Figure:
    """The Grad-CAM weight alpha_c of every channel, sorted, with the P kept channels highlighted."""
    b, t = pair_index(exp, image, prompt)
    alpha = to_numpy(exp.alpha[b, t]).astype(float)
    kept = np.zeros(alpha.shape[0], bool)
    kept[to_numpy(exp.channels[b, t]).astype(int)] = True
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
    b, t = pair_index(exp, image, prompt)
    P = exp.channels.shape[-1] if exp.channels is not None else "P"
    gc = to_numpy(exp.gradcam_lowres[b, t]).astype(float)
    pixels = to_numpy(exp.images[b])
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
    hide_axes(fig)
    fig.update_annotations(font_size=12)
    fig.update_layout(height=400, width=800, margin=dict(l=10, r=10, t=40, b=10), showlegend=False,
                      plot_bgcolor="white")
    return fig


def svd_figure(exp, image: int = 0, prompt: Union[int, str] = 0) -> go.Figure:
    """The spectrum of X: singular values sigma_k (bars) and the cumulative share of variance (line)."""
    b, t = pair_index(exp, image, prompt)
    K = exp.n_components
    ks = np.arange(1, K + 1)
    ev = to_numpy(exp.explained_variance[b, t]).astype(float)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=ks, y=to_numpy(exp.singular_values[b, t]), name="singular value σ_k",
                         marker_color=SPECTRUM_COLOR, hovertemplate="σ_%{x} = %{y:.3g}<extra></extra>"))
    fig.add_trace(go.Scatter(x=ks, y=np.cumsum(ev), name="cumulative share of ‖X‖²", mode="lines+markers",
                             line_color=KEPT_COLOR, hovertemplate="first %{x}: %{y:.1%}<extra></extra>"),
                  secondary_y=True)
    grid = exp.params.get("grid")
    shape = f"{grid[0] * grid[1]} grid cells × {exp.channels.shape[-1]} kept channels" if grid and \
        exp.channels is not None else "X"
    fig.update_yaxes(title_text="σ_k", exponentformat="e", secondary_y=False)
    fig.update_yaxes(title_text="cumulative share", tickformat=".0%", range=[0, 1.05], tickmode="array",
                     tickvals=[0, 0.25, 0.5, 0.75, 1], showgrid=False, secondary_y=True)
    split = exp.params.get("decomposition", "svd")
    title = (f"spectrum of X ({shape}, {'centred' if exp.params.get('center') else 'not centred'})" if split == "svd"
             else f"component sizes of the {split if split == 'nmf' else 'custom'} split of X ({shape})")
    fig.update_layout(title=title,
                      xaxis_title="component k", xaxis_dtick=1, height=360, width=900,
                      margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.2),
                      plot_bgcolor="white")
    return fig


def ossm_grid_figure(exp, image: int = 0, prompt: Union[int, str] = 0, opacity: float = 0.5) -> go.Figure:
    """Each OSSM: on the tapped grid (top row, ReLU(u_k sigma_k)) and upsampled over the image (bottom row)."""
    b, t = pair_index(exp, image, prompt)
    K = exp.n_components
    pixels = to_numpy(exp.images[b])
    titles = [f"OSSM {k + 1}<br>σ={float(exp.singular_values[b, t, k]):.3g}" for k in range(K)] + [""] * K
    fig = make_subplots(rows=2, cols=K, subplot_titles=titles, horizontal_spacing=0.01, vertical_spacing=0.04)
    for k in range(K):
        low = to_numpy(exp.ossms_lowres[b, t, k]).astype(float)
        fig.add_trace(go.Heatmap(z=low, zmin=0, colorscale=HEAT, showscale=False, name=f"ossm {k} grid",
                                 hovertemplate=f"OSSM {k + 1} cell (%{{y}}, %{{x}}): %{{z:.3g}}<extra></extra>"),
                      1, k + 1)
        fig.update_yaxes(autorange="reversed", row=1, col=k + 1)
        fig.add_trace(thumbnail_trace(pixels, minmax_np(to_numpy(exp.ossms[b, t, k])), opacity, name=f"ossm {k}"),
                      2, k + 1)
    hide_axes(fig)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=330, width=max(900, 105 * K), margin=dict(l=10, r=10, t=50, b=10), showlegend=False,
                      plot_bgcolor="white")
    return fig


def reference_figure(exp, image: int = 0, prompt: Union[int, str] = 0) -> go.Figure:
    """The input and its blurred reference r, with their scores."""
    b, t = pair_index(exp, image, prompt)
    sx = float(exp.base_score[b, t])
    sr = float(exp.reference_score[b, t])
    kind = exp.params.get("score", "score")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.03,
                        subplot_titles=[f"input x · s(x, t) = {sx:.4f}", f"blurred reference r · s(r, t) = {sr:.4f}"])
    fig.add_trace(thumbnail_trace(to_numpy(exp.images[b]), size=None, name="input"), 1, 1)
    fig.add_trace(thumbnail_trace(to_numpy(exp.reference_images[b]), size=None, name="reference"), 1, 2)
    hide_axes(fig)
    fig.update_layout(title=f"{kind} score against “{exp.prompts[t]}”", height=400, width=760,
                      margin=dict(l=10, r=10, t=70, b=10), showlegend=False)
    return fig


def masked_inputs_figure(exp, image: int = 0, prompt: Union[int, str] = 0) -> go.Figure:
    """The masked inputs x_k = M_k x + (1 - M_k) r, rebuilt in pixel space, with the score of each."""
    b, t = pair_index(exp, image, prompt)
    K = exp.n_components
    imgs = masked_input_pixels(exp, b, t)
    scores = to_numpy(exp.masked_scores[b, t]) if exp.masked_scores is not None else [float("nan")] * K
    cols = min(K, 5)
    rows = -(-K // cols)
    titles = [f"x_{k + 1} · s={float(scores[k]):.4f}" for k in range(K)]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.01, vertical_spacing=0.07)
    for k in range(K):
        fig.add_trace(thumbnail_trace(imgs[k], size=160, name=f"masked {k}"), 1 + k // cols, 1 + k % cols)
    hide_axes(fig)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=40 + 190 * rows, width=max(600, 180 * cols), margin=dict(l=10, r=10, t=30, b=10),
                      showlegend=False)
    return fig


def contributions_figure(exp, image: int = 0, prompt: Union[int, str] = 0) -> go.Figure:
    """Contributions d_k = s(x_k, t) - s(r, t) (bars, red where positive) and weights w_k (line)."""
    b, t = pair_index(exp, image, prompt)
    K = exp.n_components
    ks = np.arange(1, K + 1)
    d = to_numpy(exp.contributions[b, t]).astype(float)
    w = to_numpy(exp.weights[b, t]).astype(float)
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
    b, t = pair_index(exp, image, prompt)
    pixels = to_numpy(exp.images[b])
    panels = [("DecomCAM: ReLU(Σ w_k·OSSM_k), scaled to [0, 1]", to_numpy(exp.saliency[b, t]))]
    if exp.gradcam_lowres is not None:
        gc = np.clip(to_numpy(exp.gradcam_lowres[b, t]).astype(float), 0, None)
        panels.append(("Grad-CAM (kept channels), to compare", minmax_np(upsample_np(gc, pixels.shape[:2]))))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.03)
    for i, (name, heat) in enumerate(panels):
        for tr in overlay_traces(pixels, np.round(heat.astype(np.float64), 4), opacity, showscale=(i == 0),
                                 name="saliency" if i == 0 else "gradcam"):
            fig.add_trace(tr, 1, i + 1)
        fig.update_yaxes(autorange="reversed", row=1, col=i + 1)
    hide_axes(fig)
    fig.update_traces(colorbar=dict(len=0.8, thickness=12), selector=dict(type="heatmap"))
    fig.update_layout(title=f"“{exp.prompts[t]}”", height=440, width=400 * len(panels) + 80,
                      margin=dict(l=20, r=10, t=80, b=10), showlegend=False)
    return fig


def input_figure(exp, image: int = 0, prompt: Union[int, str] = 0) -> go.Figure:
    """The image that was explained, titled with the prompt and its score."""
    b, t = pair_index(exp, image, prompt)
    fig = go.Figure(thumbnail_trace(to_numpy(exp.images[b]), size=None, name="input"))
    score = "" if exp.base_score is None else \
        f" · {exp.params.get('score', 'score')} score s(x, t) = {float(exp.base_score[b, t]):.4f}"
    hide_axes(fig)
    fig.update_layout(title=f"x = image {b} · t = “{exp.prompts[t]}”{score}", height=420, width=520,
                      margin=dict(l=10, r=10, t=50, b=10), showlegend=False)
    return fig
