"""What the views of a clustered bank show, read from the bank and its fitted clusters: display names, the top
exemplars of a cluster, their images and upsampled OSSMs; and the figures of the `decomviz cluster` report.

The figures themselves are drawn by `decomviz.viz.clusters` from the arrays fetched here.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import plotly.graph_objects as go

from ..viz.clusters import (cluster_exemplar_figure, cluster_part_figure, cluster_scatter_figure,
                            component_hover)
from .bank_images import BankImages, upsample_ossm


def cluster_names(clusters) -> Dict[int, str]:
    """Display names by cluster id: "c3 wheel" after `clusters.name_parts(...)`, else "cluster 3"; -1 is noise."""
    named = {d["cluster"]: d["name"] for d in getattr(clusters, "names_", None) or []}
    out = {c: (f"c{c} {named[c]}" if c in named else f"cluster {c}") for c in range(clusters.n_clusters_)}
    if (np.asarray(clusters.labels_) < 0).any():
        out[-1] = "noise"
    return out


def opening_cluster(clusters) -> int:
    """The cluster a view opens on: the largest one that is not named "background" (by the ground truth or the
    model's reading), never the noise (-1); the largest of all when every cluster is background."""
    labels = np.asarray(clusters.labels_)
    named = {d["cluster"]: str(d["name"]) for d in getattr(clusters, "names_", None) or []} \
        if getattr(clusters, "truth_names_", None) or getattr(clusters, "model_names_", None) else {}
    sizes = {c: int((labels == c).sum()) for c in range(clusters.n_clusters_)}
    if not sizes:
        return -1
    background = {c for c, n in named.items() if n == "background" or n.endswith("/background")}
    pool = [c for c in sizes if c not in background] or list(sizes)
    return max(pool, key=lambda c: (sizes[c], -c))


def cluster_confidence(clusters, c: int) -> Optional[float]:
    """How well the name of cluster `c` matches its text (from `clusters.name_parts`), or None when unnamed."""
    for d in getattr(clusters, "names_", None) or []:
        if d["cluster"] == c:
            return d["confidence"]
    return None


def cluster_exemplars(bank, clusters, c: int, n: int = 8, by: str = "weight", unique_images: bool = True,
                      weights: Optional[np.ndarray] = None, image_index: Optional[np.ndarray] = None
                      ) -> np.ndarray:
    """Bank rows of the top `n` exemplars of cluster `c`, best first.

    by="weight": highest integration weight first (ties: bank order); by="centre": closest (Euclidean, in the
    clustering feature space: `clusters.distance_`) to the cluster's centre first. `unique_images` keeps only the
    best component of each image, so a gallery does not show one image n times. Noise (c=-1) has no centre: it
    sorts by weight. `weights` and `image_index` (one per bank row) are read from the bank when not given.
    """
    if by not in ("weight", "centre", "center"):
        raise ValueError(f"by must be 'weight' or 'centre'; got {by!r}.")
    labels = np.asarray(clusters.labels_)
    if c not in set(labels.tolist()) and not (0 <= c < clusters.n_clusters_):
        raise ValueError(f"There is no cluster {c}; clusters are 0..{clusters.n_clusters_ - 1}"
                         f"{' and -1 (noise)' if (labels < 0).any() else ''}.")
    pos = np.flatnonzero(labels == c)
    rows = np.asarray(clusters.rows_)[pos]
    if by == "weight" or c < 0:
        if weights is None:
            weights = bank.take(rows, ["weight"]).column(0).to_numpy()
            key = -np.asarray(weights)
        else:
            key = -np.asarray(weights)[rows]
    else:
        key = np.asarray(clusters.distance_)[pos]
    order = np.argsort(key, kind="stable")
    rows = rows[order]
    if unique_images:
        img = (bank.take(rows, ["image_index"]).column(0).to_numpy() if image_index is None
               else np.asarray(image_index)[rows])
        _, first = np.unique(img, return_index=True)
        rows = rows[np.sort(first)]
    return rows[:n]


def exemplar_images(bank, df, images: BankImages, rows: Sequence[int]
                    ) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """The image (H, W, 3) uint8 and the upsampled, min-max normalised OSSM (H, W) of each bank row."""
    pix, heats = [], []
    ossms = bank.ossms_of(rows)  # only the rows shown
    for r, ossm in zip(rows, ossms):
        px = images.pixels(int(df["image_index"].iat[int(r)]))
        pix.append(px)
        heats.append(upsample_ossm(ossm, px.shape[:2], images.resample))
    return pix, heats


def exemplar_figure_for(bank, df, images: BankImages, rows: Sequence[int], c: int, names: Dict[int, str],
                        n_colors: int, n_slots: int, size: int, by: str = "weight",
                        confidence: Optional[float] = None, cols: int = 8, as_json: bool = False):
    """The exemplar grid of one cluster from bank rows (loads the images, upsamples the OSSMs); in a bank with
    ground-truth parts each panel also names the part holding most of that component's energy. A go.Figure, or
    plotly's JSON with ``as_json`` (for a view that redraws its grid in place)."""
    pix, heats = exemplar_images(bank, df, images, rows)
    vocabulary = bank.part_vocabulary
    overlap = bank.vectors("part_overlap", rows) if vocabulary and len(rows) else None
    return cluster_exemplar_figure(df, rows, pix, heats, c, names, n_colors, n_slots=n_slots, size=size, by=by,
                                   confidence=confidence, cols=cols, overlap=overlap, vocabulary=vocabulary,
                                   as_json=as_json)


#: Bank columns the views show (the rest of a row is read only for the rows on screen).
VIEW_COLUMNS = ["image_index", "labels", "prompt", "prompt_index", "component", "weight"]


def cluster_report_figures(bank, clusters, n_exemplars: int = 6, layout: str = "pca", by: str = "weight",
                           root=None, max_points: int = 20_000, seed: int = 0, dataset=None) -> List[go.Figure]:
    """The figures of a clustering report: the 2-D scatter (a random `max_points` of the components, when there
    are more), the cluster-by-part heat map (banks with ground-truth parts), and one exemplar grid per cluster
    (its top `n_exemplars` by weight, or by="centre"). Reads the bank's scalar columns, and vectors only for the
    exemplars shown. ``root`` / ``dataset``: where the images are, when the bank's record cannot say (see
    `BankImages`)."""
    if not hasattr(clusters, "labels_"):
        raise RuntimeError("Fit the clusters first: clusters.fit(bank).")
    df = bank.to_pandas(VIEW_COLUMNS)
    names = cluster_names(clusters)
    K = clusters.n_clusters_
    xy = clusters.transform(method=layout)
    shown = np.arange(len(xy))
    if len(xy) > max_points:
        shown = np.sort(np.random.default_rng(seed).choice(len(xy), max_points, replace=False))
    hover = component_hover(df, np.asarray(clusters.rows_)[shown])
    sample = f" (a random {len(shown)} shown)" if len(shown) < len(xy) else ""
    figs = [cluster_scatter_figure(xy[shown], np.asarray(clusters.labels_)[shown], names, hover, n_colors=K,
                                   title=f"{len(xy)} components{sample} · {clusters.method} on {clusters.feature} "
                                         f"features · {layout.upper()} layout", width=720)]
    if bank.part_vocabulary:
        table, parts = clusters.cluster_part_table()
        figs.append(cluster_part_figure(table, parts, names))
    images = BankImages(bank, root=root, dataset=dataset)
    weights, image_index = df["weight"].to_numpy(), df["image_index"].to_numpy()
    for c in sorted(names, key=lambda c: (c < 0, c)):
        rows = cluster_exemplars(bank, clusters, c, n_exemplars, by=by, weights=weights,
                                 image_index=image_index)
        figs.append(exemplar_figure_for(bank, df, images, rows, c, names, K, n_slots=n_exemplars,
                                        size=int((clusters.labels_ == c).sum()), by=by,
                                        confidence=cluster_confidence(clusters, c)))
    return figs
