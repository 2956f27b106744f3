"""Views over a clustered OSSM bank: ClusterGallery (scatter linked to exemplars) and PartInspector (clusters
against ground-truth parts, one image at a time). Logic lives in plain methods; callbacks only call them."""
from __future__ import annotations

import html
from collections import Counter
from typing import Optional, Union

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from ..analysis.bank_images import BankImages, upsample_ossm
from ..analysis.cluster_views import (VIEW_COLUMNS, cluster_confidence, cluster_exemplars, cluster_names,
                                      exemplar_figure_for, opening_cluster)
from ..analysis.streaming import dominant_parts, row_parts
from ..viz.clusters import (cluster_color, cluster_part_figure, cluster_scatter_figure, component_hover,
                            exemplar_grid_figure, image_components_figure, short_prompt)
from ..viz.images import part_map
from ._common import message_html, replace_figure
from .figure_widget import FigureWidget

ORDERS = {"highest weight": "weight", "closest to centre": "centre"}


def _check(bank, clusters, who: str) -> None:
    if not hasattr(clusters, "labels_"):
        raise RuntimeError(f"{who} needs fitted clusters: call clusters.fit(bank) first.")
    if getattr(clusters, "bank_", bank) is not bank:
        raise ValueError(f"{who}: these clusters were fitted on another bank ({clusters.bank_!r}); pass that bank.")


def _swap(owner, attr: str, fig: go.Figure, container: widgets.Box) -> go.FigureWidget:
    """Show `fig` in `owner.<attr>`: the same FigureWidget, redrawn in place (`replace_figure`: its synced state is
    set too, so a view made later starts from the new figure, and a pick sends only what differs)."""
    old = getattr(owner, attr, None)
    if old is None:
        new = FigureWidget(fig)
        setattr(owner, attr, new)
        return new
    replace_figure(old, fig)
    return old


