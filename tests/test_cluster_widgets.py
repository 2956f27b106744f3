"""ClusterGallery, PartInspector and the cluster report figures, without a browser, on a small real bank."""
import warnings

import numpy as np
import plotly.graph_objects as go
import pytest
from plotly.callbacks import Points

import decomviz as dv
from decomviz.analysis.bank_images import BankImages
from decomviz.analysis.cluster_views import cluster_exemplars, cluster_report_figures
from decomviz.widgets.clusters import ClusterGallery, PartInspector

from .conftest import make_image

N_CLUSTERS = 3


@pytest.fixture(scope="module")
def bank(tiny_rn, tmp_path_factory):
    world = dv.PartsWorld(10, seed=5, size=128, n_objects=(1, 2))
    cam = dv.DecomCAM(tiny_rn, n_components=3)
    with warnings.catch_warnings():  # random weights: some pairs have no positive contribution
        warnings.simplefilter("ignore")
        return dv.extract(cam, world, ["a photo of a {}", "the wheels of a car"],
                          out=tmp_path_factory.mktemp("cw") / "bank", progress=False)


@pytest.fixture(scope="module")
def clusters(bank):
    return dv.ComponentClusters(N_CLUSTERS, random_state=0, min_weight=None).fit(bank)


@pytest.fixture(scope="module")
def gallery(bank, clusters):
    return ClusterGallery(bank, clusters, n_exemplars=4)


def _cluster_of_rows(clusters, n):
    out = np.full(n, -2)
    out[clusters.rows_] = clusters.labels_
    return out


def _shown(fig: go.FigureWidget):
    return [tr.meta["row"] for tr in fig.data if tr.name.startswith("exemplar")]


def test_gallery_shows_members_of_the_selected_cluster_by_weight(bank, clusters, gallery):
    weights = bank.to_pandas()["weight"].to_numpy()
    images = bank.to_pandas()["image_index"].to_numpy()
    of_row = _cluster_of_rows(clusters, len(bank))
    seen = []
    for c in range(N_CLUSTERS):
        gallery.select_cluster(c)
        rows = list(gallery.shown_rows)
        assert gallery.cluster == c and gallery.cluster_dropdown.value == c
        assert 1 <= len(rows) <= 4 and all(of_row[r] == c for r in rows)
        assert list(weights[rows]) == sorted(weights[rows], reverse=True)
        assert len(set(images[rows])) == len(rows)  # one exemplar per image
        # the best component of the cluster is always shown first
        members = clusters.rows_[clusters.labels_ == c]
        assert weights[rows[0]] == weights[members].max()
        assert _shown(gallery.gallery) == rows
        titles = [a.text for a in gallery.gallery.layout.annotations if a.text]
        assert len(titles) == len(rows) and all(t.startswith(f"cluster {c} · w=") for t in titles)
        assert f"{weights[rows[0]]:.2f}" in titles[0]
        opac = {tr.meta["cluster"]: tr.opacity for tr in gallery.scatter.data[:-1]}
        assert opac[c] > 0.5 and all(v < 0.5 for k, v in opac.items() if k != c)
        seen.append(rows)
    assert seen[0] != seen[1]
    assert len(gallery.gallery.data) == 4  # fixed slots, blank past the data


def test_select_point_selects_its_cluster_and_shows_it(clusters, gallery):
    gallery.select_cluster(0)
    i = int(np.flatnonzero(clusters.labels_ == 1)[0])
    gallery.select_point(i)
    assert gallery.cluster == 1 and gallery.point == i and gallery.point_row == clusters.rows_[i]
    star = gallery.scatter.data[-1]
    assert star.name == "selected" and list(star.x) == [gallery.xy[i, 0]] and list(star.y) == [gallery.xy[i, 1]]
    assert {tr.meta["row"] for tr in gallery.detail.data if tr.meta} == {int(clusters.rows_[i])}
    assert _shown(gallery.gallery) == list(gallery.exemplars(1))
    gallery.select_cluster(2)  # another cluster: the star goes
    assert gallery.point is None and len(gallery.scatter.data[-1].x) == 0
    with pytest.raises(IndexError):
        gallery.select_point(10 ** 6)
    with pytest.raises(ValueError, match="no cluster"):
        gallery.select_cluster(99)


def test_callbacks_call_the_methods(clusters, gallery):
    gallery.cluster_dropdown.value = 2
    assert gallery.cluster == 2 and _shown(gallery.gallery) == list(gallery.exemplars(2))
    trace = next(tr for tr in gallery.scatter.data[:-1] if tr.meta["cluster"] == 0)
    j = 0
    gallery._on_click(trace, Points(point_inds=[j], xs=[trace.x[j]], ys=[trace.y[j]], trace_name=trace.name,
                                    trace_index=0), None)
    assert gallery.point == int(trace.customdata[j]) and gallery.cluster == 0
    gallery.order_buttons.value = "centre"
    assert gallery.by == "centre"
    gallery.set_order("weight")
    assert gallery.order_buttons.value == "weight"


