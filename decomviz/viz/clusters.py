"""Figure builders for clustered OSSM banks: data in (arrays, data frames), figure out, no state, no data access.

The images and OSSMs behind bank rows are fetched by `decomviz.analysis.bank_images` and
`decomviz.analysis.cluster_views` (which also puts the `decomviz cluster` report together); the builders here:

- `cluster_scatter_figure`: the 2-D layout of the clustered components, one trace per cluster;
- `cluster_part_figure`: the cluster-by-part table as a heat map (banks with ground-truth parts);
- `exemplar_grid_figure`: thumbnails (image with an OSSM over it), e.g. the top exemplars of one cluster
  (`exemplar_grid_spec`: the same as plotly's JSON, for views that redraw a grid in place);
- `cluster_exemplar_figure`: the exemplar grid of one cluster, titled from the bank's rows;
- `image_components_figure`: one image's OSSMs (a row per prompt) beside its ground-truth parts.
"""
from __future__ import annotations

import copy
import html
from functools import lru_cache
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .images import heat_overlay, image_uri, part_highlight, part_map

THUMB = 128          # thumbnails are encoded at this size (longer side)
NOISE_COLOR = "#b0b0b0"
_BLANK = image_uri(np.full((2, 2, 3), 255, np.uint8))  # an empty slot's picture
BACKGROUND = "background"


# ---------------------------------------------------------------------------------------------- colours, text
#: Colour-blind-safe palettes: Okabe & Ito (8 colours, up to 8 clusters), then Paul Tol's "muted" 9 with his
#: "dark" blue, red and yellow-green (up to 12); beyond that colours repeat, and the scatter's marker shapes
#: (`cluster_symbol`) still tell clusters apart.
OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"]
TOL_12 = ["#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499",
          "#222255", "#663333", "#225555"]
SYMBOLS = ["circle", "square", "diamond", "triangle-up", "x", "triangle-down", "cross", "star-diamond",
           "pentagon", "hexagon", "triangle-left", "triangle-right"]


def cluster_colors(n: int) -> List[str]:
    """n colours, one per cluster, from colour-blind-safe palettes (Okabe-Ito up to 8, Tol's up to 12)."""
    palette = OKABE_ITO if n <= 8 else TOL_12
    return [palette[i % len(palette)] for i in range(n)]


def cluster_symbol(c: int) -> str:
    """A marker shape per cluster, so that clusters differ by shape as well as colour."""
    return "circle-open" if c < 0 else SYMBOLS[c % len(SYMBOLS)]


def cluster_color(c: int, n: int) -> str:
    return NOISE_COLOR if c < 0 else cluster_colors(n)[c]


def _short(text: str, n: int = 22) -> str:
    text = str(text)
    return text if len(text) <= n else text[:n - 1] + "…"


def short_prompt(prompt: str, n: int = 18) -> str:
    """A prompt shortened for a panel title: "a photo of " dropped, then the end kept ("…of a car")."""
    p = str(prompt)
    for prefix in ("a photo of ", "a picture of "):
        if p.startswith(prefix) and len(p) > n:
            p = p[len(prefix):]
    return p if len(p) <= n else "…" + p[-(n - 1):]


def _esc(text: str) -> str:
    return html.escape(str(text), quote=False)


def component_hover(df, rows: Sequence[int]) -> List[str]:
    """Hover text of clustered components: image, labels, prompt, component, weight."""
    sub = df.iloc[np.asarray(rows, int)]
    return [f"img {int(i)} ({_esc(lb.replace('|', ', '))})<br>“{_esc(p)}” · component {int(k) + 1}<br>w={w:.2f}"
            for i, lb, p, k, w in zip(sub["image_index"], sub["labels"], sub["prompt"], sub["component"],
                                      sub["weight"])]