class ClusterGallery(widgets.VBox):
    """The clustered components in 2-D, linked to a gallery of each cluster's top exemplars.

    Click a point (or pick a cluster in the dropdown): the gallery shows the cluster's top `n_exemplars`
    components, each its OSSM over its image, best first: highest integration weight, or closest to the cluster
    centre (one component per image). The clicked component is shown larger beside the scatter.

    Parameters
    ----------
    bank : the `OSSMBank` the clusters were fitted on.
    clusters : a fitted `ComponentClusters`; names from `clusters.name_parts(...)` are used when present.
    layout : "pca", "tsne" or a precomputed (n, 2) array (one row per clustered component).
    n_exemplars : gallery size. by : "weight" or "centre". root : where the bank's images are now, when they
        moved (banks record their dataset: PartsWorld, folders, CSVs, COCO and mask folders open without it).
        In a bank with ground-truth parts, the clicked component is shown beside its image's parts.
    dataset : the dataset itself, for a bank of a user's own dataset class (which its record cannot open again).

    Plain methods: `select_cluster(c)`, `select_point(i)` (i: position in `clusters.rows_`), `set_order(by)`,
    `exemplars(c, n)`. State: `cluster`, `point`, `shown_rows` (bank rows in the gallery, in order).
    Figures: `scatter`, `gallery`, `detail` (plotly FigureWidgets).
    """

    def __init__(self, bank, clusters, layout: Union[str, np.ndarray] = "pca", n_exemplars: int = 8,
                 by: str = "weight", root=None, cluster: Optional[int] = None, dataset=None):
        _check(bank, clusters, "ClusterGallery")
        if by not in ORDERS.values():
            raise ValueError(f"by must be 'weight' or 'centre'; got {by!r}.")
        if int(n_exemplars) < 1:
            raise ValueError(f"n_exemplars must be >= 1, got {n_exemplars!r}.")
        self.bank, self.clusters = bank, clusters
        self.n_exemplars, self.by = int(n_exemplars), by
        self.df = bank.to_pandas(VIEW_COLUMNS)  # scalars for the hover texts; vectors only for rows shown
        self._weights = self.df["weight"].to_numpy()
        self._image_index = self.df["image_index"].to_numpy()
        self.images = BankImages(bank, root=root, dataset=dataset)
        self.names = cluster_names(clusters)
        self.labels = np.asarray(clusters.labels_, int)
        self.rows = np.asarray(clusters.rows_, int)
        if isinstance(layout, str):
            self.xy = clusters.transform(method=layout)
            self.layout_name = layout
        else:
            self.xy = np.asarray(layout, float)
            self.layout_name = "given"
            if self.xy.shape != (len(self.rows), 2):
                raise ValueError(f"layout must have shape ({len(self.rows)}, 2), one row per clustered component; "
                                 f"got {self.xy.shape}.")
        self.hover = component_hover(self.df, self.rows)
        self.cluster: Optional[int] = None
        self.point: Optional[int] = None
        self.shown_rows = np.zeros(0, int)
        self._syncing = False

        real = [c for c in self.names if c >= 0]
        first = int(cluster) if cluster is not None else (opening_cluster(clusters) if real else -1)
        # drawn with the first cluster highlighted: edits made before the widget is on a page do not reach it
        self.scatter = FigureWidget(cluster_scatter_figure(
            self.xy, self.labels, self.names, self.hover, n_colors=clusters.n_clusters_, selected_cluster=first,
            title=f"{len(self.xy)} components · click one to see its cluster"))
        for tr in self.scatter.data[:-1]:
            tr.on_click(self._on_click)
        self.gallery = FigureWidget(exemplar_grid_figure([], [], [], n_slots=self.n_exemplars,
                                                         cols=min(self.n_exemplars, 8)))
        self.detail = FigureWidget(self._empty_detail())
        sizes = Counter(self.labels.tolist())
        options = [(f"{self.names[c]} · {sizes.get(c, 0)} components", c)
                   for c in sorted(self.names, key=lambda c: (c < 0, c))]
        self.cluster_dropdown = widgets.Dropdown(options=options, description="cluster",
                                                 layout=widgets.Layout(width="340px"))
        self.order_buttons = widgets.ToggleButtons(options=list(ORDERS.items()), value=by,
                                                   description="exemplars by", style={"description_width": "initial"})
        self.info = widgets.HTML()
        self.cluster_dropdown.observe(self._on_dropdown, names="value")
        self.order_buttons.observe(self._on_order, names="value")
        self._top = widgets.HBox([self.scatter, self.detail])
        super().__init__([widgets.HBox([self.cluster_dropdown, self.order_buttons]), self.info, self._top,
                          self.gallery])
        self.add_class("decomviz-cluster-gallery")
        self.select_cluster(first)

    # ------------------------------------------------------------------ logic
    def exemplars(self, c: int, n: Optional[int] = None, by: Optional[str] = None) -> np.ndarray:
        """Bank rows of the top `n` exemplars of cluster `c` (best first, one per image); see `cluster_exemplars`."""
        return cluster_exemplars(self.bank, self.clusters, int(c), self.n_exemplars if n is None else int(n),
                                 by=by or self.by, weights=self._weights, image_index=self._image_index)

    def select_cluster(self, c: int) -> None:
        """Show cluster `c`: highlight it in the scatter and fill the gallery with its exemplars."""
        c = int(c)
        if c not in self.names:
            raise ValueError(f"There is no cluster {c}; choose one of {sorted(self.names)}.")
        self.cluster = c
        rows = self.exemplars(c)  # the new exemplars first: then the page gets every edit of the pick together
        fig = exemplar_figure_for(self.bank, self.df, self.images, rows, c, self.names,
                                  self.clusters.n_clusters_, n_slots=self.n_exemplars,
                                  size=int((self.labels == c).sum()), by=self.by,
                                  confidence=self._confidence(c), cols=min(self.n_exemplars, 8), as_json=True)
        if self.point is not None and self.labels[self.point] != c:
            self.point = None
            self._draw_point()
        self._sync_dropdown(c)
        with self.scatter.batch_update():
            for tr in self.scatter.data[:-1]:
                on = tr.meta["cluster"] == c
                tr.opacity = 0.9 if on else 0.15  # the trace's, one style per trace: not one per point
        self.shown_rows = rows
        _swap(self, "gallery", fig, self)
        self.info.value = self._info_html(c)

    def select_point(self, i: int) -> None:
        """Select the clustered component at position `i` of `clusters.rows_`: star it, show it, show its cluster."""
        i = int(i)
        if not 0 <= i < len(self.rows):
            raise IndexError(f"point {i} out of range: there are {len(self.rows)} clustered components.")
        self.point = i
        self._draw_point()
        self.select_cluster(int(self.labels[i]))

    def set_order(self, by: str) -> None:
        """Sort exemplars by "weight" (highest first) or "centre" (closest to the cluster centre first)."""
        if by not in ORDERS.values():
            raise ValueError(f"by must be 'weight' or 'centre'; got {by!r}.")
        self.by = by
        if self.order_buttons.value != by:
            self._syncing = True
            try:
                self.order_buttons.value = by
            finally:
                self._syncing = False
        if self.cluster is not None:
            self.select_cluster(self.cluster)

    @property
    def point_row(self) -> Optional[int]:
        """The bank row of the selected point (None when no point is selected)."""
        return None if self.point is None else int(self.rows[self.point])

    # ------------------------------------------------------------------ drawing
    def _confidence(self, c: int) -> Optional[float]:
        return cluster_confidence(self.clusters, c)

    @staticmethod
    def _empty_detail() -> go.Figure:
        return exemplar_grid_figure([], [], [], n_slots=2, cols=2, title="click a point to see it here")

    def _draw_point(self) -> None:
        star = self.scatter.data[-1]
        if self.point is None:
            star.x, star.y = [], []
            _swap(self, "detail", self._empty_detail(), self._top)
            return
        star.x, star.y = [self.xy[self.point, 0]], [self.xy[self.point, 1]]
        row = int(self.rows[self.point])
        rec = self.df.iloc[row]
        i = int(rec["image_index"])
        px = self.images.pixels(i)
        heat = upsample_ossm(self.bank.ossms_of([row])[0], px.shape[:2], self.images.resample)
        c = int(self.labels[self.point])
        title = (f"img {i} · “{html.escape(short_prompt(rec['prompt'], 28))}” · #{int(rec['component']) + 1}"
                 f"<br>w={float(rec['weight']):.2f} · {html.escape(self.names[c])}")
        pixels, heats, names = [px, px], [None, heat], ["image", "its OSSM"]
        parts = self.images.parts(i) if self.images.has_parts else None
        if parts:  # the image's ground-truth parts, in the geometry the model saw
            pixels.append(part_map(px, parts))
            heats.append(None)
            names.append("ground-truth parts")
        fig = exemplar_grid_figure(pixels, heats, names, cols=len(pixels), title=title,
                                   color=cluster_color(c, self.clusters.n_clusters_),
                                   metas=[{"row": row}] * len(pixels))
        fig.update_layout(title_font_size=12)
        _swap(self, "detail", fig, self._top)

    def _info_html(self, c: int) -> str:
        pos = np.flatnonzero(self.labels == c)
        sub = self.df.iloc[self.rows[pos]]
        n_img = sub["image_index"].nunique()
        prompts = sub["prompt"].value_counts(normalize=True).head(3)
        ptxt = ", ".join(f"“{html.escape(p)}” {s:.0%}" for p, s in prompts.items())
        parts = ""
        if self.bank.part_vocabulary:
            dom = dominant_parts(self.bank.vectors("part_overlap", self.rows[pos]), self.bank.part_vocabulary)
            top = Counter(dom.tolist()).most_common(3)
            parts = " · dominant parts: " + ", ".join(f"{html.escape(p)} {k / len(dom):.0%}" for p, k in top)
        conf = self._confidence(c)
        conf = f" (text match {conf:.0%})" if conf is not None else ""
        return (f"<b>{html.escape(self.names[c])}</b>{conf}: {len(pos)} components from {n_img} images, mean weight "
                f"{sub['weight'].mean():.2f} · prompts: {ptxt}{parts}")

    # ------------------------------------------------------------------ callbacks
    def _sync_dropdown(self, c: int) -> None:
        if self.cluster_dropdown.value != c:
            self._syncing = True
            try:
                self.cluster_dropdown.value = c
            finally:
                self._syncing = False

    def _on_click(self, trace, points, state) -> None:
        if points.point_inds:
            self.select_point(int(trace.customdata[points.point_inds[0]]))

    def _on_dropdown(self, change) -> None:
        if not self._syncing and change["new"] is not None:
            self.select_cluster(change["new"])

    def _on_order(self, change) -> None:
        if not self._syncing:
            self.set_order(change["new"])


