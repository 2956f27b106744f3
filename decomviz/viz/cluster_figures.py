"""Figure builders for clustered OSSM banks: data in, figure out, no state.

`BankImages` recovers the image (and, for PartsWorld banks, the ground-truth parts) behind a bank row, at the
crop the model saw, so that a low-resolution OSSM can be upsampled and drawn over it. The builders below take
plain arrays; `cluster_report_figures(bank, clusters)` puts them together for the `decomviz cluster` report:

- `cluster_scatter_figure`: the 2-D layout of the clustered components, one trace per cluster;
- `cluster_part_figure`: the cluster-by-part table as a heat map (PartsWorld banks);
- `exemplar_grid_figure`: thumbnails (image with an OSSM over it), e.g. the top exemplars of one cluster;
- `image_components_figure`: one image's OSSMs (a row per prompt) beside its ground-truth parts.
"""
from __future__ import annotations

import html
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figures import HEAT, heat_lut, image_uri, minmax_np

THUMB = 128          # thumbnails are encoded at this size (longer side)
NOISE_COLOR = "#b0b0b0"
BACKGROUND = "background"
PART_COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
               "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000"]


# ---------------------------------------------------------------------------------------------- colours, names
def cluster_colors(n: int) -> List[str]:
    """n distinguishable colours (plotly qualitative palettes), one per cluster."""
    from plotly.colors import qualitative as q
    palette = q.D3 if n <= 10 else (q.Dark24 if n <= 24 else q.Dark24 + q.Light24)
    return [palette[i % len(palette)] for i in range(n)]


def cluster_color(c: int, n: int) -> str:
    return NOISE_COLOR if c < 0 else cluster_colors(n)[c]


def cluster_names(clusters) -> Dict[int, str]:
    """Display names by cluster id: "c3 wheel" after `clusters.name_parts(...)`, else "cluster 3"; -1 is noise."""
    named = {d["cluster"]: d["name"] for d in getattr(clusters, "names_", None) or []}
    out = {c: (f"c{c} {named[c]}" if c in named else f"cluster {c}") for c in range(clusters.n_clusters_)}
    if (np.asarray(clusters.labels_) < 0).any():
        out[-1] = "noise"
    return out


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