# ---------------------------------------------------------------------------------------------- scatter
def cluster_scatter_figure(xy: np.ndarray, labels: np.ndarray, names: Dict[int, str],
                           hover: Optional[Sequence[str]] = None, selected_cluster: Optional[int] = None,
                           selected_point: Optional[int] = None, title: str = "", n_colors: Optional[int] = None,
                           width: int = 620, height: int = 480) -> go.Figure:
    """Components in 2-D, coloured by cluster.

    xy (n, 2) layout; labels (n,) cluster ids (-1: noise); names: display name by id. Traces: "cluster c" for each
    id in `names` order, named by `names` (meta {"cluster": c}; customdata: the position of each point in `xy`),
    then "selected" (a star on
    `selected_point`, empty when None). With `selected_cluster`, the other clusters are dimmed.
    """
    xy = np.asarray(xy, float)
    labels = np.asarray(labels, int)
    n_colors = n_colors or max(1, len([c for c in names if c >= 0]))
    fig = go.Figure()
    for c in names:
        idx = np.flatnonzero(labels == c)
        dim = selected_cluster is not None and c != selected_cluster
        fig.add_trace(go.Scatter(
            x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=names[c], customdata=idx,
            meta={"cluster": int(c)}, text=[hover[i] for i in idx] if hover is not None else None,
            hovertemplate=("%{text}" if hover is not None else "point %{customdata}") + "<extra>"
                          + _esc(names[c]) + "</extra>",
            opacity=0.15 if dim else 0.85,  # the trace's: a view dims a cluster with one style, not one per point
            marker=dict(color=cluster_color(c, n_colors), size=6 if c < 0 else 8, symbol=cluster_symbol(c),
                        line=dict(width=0.5, color="white"))))
    sel = [] if selected_point is None else [int(selected_point)]
    fig.add_trace(go.Scatter(x=xy[sel, 0], y=xy[sel, 1], mode="markers", name="selected", showlegend=False,
                             hoverinfo="skip", marker=dict(symbol="star", size=18, color="#111",
                                                           line=dict(width=1.5, color="white"))))
    fig.update_layout(title=title or f"{len(xy)} components in 2-D, coloured by cluster", width=width,
                      height=height, margin=dict(l=10, r=10, t=50, b=10), plot_bgcolor="white",
                      legend=dict(itemsizing="constant", font_size=11), clickmode="event",
                      hovermode="closest")
    fig.update_xaxes(showticklabels=False, zeroline=False, showgrid=False, showline=True, linecolor="#ccc")
    fig.update_yaxes(showticklabels=False, zeroline=False, showgrid=False, showline=True, linecolor="#ccc")
    return fig


# ---------------------------------------------------------------------------------------------- grids
def _grid(rows: int, cols: int, panel: int, title_lines: int, top: int):
    """Pixel geometry of a grid of square panels with `title_lines` of subplot title above each: the figure's
    width and height, make_subplots' horizontal and vertical spacing, and the top margin."""
    hgap, gap = 6, 15 * title_lines + 10
    plot_w = cols * panel + (cols - 1) * hgap
    plot_h = rows * panel + (rows - 1) * gap
    margin_t = top + 15 * title_lines + 4
    return dict(width=plot_w + 20, height=plot_h + margin_t + 10, hs=hgap / plot_w if cols > 1 else 0.0,
                vs=gap / plot_h if rows > 1 else 0.0, top=margin_t)


# ---------------------------------------------------------------------------------------------- exemplars
def exemplar_grid_figure(images: Sequence[np.ndarray], heats: Sequence[Optional[np.ndarray]],
                         titles: Sequence[str], n_slots: Optional[int] = None, cols: int = 8, title: str = "",
                         color: Optional[str] = None, metas: Optional[Sequence[Any]] = None,
                         opacity: float = 0.7, thumb: int = THUMB, panel: int = 136) -> go.Figure:
    """A grid of thumbnails: image i with heat map i (in [0, 1], or None) blended over it, titled titles[i].

    There are always `n_slots` panels (default len(images)); the ones past the data are blank (traces named
    "empty"), so a view can update a fixed grid in place. Traces are named "exemplar i" and carry metas[i] in
    `meta`. `color` frames every filled panel (e.g. the cluster's colour). The figure of `exemplar_grid_spec`.
    """
    return go.Figure(exemplar_grid_spec(images, heats, titles, n_slots=n_slots, cols=cols, title=title, color=color,
                                        metas=metas, opacity=opacity, thumb=thumb, panel=panel))