class PartInspector(widgets.VBox):
    """Clusters against ground-truth parts: the cluster-by-part table as a heat map, and one image's OSSMs (a row
    per prompt, each framed in its cluster's colour and titled with its cluster and dominant part) beside the
    image's ground-truth part masks.

    Click a heat-map cell to jump to an image whose component falls in that cluster and part; or choose an image.
    Needs a bank with ground-truth parts (extracted from `dv.PartsWorld`, a `dv.datasets.COCOParts` or `MaskFolder`,
    or given them by `dv.attach_parts`) for the table and the part masks; other banks show the OSSMs only. The
    images and masks are shown as the model saw them (cropped or squashed). ``root``: where the images are now,
    when they moved; ``dataset``: the dataset itself, for a bank of a user's own dataset class.

    Plain methods: `select_image(i)` (a bank image index), `select_cell(c, part)`. State: `image`, `cell`.
    Figures: `table_figure`, `image_figure` (plotly FigureWidgets).
    """

    def __init__(self, bank, clusters, image: Optional[int] = None, root=None, min_share: float = 0.1,
                 dataset=None):
        _check(bank, clusters, "PartInspector")
        self.bank, self.clusters = bank, clusters
        self.min_share = min_share
        self.df = bank.to_pandas(VIEW_COLUMNS)  # scalars; OSSMs are read for the image shown only
        self.images = BankImages(bank, root=root, dataset=dataset)
        self.names = cluster_names(clusters)
        self.has_parts = bool(bank.part_vocabulary)
        # cluster of each bank row (None: filtered out before clustering)
        self.row_cluster = np.full(len(bank), -2, int)
        self.row_cluster[np.asarray(clusters.rows_)] = clusters.labels_
        # the dominant part of each row and its share, one pass over part_overlap a batch at a time
        self.row_part, self.row_share = row_parts(bank, None, min_share) if self.has_parts else (None, None)
        self.image_ids = sorted(self.df["image_index"].unique().tolist())
        self.image: Optional[int] = None
        self.cell = None
        self._syncing = False

        if self.has_parts:
            self.table, self.part_names = clusters.cluster_part_table(min_share)
            self.table_figure = FigureWidget(cluster_part_figure(self.table, self.part_names, self.names))
            self.table_figure.data[0].on_click(self._on_cell)
        else:
            self.table, self.part_names = None, []
            self.table_figure = FigureWidget(go.Figure().update_layout(
                title="no ground-truth parts in this bank (extract from a dataset with parts: dv.PartsWorld, "
                      "dv.datasets.COCOParts or MaskFolder, or add them with dv.attach_parts)", height=120))
        first = self.df.drop_duplicates("image_index")
        options = [(f"{int(i)}: {lb.replace('|', ', ')}", int(i)) for i, lb in zip(first["image_index"], first["labels"])]
        self.image_dropdown = widgets.Dropdown(options=sorted(options, key=lambda o: o[1]), description="image",
                                               layout=widgets.Layout(width="340px"))
        self.info = widgets.HTML()
        self.controls = widgets.HTML(self.controls_html() if self.has_parts else "")
        self.image_figure = FigureWidget(go.Figure())
        self.image_dropdown.observe(self._on_image, names="value")
        super().__init__([self.table_figure, self.controls, widgets.HBox([self.image_dropdown]), self.info,
                          self.image_figure])
        self.add_class("decomviz-part-inspector")
        self.select_image(self.image_ids[0] if image is None else image)

    # ------------------------------------------------------------------ logic
    def controls_html(self) -> str:
        """The clusters-against-parts NMI beside what keeps it honest: within each class, the class alone,
        shuffled clusters (`cluster_part_controls`)."""
        from sklearn.metrics import normalized_mutual_info_score
        from ..analysis.clusters import cluster_part_controls
        labels = np.asarray(self.clusters.labels_)
        parts = np.asarray(self.row_part)[np.asarray(self.clusters.rows_)].astype(str)
        keep = labels >= 0
        labels, parts = labels[keep], parts[keep]
        c = cluster_part_controls(labels, parts, self.clusters.random_state)
        nmi = normalized_mutual_info_score(parts, labels)
        text = (f"clusters against parts: NMI {nmi:.3f} (shuffled clusters {c['shuffled_nmi']:.3f}; the class alone "
                f"{c['class_only_nmi']:.3f}, so the pooled NMI rewards knowing the class); within each class "
                f"{c['within_class_nmi']:.3f} (shuffled {c['shuffled_within_class_nmi']:.3f})")
        return f'<span class="decomviz-part-controls">{html.escape(text)}</span>'

    def components(self, i: int):
        """The bank rows of image `i`, grouped by prompt: [(prompt, rows sorted by component)]."""
        sub = self.df[self.df["image_index"] == int(i)]
        out = []
        for p_idx, g in sub.groupby("prompt_index", sort=True):
            out.append((str(g["prompt"].iloc[0]), g.sort_values("component").index.to_numpy()))
        return out

    def select_image(self, i: int) -> None:
        """Show image `i` (a bank image index): its OSSMs for every prompt beside its ground-truth parts."""
        i = int(i)
        if i not in set(self.image_ids):
            raise ValueError(f"Image {i} is not in this bank; images are {self.image_ids[0]}..{self.image_ids[-1]}"
                             f" ({len(self.image_ids)} in all).")
        self.image = i
        if self.image_dropdown.value != i:
            self._syncing = True
            try:
                self.image_dropdown.value = i
            finally:
                self._syncing = False
        _swap(self, "image_figure", self.figure(i), self)
        groups = self.components(i)
        n_parts = len(self.images.parts(i) or {}) if self.has_parts else 0
        self.info.value = message_html(
            f"image {i}: {len(groups)} prompt{'s' if len(groups) != 1 else ''} × "
            f"{max((len(r) for _, r in groups), default=0)} components"
            + (f", {n_parts} ground-truth parts" if self.has_parts else "")
            + (" · click a cell of the table to find an image for it" if self.has_parts else ""))

    def select_cell(self, c: int, part: str) -> Optional[int]:
        """Pick the highest-weight component in cluster `c` whose dominant part is `part`, show its image, and
        return that image index (None, with a message, when the cell is empty)."""
        if not self.has_parts:
            raise ValueError("This bank has no ground-truth parts.")
        self.cell = (int(c), str(part))
        match = np.flatnonzero((self.row_cluster == int(c)) & (self.row_part == part))
        fig = cluster_part_figure(self.table, self.part_names, self.names, selected=self.cell)
        with self.table_figure.batch_update():
            self.table_figure.layout.shapes = fig.layout.shapes
        if not len(match):
            self.info.value = message_html(f"No component of {self.names.get(int(c), c)} has {part} as its "
                                           "dominant part.", "warn")
            return None
        best = match[np.argmax(self.df["weight"].to_numpy()[match])]
        i = int(self.df["image_index"].iat[best])
        self.select_image(i)
        self.info.value = message_html(f"image {i}: {self.images.caption(i)} · shown for {self.names[int(c)]} × "
                                       f"{part} (component #{int(self.df['component'].iat[best]) + 1} of "
                                       f"“{self.df['prompt'].iat[best]}”)")
        return i

    def figure(self, i: int) -> go.Figure:
        """The figure of image `i` (what `image_figure` shows after `select_image(i)`)."""
        px = self.images.pixels(i)
        prompts, heats, titles, colors = [], [], [], []
        n_colors = self.clusters.n_clusters_
        for prompt, rows in self.components(i):
            prompts.append(prompt)
            heats.append([upsample_ossm(m, px.shape[:2], self.images.resample) for m in self.bank.ossms_of(rows)])
            t_titles, t_colors = [], []
            for r in rows:
                c = int(self.row_cluster[r])
                head = f"#{int(self.df['component'].iat[r]) + 1} w={float(self.df['weight'].iat[r]):.2f}"
                cname = "not clustered" if c == -2 else self.names.get(c, f"cluster {c}")
                line2 = html.escape(cname if len(cname) <= 18 else cname[:17] + "…")
                if self.row_part is not None:
                    share = float(self.row_share[r])
                    part = self.row_part[r]
                    line3 = html.escape(part.split("/")[-1] if part != "background" else "background")
                    line2 = f"{line2}<br>{line3} {share:.0%}" if part != "background" else f"{line2}<br>{line3}"
                t_titles.append(f"{head}<br>{line2}")
                t_colors.append(None if c == -2 else cluster_color(c, n_colors))
            titles.append(t_titles)
            colors.append(t_colors)
        parts = self.images.parts(i) if self.has_parts else None
        cap = html.escape(self.images.caption(i))
        return image_components_figure(px, prompts, heats, titles, colors, parts=parts,
                                       title=f"image {i}: {cap}<br><sup>each OSSM is framed in its cluster's "
                                             "colour; below it, its dominant ground-truth part and that part's "
                                             "share of its energy</sup>")

    # ------------------------------------------------------------------ callbacks
    def _on_image(self, change) -> None:
        if not self._syncing and change["new"] is not None:
            self.select_image(change["new"])

    def _on_cell(self, trace, points, state) -> None:
        if points.point_inds:
            r, col = points.point_inds[0] if isinstance(points.point_inds[0], (list, tuple)) else \
                (points.ys[0], points.xs[0])
            c = int(r) if isinstance(r, (int, np.integer)) else list(trace.y).index(r)
            part = trace.x[int(col)] if isinstance(col, (int, np.integer)) else col
            self.select_cell(c, part)