def heat_overlay(pixels: np.ndarray, heat: Optional[np.ndarray], opacity: float = 0.7,
                 colorscale: str = HEAT) -> np.ndarray:
    """RGB uint8: `heat` (H, W) in [0, 1] coloured and blended over `pixels` with an opacity that grows with the
    heat (0.15 + opacity * heat), so the image stays visible where the map is cold."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    if heat is None:
        return pixels
    h = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0, 1)
    colour = heat_lut(colorscale)[(h * 255).round().astype(np.uint8)].astype(np.float32)
    a = (0.15 + opacity * h)[..., None]
    return (pixels.astype(np.float32) * (1 - a) + colour * a).round().clip(0, 255).astype(np.uint8)


def _esc(text: str) -> str:
    return html.escape(str(text), quote=False)


# ---------------------------------------------------------------------------------------------- images
class BankImages:
    """The images behind a bank's rows, at the crop the model explained (`bank.protocol["image_size"]`).

    PartsWorld banks are re-rendered from `bank.manifest["dataset"]` (scenes are deterministic); folder and CSV
    banks read `root / image_id`. `root` overrides where images are looked for (e.g. a bank moved to another
    machine). `parts(i)` gives the ground-truth part masks of PartsWorld images ("class/part" -> bool mask).
    """

    def __init__(self, bank, root=None, cache: int = 64):
        self.bank = bank
        self.dataset = dict(bank.manifest.get("dataset") or {})
        self.kind = self.dataset.get("kind")
        size = (bank.protocol or {}).get("image_size")
        self.size: Optional[Tuple[int, int]] = tuple(int(s) for s in size) if size else None
        self.resample = (bank.protocol or {}).get("upsample", "bilinear")
        if root is not None:
            self.root = Path(root)
        elif self.kind == "folder":
            self.root = Path(self.dataset["root"])
        elif self.kind == "csv":
            self.root = Path(self.dataset["path"]).parent
        else:
            self.root = None
        self._world = None
        self._cache: "OrderedDict[int, Any]" = OrderedDict()
        self._cache_size = cache
        df = bank.to_pandas()
        first = df.drop_duplicates("image_index")
        self.ids: Dict[int, str] = dict(zip(first["image_index"].astype(int), first["image_id"]))
        self.labels: Dict[int, str] = dict(zip(first["image_index"].astype(int), first["labels"]))

    @property
    def has_parts(self) -> bool:
        return self.kind == "partsworld" and bool(self.bank.part_vocabulary)

    @property
    def world(self):
        if self._world is None:
            if self.kind != "partsworld":
                raise ValueError("Only PartsWorld banks can re-render their scenes.")
            from ..data import PartsWorld
            d = self.dataset
            # banks made before every argument was recorded fall back to PartsWorld's defaults
            extra = {k: d[k] for k in ("distractors", "classes", "rotation", "flip") if k in d}
            for k in ("scale", "caption_parts"):
                if d.get(k) is not None:
                    extra[k] = tuple(d[k])
            self._world = PartsWorld(int(d["n"]), seed=int(d["seed"]), size=int(d["size"]),
                                     n_objects=tuple(d["n_objects"]), **extra)
        return self._world

    def _load(self, i: int):
        i = int(i)
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        if self.kind == "partsworld":
            scene = self.world[i]
            labels = "|".join(o.label for o in scene.objects)
            if i in self.labels and self.labels[i] != labels:
                raise ValueError(f"Scene {i} re-rendered from the bank's manifest ({self.dataset}) shows "
                                 f"{labels.replace('|', ', ')}, but the bank has {self.labels[i].replace('|', ', ')}:"
                                 " the bank was made with PartsWorld options its manifest does not record.")
            image, parts, caption = scene.image, OrderedDict(), scene.caption
            for p in scene.parts:
                key = f"{scene.objects[p.object].label}/{p.name}"
                parts[key] = parts[key] | p.mask if key in parts else p.mask
        else:
            from ..images import to_rgb
            if i not in self.ids:
                raise KeyError(f"Image {i} is not in this bank.")
            path = Path(self.ids[i])
            path = path if path.is_absolute() or self.root is None else self.root / path
            image, parts, caption = to_rgb(path), None, self.ids[i]
        out = (self._crop(image), None if parts is None else
               OrderedDict((k, self._crop_mask(m)) for k, m in parts.items()), caption)
        self._cache[i] = out
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return out

    def _crop(self, image) -> np.ndarray:
        from PIL import Image
        from ..images import resize_center_crop
        im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
        if self.size is None:
            return np.asarray(im.convert("RGB"), np.uint8)
        return resize_center_crop(im.convert("RGB"), self.size, Image.BICUBIC)

    def _crop_mask(self, mask: np.ndarray) -> np.ndarray:
        from PIL import Image
        from ..images import resize_center_crop
        if self.size is None or mask.shape == tuple(self.size):
            return mask
        return resize_center_crop(Image.fromarray(mask.astype(np.uint8) * 255), self.size, Image.NEAREST) > 127

    def pixels(self, i: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) of image `i` as the model saw it."""
        return self._load(i)[0]

    def parts(self, i: int) -> Optional["OrderedDict[str, np.ndarray]"]:
        """Ground-truth part masks of image `i` ("class/part" -> bool (H, W)), or None without ground truth."""
        return self._load(i)[1]

    def caption(self, i: int) -> str:
        """The scene's caption (PartsWorld) or the image's id (its path in the folder)."""
        return self._load(i)[2]

    def overlay(self, row: int, image_index: int, ossm: np.ndarray) -> np.ndarray:
        """The OSSM of a bank row (h, w), upsampled to the image and min-max normalised, (H, W) in [0, 1]."""
        H, W = self.pixels(image_index).shape[:2]
        return upsample_map(ossm, (H, W), self.resample)