def exemplar_grid_spec(images: Sequence[np.ndarray], heats: Sequence[Optional[np.ndarray]],
                       titles: Sequence[str], n_slots: Optional[int] = None, cols: int = 8, title: str = "",
                       color: Optional[str] = None, metas: Optional[Sequence[Any]] = None,
                       opacity: float = 0.7, thumb: int = THUMB, panel: int = 136) -> Dict[str, Any]:
    """`exemplar_grid_figure` as plotly's JSON ({"data", "layout"}), without building plotly objects: a view that
    redraws a grid of the same shape (`decomviz.widgets._common.replace_figure`) skips plotly's validation of
    every panel, most of a cluster pick's time in the kernel. Each slot has a title annotation (blank ones empty).
    """
    n = len(images)
    n_slots = max(n, n_slots or n, 1)
    cols = max(1, min(cols, n_slots))
    lines = max([t.count("<br>") + 1 for t in titles] + [1])
    skeleton = _grid_skeleton(n_slots, cols, panel, lines, title.count("<br>") + 1 if title else 0)
    layout = copy.deepcopy(skeleton)
    padded = list(titles) + [""] * (n_slots - n)
    for annotation, text in zip(layout["annotations"], padded):
        annotation["text"] = text
    layout["title"]["text"] = title
    if color and n:
        layout["shapes"] = [dict(type="rect", xref=f"{_axis('x', j)} domain", yref=f"{_axis('y', j)} domain", x0=0,
                                 y0=0, x1=1, y1=1, line=dict(color=color, width=3)) for j in range(n)]
    data = []
    for j in range(n_slots):
        axes = dict(xaxis=_axis("x", j), yaxis=_axis("y", j))
        if j < n:
            px = np.asarray(images[j], np.uint8)
            H, W = px.shape[:2]
            scale = max(H, W) / thumb if max(H, W) > thumb else 1.0
            trace = dict(type="image", source=image_uri(heat_overlay(px, heats[j], opacity), thumb), dx=scale, dy=scale,
                         name=f"exemplar {j}", hoverinfo="skip", **axes)
            if metas is not None and metas[j] is not None:
                trace["meta"] = metas[j]
        else:
            trace = dict(type="image", source=_BLANK, name="empty", hoverinfo="skip", **axes)
        data.append(trace)
    return {"data": data, "layout": layout}


def _axis(letter: str, j: int) -> str:
    return letter if j == 0 else f"{letter}{j + 1}"


@lru_cache(maxsize=32)
def _grid_skeleton(n_slots: int, cols: int, panel: int, lines: int, title_lines: int) -> Dict[str, Any]:
    """The layout of an empty grid (plotly's JSON, without the template): axes, one title annotation per slot,
    size, margins. make_subplots builds it once per shape."""
    rows = -(-n_slots // cols)
    geo = _grid(rows, cols, panel, lines, top=30 + 18 * title_lines if title_lines else 10)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=["·"] * n_slots + [""] * (rows * cols - n_slots),
                        horizontal_spacing=geo["hs"], vertical_spacing=geo["vs"])
    layout = _finish_grid(fig, "·" if title_lines else "", geo).layout.to_plotly_json()
    layout.pop("template", None)
    return layout


def exemplar_titles(df, rows: Sequence[int], name: str, overlap=None, vocabulary=()) -> List[str]:
    """Panel titles for bank rows: "<name> · w=0.93" then "img 12 · “prompt” #k", and, given `overlap` (one row
    of part shares per bank row in `rows`, over `vocabulary`), the row's best part and its share of the energy."""
    out = []
    for j, r in enumerate(rows):
        rec = df.iloc[int(r)]
        line2 = f"img {int(rec['image_index'])} #{int(rec['component']) + 1} · {short_prompt(rec['prompt'], 14)}"
        title = f"{_esc(_short(name, 16))} · w={float(rec['weight']):.2f}<br>{_esc(line2)}"
        if overlap is not None and len(vocabulary) and len(overlap[j]):
            best = int(np.argmax(overlap[j]))
            title += f"<br>{_esc(_short(vocabulary[best], 18))} {float(overlap[j][best]):.0%}"
        out.append(title)
    return out