def test_centre_order_sorts_by_distance(bank, clusters):
    for c in range(N_CLUSTERS):
        rows = cluster_exemplars(bank, clusters, c, n=50, by="centre", unique_images=False)
        pos = np.searchsorted(clusters.rows_, rows)
        d = np.linalg.norm(clusters.features_[pos] - clusters.cluster_centers_[c], axis=1)
        assert (np.diff(d) >= -1e-12).all() and len(rows) == (clusters.labels_ == c).sum()
    with pytest.raises(ValueError, match="by"):
        cluster_exemplars(bank, clusters, 0, by="random")


def test_named_clusters_title_the_gallery(tiny_rn, bank):
    cl = dv.ComponentClusters(N_CLUSTERS, random_state=0, min_weight=None).fit(bank)
    names = cl.name_parts(tiny_rn, ["wheel", "roof", "door"])
    g = ClusterGallery(bank, cl, n_exemplars=2, layout=np.zeros((len(cl.rows_), 2)))
    want = f"c0 {names[0]['name']}"
    assert g.cluster_dropdown.options[0][0].startswith(want)
    assert all(a.text.startswith(want) for a in g.gallery.layout.annotations if a.text)
    assert any(tr.name == want for tr in g.scatter.data)


def test_part_inspector_image_selection(bank, clusters):
    df = bank.to_pandas()
    insp = PartInspector(bank, clusters)
    table, parts = clusters.cluster_part_table()
    hm = insp.table_figure.data[0]
    assert hm.type == "heatmap" and np.asarray(hm.z).shape == table.shape and len(hm.x) == len(parts)
    world = dv.PartsWorld(10, seed=5, size=128, n_objects=(1, 2))
    for i in (0, 3):
        insp.select_image(i)
        assert insp.image == i and insp.image_dropdown.value == i
        names = [tr.name for tr in insp.image_figure.data]
        assert sum(n.startswith("ossm") for n in names) == (df["image_index"] == i).sum()
        scene = world[i]
        keys = {f"{scene.objects[p.object].label}/{p.name}" for p in scene.parts}
        assert {n[5:] for n in names if n.startswith("part ")} == keys
        assert scene.caption in insp.image_figure.layout.title.text
    insp.image_dropdown.value = 5
    assert insp.image == 5
    with pytest.raises(ValueError, match="not in this bank"):
        insp.select_image(999)
    c, p = np.unravel_index(np.argmax(table), table.shape)
    i = insp.select_cell(int(c), parts[p])
    assert i is not None and insp.image == i
    assert any(s.name == "selected" for s in insp.table_figure.layout.shapes)


def test_report_figures(bank, clusters):
    figs = cluster_report_figures(bank, clusters, n_exemplars=3)
    assert len(figs) == 2 + N_CLUSTERS
    scatter, heat, grids = figs[0], figs[1], figs[2:]
    assert [tr.meta["cluster"] for tr in scatter.data[:-1]] == list(range(N_CLUSTERS))
    assert sum(len(tr.x) for tr in scatter.data[:-1]) == len(clusters.rows_)
    assert heat.data[0].type == "heatmap"
    of_row = _cluster_of_rows(clusters, len(bank))
    for c, fig in enumerate(grids):
        assert len(fig.data) == 3 and all(tr.type == "image" for tr in fig.data)
        rows = _shown(fig)
        assert rows and all(of_row[r] == c for r in rows)
        assert f"cluster {c}" in fig.layout.title.text


def test_folder_bank_without_parts(tiny_rn, tmp_path):
    from PIL import Image
    for k, cls in enumerate(["a", "b"]):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for j in range(2):
            Image.fromarray(make_image(4 * k + j)).save(tmp_path / "imgs" / cls / f"{j}.png")
    bank = dv.extract(dv.DecomCAM(tiny_rn, n_components=3), str(tmp_path / "imgs"), "a photo of a {}",
                      out=tmp_path / "bank", progress=False)
    images = BankImages(bank)
    assert images.pixels(0).shape == (128, 128, 3) and images.parts(0) is None
    cl = dv.ComponentClusters(2, random_state=0, min_weight=None).fit(bank)
    g = ClusterGallery(bank, cl, n_exemplars=2)
    assert _shown(g.gallery)
    figs = cluster_report_figures(bank, cl, n_exemplars=2)
    assert len(figs) == 1 + 2  # no part heat map without ground truth
    insp = PartInspector(bank, cl)
    assert not any(tr.name.startswith("part") for tr in insp.image_figure.data)


def test_needs_fitted_clusters(bank):
    with pytest.raises(RuntimeError, match="fit"):
        ClusterGallery(bank, dv.ComponentClusters(2))


def test_part_inspector_shows_the_part_nmi_beside_its_controls(bank, clusters):
    insp = PartInspector(bank, clusters)
    report = clusters.part_report()
    text = insp.controls.value
    assert f"NMI {report['nmi']:.3f}" in text and "the class alone" in text and "within each class" in text
    assert f"{report['within_class_nmi']:.3f}" in text