def upsample_map(m: np.ndarray, size, mode: str = "bilinear") -> np.ndarray:
    """A low-resolution map upsampled to `size` (bilinear; bicubic clamped at 0), then min-max normalised."""
    import torch
    import torch.nn.functional as F
    t = torch.tensor(np.array(m, dtype=np.float32))[None, None]
    mode = mode if mode in ("bilinear", "bicubic") else "bilinear"
    up = F.interpolate(t, size=tuple(size), mode=mode, align_corners=False)[0, 0].clamp_min(0).numpy()
    return minmax_np(up)


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
            marker=dict(color=cluster_color(c, n_colors), size=6 if c < 0 else 8,
                        opacity=0.15 if dim else 0.85, line=dict(width=0.5, color="white"))))
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
    `meta`. `color` frames every filled panel (e.g. the cluster's colour).
    """
    n = len(images)
    n_slots = max(n, n_slots or n, 1)
    cols = max(1, min(cols, n_slots))
    rows = -(-n_slots // cols)
    padded = list(titles) + [""] * (n_slots - n)
    lines = max([t.count("<br>") + 1 for t in titles] + [1])
    geo = _grid(rows, cols, panel, lines, top=30 + 18 * (title.count("<br>") + 1) if title else 10)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=padded, horizontal_spacing=geo["hs"],
                        vertical_spacing=geo["vs"])
    for j in range(n_slots):
        r, c = 1 + j // cols, 1 + j % cols
        if j < n:
            px = np.asarray(images[j], np.uint8)
            rgb = heat_overlay(px, heats[j], opacity)
            H, W = px.shape[:2]
            scale = max(H, W) / thumb if max(H, W) > thumb else 1.0
            tr = go.Image(source=image_uri(rgb, thumb), dx=scale, dy=scale, name=f"exemplar {j}", hoverinfo="skip",
                          meta=(metas[j] if metas is not None else None))
        else:
            tr = go.Image(source=image_uri(np.full((2, 2, 3), 255, np.uint8)), name="empty", hoverinfo="skip")
        fig.add_trace(tr, r, c)
        if j < n and color:
            fig.add_shape(type="rect", xref=f"x{'' if j == 0 else j + 1} domain",
                          yref=f"y{'' if j == 0 else j + 1} domain", x0=0, y0=0, x1=1, y1=1,
                          line=dict(color=color, width=3))
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=dict(text=title, font_size=14, y=1, yanchor="top", pad=dict(t=12)),
                      width=geo["width"], height=geo["height"], margin=dict(l=10, r=10, t=geo["top"], b=10),
                      showlegend=False,
                      plot_bgcolor="white")
    return fig


def exemplar_titles(df, rows: Sequence[int], name: str, overlap=None, vocabulary=()) -> List[str]:
    """Panel titles for bank rows: "<name> · w=0.93" then "img 12 · “prompt” #k" (and the dominant part)."""
    out = []
    for r in rows:
        rec = df.iloc[int(r)]
        line2 = f"img {int(rec['image_index'])} #{int(rec['component']) + 1} · {short_prompt(rec['prompt'], 14)}"
        out.append(f"{_esc(_short(name, 16))} · w={float(rec['weight']):.2f}<br>{_esc(line2)}")
    return out


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
def part_map(pixels: np.ndarray, parts: "OrderedDict[str, np.ndarray]", opacity: float = 0.65) -> np.ndarray:
    """All ground-truth parts of an image coloured (PART_COLORS, in order) over a dimmed copy of it."""
    out = np.asarray(pixels, np.float32) * 0.45 + 255 * 0.55 * 0.3
    for j, mask in enumerate(parts.values()):
        col = np.array(_hex(PART_COLORS[j % len(PART_COLORS)]), np.float32)
        out[mask] = out[mask] * (1 - opacity) + col * opacity
    return out.round().clip(0, 255).astype(np.uint8)


def _hex(color: str) -> Tuple[int, int, int]:
    color = color.lstrip("#")
    return tuple(int(color[i:i + 2], 16) for i in (0, 2, 4))


def image_components_figure(pixels: np.ndarray, prompts: Sequence[str], heats: Sequence[Sequence[np.ndarray]],
                            titles: Sequence[Sequence[str]], colors: Sequence[Sequence[Optional[str]]],
                            parts: Optional["OrderedDict[str, np.ndarray]"] = None, title: str = "",
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
            col = _hex(PART_COLORS[j % len(PART_COLORS)])
            rgb = pixels.astype(np.float32) * 0.35 + 255 * 0.65 * 0.25
            rgb[mask] = pixels[mask] * 0.35 + np.array(col, np.float32) * 0.65
            add(rgb.round().clip(0, 255).astype(np.uint8), r0 + n // cols, 1 + n % cols, f"part {name}")
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=dict(text=title, font_size=14, y=1, yanchor="top", pad=dict(t=12)),
                      width=geo["width"], height=geo["height"], margin=dict(l=10, r=10, t=geo["top"], b=10),
                      showlegend=False,
                      plot_bgcolor="white")
    return fig


# ---------------------------------------------------------------------------------------------- shared logic
def cluster_exemplars(bank, clusters, c: int, n: int = 8, by: str = "weight", unique_images: bool = True,
                      weights: Optional[np.ndarray] = None, image_index: Optional[np.ndarray] = None
                      ) -> np.ndarray:
    """Bank rows of the top `n` exemplars of cluster `c`, best first.

    by="weight": highest integration weight first (ties: bank order); by="centre": closest (Euclidean, in the
    clustering feature space) to the cluster's centre first. `unique_images` keeps only the best component of
    each image, so a gallery does not show one image n times. Noise (c=-1) has no centre: it sorts by weight.
    """
    if by not in ("weight", "centre", "center"):
        raise ValueError(f"by must be 'weight' or 'centre'; got {by!r}.")
    labels = np.asarray(clusters.labels_)
    if c not in set(labels.tolist()) and not (0 <= c < clusters.n_clusters_):
        raise ValueError(f"There is no cluster {c}; clusters are 0..{clusters.n_clusters_ - 1}"
                         f"{' and -1 (noise)' if (labels < 0).any() else ''}.")
    pos = np.flatnonzero(labels == c)
    rows = np.asarray(clusters.rows_)[pos]
    if weights is None:
        weights = bank.to_pandas()["weight"].to_numpy()
    if by == "weight" or c < 0:
        key = -np.asarray(weights)[rows]
    else:
        key = np.linalg.norm(clusters.features_[pos] - clusters.cluster_centers_[c], axis=1)
    order = np.argsort(key, kind="stable")
    rows = rows[order]
    if unique_images:
        if image_index is None:
            image_index = bank.to_pandas()["image_index"].to_numpy()
        img = np.asarray(image_index)[rows]
        _, first = np.unique(img, return_index=True)
        rows = rows[np.sort(first)]
    return rows[:n]


def cluster_report_figures(bank, clusters, n_exemplars: int = 6, layout: str = "pca", by: str = "weight",
                           root=None) -> List[go.Figure]:
    """The figures of a clustering report: the 2-D scatter, the cluster-by-part heat map (banks with ground-truth
    parts), and one exemplar grid per cluster (its top `n_exemplars` by weight, or by="centre")."""
    if not hasattr(clusters, "labels_"):
        raise RuntimeError("Fit the clusters first: clusters.fit(bank).")
    df = bank.to_pandas()
    names = cluster_names(clusters)
    K = clusters.n_clusters_
    xy = clusters.transform(method=layout)
    hover = component_hover(df, clusters.rows_)
    figs = [cluster_scatter_figure(xy, clusters.labels_, names, hover, n_colors=K,
                                   title=f"{len(xy)} components · {clusters.method} on {clusters.feature} "
                                         f"features · {layout.upper()} layout", width=720)]
    if bank.part_overlap.shape[1]:
        table, parts = clusters.cluster_part_table()
        figs.append(cluster_part_figure(table, parts, names))
    images = BankImages(bank, root=root)
    weights, image_index = df["weight"].to_numpy(), df["image_index"].to_numpy()
    for c in sorted(names, key=lambda c: (c < 0, c)):
        rows = cluster_exemplars(bank, clusters, c, n_exemplars, by=by, weights=weights,
                                  image_index=image_index)
        figs.append(exemplar_figure_for(bank, df, images, rows, c, names, K, n_slots=n_exemplars,
                                        size=int((clusters.labels_ == c).sum()), by=by,
                                        confidence=_confidence(clusters, c)))
    return figs


def _confidence(clusters, c: int) -> Optional[float]:
    for d in getattr(clusters, "names_", None) or []:
        if d["cluster"] == c:
            return d["confidence"]
    return None


def component_hover(df, rows: Sequence[int]) -> List[str]:
    """Hover text of clustered components: image, labels, prompt, component, weight."""
    sub = df.iloc[np.asarray(rows, int)]
    return [f"img {int(i)} ({_esc(lb.replace('|', ', '))})<br>“{_esc(p)}” · component {int(k) + 1}<br>w={w:.2f}"
            for i, lb, p, k, w in zip(sub["image_index"], sub["labels"], sub["prompt"], sub["component"],
                                      sub["weight"])]


def exemplar_figure_for(bank, df, images: BankImages, rows: Sequence[int], c: int, names: Dict[int, str],
                        n_colors: int, n_slots: int, size: int, by: str = "weight",
                        confidence: Optional[float] = None, cols: int = 8) -> go.Figure:
    """The exemplar grid of one cluster from bank rows (loads the images, upsamples the OSSMs)."""
    name = names.get(c, f"cluster {c}")
    pix, heats, metas = [], [], []
    ossms = bank.ossms
    for r in rows:
        i = int(df["image_index"].iat[int(r)])
        px = images.pixels(i)
        pix.append(px)
        heats.append(upsample_map(ossms[int(r)], px.shape[:2], images.resample))
        metas.append({"row": int(r), "cluster": int(c), "image_index": i})
    conf = f" (text match {confidence:.0%})" if confidence is not None else ""
    order = "by weight" if by == "weight" else "closest to the cluster centre"
    title = f"<b>{_esc(name)}</b>{_esc(conf)} · {size} components · top {len(rows)} {order} (one per image)"
    return exemplar_grid_figure(pix, heats, exemplar_titles(df, rows, name), n_slots=n_slots, cols=cols,
                                title=title, color=cluster_color(c, n_colors), metas=metas)
