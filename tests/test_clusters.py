
import numpy as np
import pytest

import decomviz as dv
from decomviz.analysis.extraction import FORMAT_VERSION, _atomic_write_json, _write_shard


def make_bank(path, features, overlap, vocabulary, weights=None, grid=(2, 2)):
    """A hand-made bank: one image per row, features given, part overlaps given."""
    n = len(features)
    weights = np.ones(n) if weights is None else weights
    cols = {"image_index": np.arange(n), "image_id": [f"img{i}" for i in range(n)], "labels": [""] * n,
            "prompt": ["p"] * n, "prompt_index": [0] * n, "component": [0] * n,
            "singular_value": [1.0] * n, "explained_variance": [1.0] * n, "weight": list(weights),
            "contribution": list(weights), "masked_score": [0.0] * n, "base_score": [0.0] * n,
            "reference_score": [0.0] * n,
            "ossm": np.ones((n, grid[0] * grid[1]), np.float32), "embedding": features.astype(np.float32),
            "pooled": features.astype(np.float32), "loading": features.astype(np.float32),
            "part_overlap": overlap.astype(np.float32)}
    path.mkdir()
    _write_shard(path / "shard-00000.parquet", cols)
    _atomic_write_json(path / "manifest.json", {
        "format": FORMAT_VERSION, "protocol": {}, "part_vocabulary": list(vocabulary), "complete": True,
        "shards": {"00000": {"file": "shard-00000.parquet", "first": 0, "images": n, "rows": n, "failed": [],
                             "grid": list(grid)}}})
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