def cluster_exemplar_figure(df, rows: Sequence[int], pixels: Sequence[np.ndarray],
                            heats: Sequence[Optional[np.ndarray]], c: int, names: Dict[int, str], n_colors: int,
                            n_slots: int, size: int, by: str = "weight", confidence: Optional[float] = None,
                            cols: int = 8, overlap=None, vocabulary: Sequence[str] = (), as_json: bool = False):
    """The exemplar grid of cluster `c` (a go.Figure; plotly's JSON with ``as_json``, see `exemplar_grid_spec`): bank rows `rows` (of the data frame `df`), with pixels[i] and heats[i]
    the image and upsampled OSSM of rows[i]. `size` is the cluster's number of components, `confidence` the text
    match of its name (None: unnamed); `overlap` (len(rows), V) the rows' part shares over `vocabulary`, for banks
    with ground-truth parts. Panels carry {"row", "cluster", "image_index"} in `meta`."""
    name = names.get(c, f"cluster {c}")
    metas = [{"row": int(r), "cluster": int(c), "image_index": int(df["image_index"].iat[int(r)])} for r in rows]
    conf = f" (text match {confidence:.0%})" if confidence is not None else ""
    order = "by weight" if by == "weight" else "closest to the cluster centre"
    title = f"<b>{_esc(name)}</b>{_esc(conf)} · {size} components · top {len(rows)} {order} (one per image)"
    build = exemplar_grid_spec if as_json else exemplar_grid_figure
    return build(pixels, heats, exemplar_titles(df, rows, name, overlap, vocabulary), n_slots=n_slots, cols=cols,
                 title=title, color=cluster_color(c, n_colors), metas=metas)


# ---------------------------------------------------------------------------------------------- parts table
def cluster_part_figure(table: np.ndarray, part_names: Sequence[str], names: Dict[int, str],
                        title: str = "", selected: Optional[Tuple[int, str]] = None) -> go.Figure:
    """The cluster-by-part table as a heat map: colour = share of the cluster's components whose dominant
    ground-truth part is that column (rows sum to 1), text = the count. "background" is the last column."""
    table = np.asarray(table, float)
    part_names = list(part_names)
    order = [i for i, p in enumerate(part_names) if p != BACKGROUND] + \
            [i for i, p in enumerate(part_names) if p == BACKGROUND]
    table = table[:, order]
    part_names = [part_names[i] for i in order]
    sizes = table.sum(1, keepdims=True)
    share = np.divide(table, sizes, out=np.zeros_like(table), where=sizes > 0)
    ylab = [f"{names.get(c, f'cluster {c}')} ({int(sizes[c, 0])})" for c in range(table.shape[0])]
    text = np.where(table > 0, table.astype(int).astype(str), "")
    custom = np.stack([table, np.repeat(sizes, table.shape[1], 1)], -1)
    fig = go.Figure(go.Heatmap(
        z=share, x=part_names, y=ylab, colorscale="Blues", zmin=0, zmax=1, text=text, texttemplate="%{text}",
        textfont_size=9, customdata=custom, name="cluster x part", xgap=1, ygap=1,
        colorbar=dict(title=dict(text="share of<br>cluster", side="top"), thickness=12, len=0.8),
        hovertemplate="%{y}<br>dominant part %{x}: %{customdata[0]:.0f} of %{customdata[1]:.0f} "
                      "components (%{z:.0%})<extra></extra>"))
    if selected is not None and selected[1] in part_names:
        c, p = selected
        fig.add_shape(type="rect", x0=part_names.index(p) - 0.5, x1=part_names.index(p) + 0.5, y0=c - 0.5,
                      y1=c + 0.5, line=dict(color="#d1495b", width=3), name="selected")
    fig.update_yaxes(autorange="reversed", tickfont_size=11)
    fig.update_xaxes(tickangle=-60, tickfont_size=10, side="bottom")
    fig.update_layout(title=title or "which ground-truth part holds most of each component's energy, per cluster",
                      width=min(1400, max(520, 220 + 22 * len(part_names))), height=max(300, 140 + 26 * len(ylab)),
                      margin=dict(l=10, r=10, t=50, b=10), plot_bgcolor="white")
    return fig


