"""Cluster views open where it matters and read for everyone: the largest non-background cluster first, colour-blind-
safe colours with a shape per cluster, and a CLI report that names its clusters and what made the bank."""
import types

import numpy as np
import pytest

from decomviz.analysis.cluster_views import opening_cluster
from decomviz.viz.clusters import OKABE_ITO, cluster_colors, cluster_scatter_figure, cluster_symbol


def _clusters(labels, names=None):
    c = types.SimpleNamespace(labels_=np.asarray(labels), n_clusters_=int(max(labels)) + 1)
    if names is not None:
        c.truth_names_ = [{"cluster": i, "name": n} for i, n in enumerate(names)]
        c.names_ = c.truth_names_
    return c


def test_views_open_on_the_largest_cluster_that_is_not_background():
    labels = [0] * 9 + [1] * 5 + [2] * 7 + [-1] * 20
    assert opening_cluster(_clusters(labels)) == 0                                   # unnamed: the largest
    assert opening_cluster(_clusters(labels, ["background", "car/wheel", "house/roof"])) == 2
    assert opening_cluster(_clusters([0, 0, 1], ["background", "background"])) == 0  # all background: largest


def test_cluster_colours_are_colour_blind_safe_and_shapes_tell_clusters_apart():
    assert cluster_colors(6) == OKABE_ITO[:6]
    twelve = cluster_colors(12)
    assert len(set(twelve)) == 12
    assert len({cluster_symbol(c) for c in range(12)}) == 12 and cluster_symbol(-1) == "circle-open"
    fig = cluster_scatter_figure(np.random.default_rng(0).random((6, 2)), np.array([0, 0, 1, 1, 2, -1]),
                                 {0: "a", 1: "b", 2: "c", -1: "noise"})
    assert [tr.marker.symbol for tr in fig.data[:4]] == ["circle", "square", "diamond", "circle-open"]


@pytest.mark.slow
def test_cli_cluster_report_names_clusters_and_what_made_the_bank(tmp_path, capsys):
    from decomviz.apps.cli import main
    bank = tmp_path / "bank"
    assert main(["extract", "partsworld:6:0", "--prompt", "a photo of a {}", "--device", "cpu",
                 "--out", str(bank)]) == 0
    out = tmp_path / "clusters.html"
    assert main(["cluster", str(bank), "--n-clusters", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "on model parts-rn" in text and "layer visual.layer4" in text and "a photo of a {}" in text
    assert "Clusters, largest first:" in text and "components" in text
    assert "on model parts-rn" in out.read_text(encoding="utf-8")


def test_cluster_and_point_picks_redraw_the_same_figure_widgets(tiny_rn, tmp_path):
    import time
    import warnings

    import decomviz as dv
    from decomviz.widgets import ClusterGallery
    world = dv.PartsWorld(8, seed=5, size=128, n_objects=(1, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bank = dv.extract(dv.DecomCAM(tiny_rn, n_components=3), world, "a photo of a {}", out=tmp_path / "b",
                          progress=False)
    clusters = dv.ComponentClusters(3, random_state=0, min_weight=None).fit(bank)
    gallery = ClusterGallery(bank, clusters, n_exemplars=4)
    widgets_before = (gallery.gallery, gallery.detail)
    t0 = time.perf_counter()
    for c in range(3):
        gallery.select_cluster(c)
    gallery.select_point(0)
    per_pick = (time.perf_counter() - t0) / 4
    assert (gallery.gallery, gallery.detail) == widgets_before        # no new FigureWidget (plotly.js again)
    assert [d.get("name") for d in gallery.gallery._widget_data] == [tr.name for tr in gallery.gallery.data]
    assert per_pick < 2.0, per_pick                                   # kernel side; the page redraw comes on top
