"""ComponentClusters on hand-made banks (Parquet in dv.bank_schema(), no manifest), in memory and by streaming."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import decomviz as dv


def make_bank(path, features, overlap, vocabulary, weights=None, grid=(2, 2), files=1, labels=None):
    """A hand-made bank: one image per row, features given, part overlaps given, split over `files` files."""
    n = len(features)
    weights = np.ones(n) if weights is None else weights

    def vectors(a):
        return [list(map(float, row)) for row in np.asarray(a, np.float32)]
    cols = {"image_index": np.arange(n), "image_id": [f"img{i}" for i in range(n)],
            "labels": [""] * n if labels is None else list(labels), "prompt": ["p"] * n, "prompt_index": [0] * n,
            "component": [0] * n, "singular_value": [1.0] * n, "explained_variance": [1.0] * n,
            "weight": list(map(float, weights)), "contribution": list(map(float, weights)),
            "masked_score": [0.0] * n, "base_score": [0.0] * n, "reference_score": [0.0] * n,
            "grid_h": [grid[0]] * n, "grid_w": [grid[1]] * n,
            "ossm": vectors(np.ones((n, grid[0] * grid[1]))), "embedding": vectors(features),
            "pooled": vectors(features), "loading": vectors(features), "part_overlap": vectors(overlap),
            "error": [None] * n}
    table = pa.Table.from_pydict(cols, schema=dv.bank_schema(part_vocabulary=vocabulary))
    path.mkdir()
    bounds = np.linspace(0, n, files + 1).astype(int)
    for f in range(files):
        pq.write_table(table.slice(bounds[f], bounds[f + 1] - bounds[f]), path / f"part-{f:03d}.parquet")
    return dv.OSSMBank(path)


@pytest.fixture
def three_part_bank(tmp_path):
    rng = np.random.default_rng(0)
    centers = np.eye(3, 8) * 5
    truth = np.repeat(np.arange(3), 20)
    feats = centers[truth] + rng.normal(0, 0.1, (60, 8))
    overlap = np.zeros((60, 3))
    overlap[np.arange(60), truth] = 0.8
    return make_bank(tmp_path / "bank", feats, overlap, ["car/wheels", "house/roof", "tree/crown"]), truth


@pytest.mark.parametrize("method", ["kmeans", "agglomerative", "hdbscan"])
def test_separable_parts_are_recovered(three_part_bank, method):
    bank, truth = three_part_bank
    cl = dv.ComponentClusters(3, method=method, random_state=0).fit(bank)
    assert cl.n_clusters_ == 3 and cl.labels_.shape == (60,)
    report = cl.part_report()
    assert report["nmi"] == pytest.approx(1.0) and report["ari"] == pytest.approx(1.0)
    assert report["purity"] == pytest.approx(1.0)
    assert sorted(c["dominant_part"] for c in report["clusters"]) == ["car/wheels", "house/roof", "tree/crown"]
    assert cl.cluster_centers_.shape == (3, 8)


def test_clusters_named_by_their_dominant_part(three_part_bank, tmp_path):
    bank, truth = three_part_bank
    cl = dv.ComponentClusters(3, random_state=0).fit(bank)
    names = cl.name_by_parts()
    by_cluster = {n["cluster"]: n["name"] for n in names}
    for c in range(3):  # each cluster's name is the ground-truth part of its members
        members = truth[cl.labels_ == c]
        assert by_cluster[c] == ["car/wheels", "house/roof", "tree/crown"][np.bincount(members).argmax()]
    assert all(n["confidence"] == pytest.approx(1.0) for n in names)
    from decomviz.analysis.cluster_views import cluster_names
    assert sorted(cluster_names(cl).values()) == ["c0 " + by_cluster[0], "c1 " + by_cluster[1], "c2 " + by_cluster[2]]
    plain = make_bank(tmp_path / "plain", np.eye(3, 8)[truth] * 5, np.zeros((60, 0)), [])
    with pytest.raises(ValueError, match="no ground-truth parts"):
        dv.ComponentClusters(3, random_state=0).fit(plain).name_by_parts()


def test_mixed_clusters_have_known_purity(tmp_path):
    # two feature clusters; the first holds 10 "roof" + 10 "door", the second 20 "wheels": purity = (10 + 20) / 40
    feats = np.concatenate([np.tile([5.0, 0, 0], (20, 1)), np.tile([0, 5.0, 0], (20, 1))])
    feats += np.random.default_rng(1).normal(0, 0.05, feats.shape)
    overlap = np.zeros((40, 3))
    overlap[:10, 0] = overlap[10:20, 1] = overlap[20:, 2] = 0.9
    bank = make_bank(tmp_path / "b", feats, overlap, ["house/roof", "house/door", "car/wheels"])
    report = dv.ComponentClusters(2, random_state=0).fit(bank).part_report()
    assert report["purity"] == pytest.approx(0.75)
    by_part = {c["dominant_part"]: c["purity"] for c in report["clusters"]}
    assert by_part["car/wheels"] == 1.0 and max(by_part.get("house/roof", 0), by_part.get("house/door", 0)) == 0.5
    assert 0 < report["nmi"] < 1


def test_background_and_weight_filter(tmp_path):
    feats = np.random.default_rng(2).normal(size=(30, 4))
    overlap = np.zeros((30, 2))
    overlap[:15, 0] = 0.5  # the rest has no part energy: background
    weights = np.r_[np.ones(20), np.zeros(10)]
    bank = make_bank(tmp_path / "b", feats, overlap, ["a/x", "b/y"], weights=weights)
    cl = dv.ComponentClusters(2, random_state=0).fit(bank)
    assert len(cl.rows_) == 20 and (cl.rows_ < 20).all()
    table, names = cl.cluster_part_table()
    assert names == ["a/x", "background"] and table.sum() == 20
    assert len(dv.ComponentClusters(2, min_weight=None, random_state=0).fit(bank).rows_) == 30


def test_deterministic_with_seed(three_part_bank):
    bank, _ = three_part_bank
    a = dv.ComponentClusters(4, random_state=3).fit(bank)
    b = dv.ComponentClusters(4, random_state=3).fit(bank)
    assert np.array_equal(a.labels_, b.labels_)
    assert np.allclose(a.transform(method="tsne"), b.transform(method="tsne"))
    assert a.transform().shape == (60, 2)


def test_validation(three_part_bank):
    bank, _ = three_part_bank
    with pytest.raises(ValueError, match="method"):
        dv.ComponentClusters(3, method="dbscan").fit(bank)
    with pytest.raises(ValueError, match="feature"):
        dv.ComponentClusters(3, feature="colour").fit(bank)
    with pytest.raises(ValueError, match="too few"):
        dv.ComponentClusters(100).fit(bank)
    with pytest.raises(RuntimeError, match="fit"):
        dv.ComponentClusters(3).part_report()


def test_name_parts_on_real_bank(tiny_rn, tmp_path):
    world = dv.PartsWorld(6, seed=1, size=128)
    bank = dv.extract(dv.DecomCAM(tiny_rn, n_components=3), world, "a photo of a {}", out=tmp_path / "b",
                      progress=False)
    cl = dv.ComponentClusters(2, random_state=0, min_weight=None).fit(bank)
    names = cl.name_parts(tiny_rn, ["wheel", "roof", "door"])
    assert len(names) == 2 and all(n["name"] in ("wheel", "roof", "door") for n in names)
    assert all(1 / 3 - 1e-6 <= n["confidence"] <= 1 for n in names)
    assert sum(n["size"] for n in names) == len(bank)


# ---------------------------------------------------------------------------------------------- streaming
@pytest.fixture
def split_bank(tmp_path):
    """Three separable parts over 90 rows in 4 files; the first 10 rows have weight 0."""
    rng = np.random.default_rng(4)
    truth = np.tile(np.arange(3), 30)
    feats = np.eye(3, 12)[truth] * 5 + rng.normal(0, 0.1, (90, 12))
    overlap = np.zeros((90, 3))
    overlap[np.arange(90), truth] = 0.7
    weights = np.r_[np.zeros(10), np.ones(80)]
    labels = np.array(["car", "house", "tree|car"])[truth]
    bank = make_bank(tmp_path / "split", feats, overlap, ["car/wheels", "house/roof", "tree/crown"], weights=weights,
                     files=4, labels=labels)
    return bank, truth


def test_streaming_fit_recovers_the_parts_a_batch_at_a_time(split_bank):
    bank, truth = split_bank
    cl = dv.ComponentClusters(3, random_state=0, streaming=True, batch_size=16, n_pca=4).fit(bank)
    assert cl.streaming_ and cl.features_ is None and cl.pca_.n_components == 4
    assert np.array_equal(cl.rows_, np.arange(10, 90)) and cl.labels_.shape == (80,)
    report = cl.part_report()
    assert report["nmi"] == pytest.approx(1.0) and report["purity"] == pytest.approx(1.0)
    assert cl.cluster_centers_.shape == (3, 4) and cl.distance_.shape == (80,) and (cl.distance_ < 1).all()
    assert cl.transform().shape == (80, 2)
    with pytest.raises(ValueError, match="t-SNE.*streaming"):
        cl.transform(method="tsne")
    in_memory = dv.ComponentClusters(3, random_state=0, streaming=False).fit(bank)
    assert not in_memory.streaming_ and in_memory.features_.shape == (80, 12)
    from sklearn.metrics import adjusted_rand_score
    assert adjusted_rand_score(in_memory.labels_, cl.labels_) == pytest.approx(1.0)


def test_streaming_fit_on_a_filtered_view(split_bank):
    bank, truth = split_bank
    cars = bank.filter(label="car")  # "car" and "tree|car" rows: two of the three parts
    assert len(cars) == 60
    cl = dv.ComponentClusters(2, random_state=0, streaming=True, batch_size=8, n_pca=3, min_weight=None).fit(cars)
    names = sorted(c["dominant_part"] for c in cl.part_report()["clusters"])
    assert names == ["car/wheels", "tree/crown"] and cl.part_report()["purity"] == pytest.approx(1.0)


def test_streaming_needs_kmeans(split_bank):
    bank, _ = split_bank
    with pytest.raises(ValueError, match="k-means only"):
        dv.ComponentClusters(3, method="agglomerative", streaming=True).fit(bank)
    with pytest.raises(ValueError, match="streaming must be"):
        dv.ComponentClusters(3, streaming="yes").fit(bank)


def test_auto_streams_above_the_memory_limit(split_bank, monkeypatch):
    from decomviz.analysis import clusters
    bank, _ = split_bank
    assert not dv.ComponentClusters(3, random_state=0).fit(bank).streaming_
    monkeypatch.setattr(clusters, "IN_MEMORY_BYTES", 100)
    assert dv.ComponentClusters(3, random_state=0, batch_size=32).fit(bank).streaming_
    with pytest.raises(ValueError, match="clustering of all 80 components in memory needs about"):
        dv.ComponentClusters(3, method="hdbscan").fit(bank)


def test_names_and_exemplars_by_centre_agree_in_both_modes(tiny_rn, tmp_path):
    from decomviz.analysis.cluster_views import cluster_exemplars
    bank = dv.extract(dv.DecomCAM(tiny_rn, n_components=3), dv.PartsWorld(6, seed=1, size=128), "a photo of a {}",
                      out=tmp_path / "b", progress=False)
    a = dv.ComponentClusters(2, random_state=0, min_weight=None, streaming=False).fit(bank)
    emb = bank.embeddings[a.rows_]
    names = a.name_parts(tiny_rn, ["wheel", "roof", "door"])
    assert [n["size"] for n in names] == [int((a.labels_ == c).sum()) for c in range(2)]
    for c in range(2):  # by centre: the nearest member first, in the clustering feature space
        rows = cluster_exemplars(bank, a, c, n=3, by="centre", unique_images=False)
        pos = [int(np.flatnonzero(a.rows_ == r)[0]) for r in rows]
        d = np.linalg.norm(a.features_[pos] - a.cluster_centers_[c], axis=1)
        assert list(d) == sorted(d) and np.allclose(d, a.distance_[pos], atol=1e-5)
    assert emb.shape[0] == len(a.rows_)


def test_streaming_pca_equals_pca_on_all_rows():
    from sklearn.decomposition import PCA

    from decomviz.analysis.streaming import StreamingPCA
    X = np.random.default_rng(0).normal(size=(500, 9)) @ np.random.default_rng(1).normal(size=(9, 9)) + 3
    stream = StreamingPCA(4)
    for lo in range(0, 500, 64):
        stream.partial_fit(X[lo:lo + 64])
    ref = PCA(4).fit(X)
    signs = np.sign((stream.components_ * ref.components_).sum(1))
    assert np.allclose(stream.components_, ref.components_ * signs[:, None], atol=1e-8)
    assert np.allclose(stream.transform(X), ref.transform(X) * signs, atol=1e-8)
    assert np.allclose(stream.explained_variance_, ref.explained_variance_ * 499 / 500)