# ---------------------------------------------------------------------------------------------- one image
def image_components_figure(pixels: np.ndarray, prompts: Sequence[str], heats: Sequence[Sequence[np.ndarray]],
                            titles: Sequence[Sequence[str]], colors: Sequence[Sequence[Optional[str]]],
                            parts: Optional[Mapping[str, np.ndarray]] = None, title: str = "",
                            opacity: float = 0.7, thumb: int = THUMB, panel: int = 120) -> go.Figure:
    """One image: a row per prompt (the image, then each OSSM over it, framed in its cluster's colour), then the
    ground-truth parts (all parts, then one panel per part) when `parts` is given.

    heats[t][k] (H, W) in [0, 1]; titles[t][k] and colors[t][k] (None: no frame) for each OSSM. Traces are named
    "image", "ossm t k", "parts" and "part <class/part>".
    """
    pixels = np.asarray(pixels, np.uint8)
    T = len(prompts)
    K = max([len(h) for h in heats] + [1])
    cols = K + 1
    part_items = list(parts.items()) if parts else []
    part_rows = -(-(len(part_items) + 1) // cols) if parts is not None else 0
    rows = T + part_rows
    panel_titles: List[str] = []
    for t in range(T):
        panel_titles += [f"<b>{_esc(_short(prompts[t], 24))}</b>"] + list(titles[t]) + [""] * (K - len(titles[t]))
    if parts is not None:
        ptitles = ["<b>ground-truth parts</b>"] + [_esc(_short(k, 20)) for k, _ in part_items]
        panel_titles += ptitles + [""] * (part_rows * cols - len(ptitles))
    lines = max([t.count("<br>") + 1 for t in panel_titles] + [1])
    geo = _grid(max(rows, 1), cols, panel, lines, top=30 + 18 * (title.count("<br>") + 1) if title else 10)
    fig = make_subplots(rows=max(rows, 1), cols=cols, subplot_titles=panel_titles, horizontal_spacing=geo["hs"],
                        vertical_spacing=geo["vs"])
    H, W = pixels.shape[:2]
    scale = max(H, W) / thumb if max(H, W) > thumb else 1.0

    def add(rgb, r, c, name, frame=None):
        fig.add_trace(go.Image(source=image_uri(rgb, thumb), dx=scale, dy=scale, name=name, hoverinfo="skip"), r, c)
        if frame:
            n = (r - 1) * cols + c
            ax = "" if n == 1 else n
            fig.add_shape(type="rect", xref=f"x{ax} domain", yref=f"y{ax} domain", x0=0, y0=0, x1=1, y1=1,
                          line=dict(color=frame, width=3))

    for t in range(T):
        add(pixels, t + 1, 1, "image")
        for k, heat in enumerate(heats[t]):
            add(heat_overlay(pixels, heat, opacity), t + 1, k + 2, f"ossm {t} {k}", colors[t][k])
    if parts is not None:
        r0 = T + 1
        add(part_map(pixels, parts), r0, 1, "parts")
        for j, (name, mask) in enumerate(part_items):
            n = j + 1
            add(part_highlight(pixels, mask, j), r0 + n // cols, 1 + n % cols, f"part {name}")
    return _finish_grid(fig, title, geo)


def _finish_grid(fig: go.Figure, title: str, geo: Dict) -> go.Figure:
    """The layout every image grid shares: no axes, small subplot titles, the size `_grid` computed."""
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    # images run top to bottom; said here, not left to plotly, because a view redrawn with a new structure gets
    # its layout before its traces, and an axis laid out before its image would keep an upward y
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed")
    fig.update_annotations(font_size=10)
    fig.update_layout(title=dict(text=title, font_size=14, y=1, yanchor="top", pad=dict(t=12)),
                      width=geo["width"], height=geo["height"], margin=dict(l=10, r=10, t=geo["top"], b=10),
                      showlegend=False, plot_bgcolor="white")
    return fig
