"""The part study and its controls: what a labelling that finds parts scores, and what the controls score."""
import numpy as np
import pytest

from decomviz.analysis.clusters import cluster_part_controls
from decomviz.metrics.part_study import (PartObject, grid_ceiling, part_study, position_partition, score_labelling,
                                         strongest_component)

S = 32


def _object(cls="house", seed=0, flip=False):
    """A 32 x 32 object of three horizontal bands (parts), its box shifted by the seed."""
    rng = np.random.default_rng(seed)
    labels = np.full((S, S), -1, np.int32)
    top, left = rng.integers(0, 6, 2)
    bands = [(0, 8), (8, 14), (14, 24)]
    for i, (a, b) in enumerate(bands):
        labels[top + a:top + b, left:left + 24] = (2 - i) if flip else i
    return PartObject(cls, labels, [f"{cls}/roof", f"{cls}/wall", f"{cls}/door"])


def _truth_maps(obj):
    return np.stack([(obj.part_labels == p).astype(np.float32) for p in range(3)])


def test_maps_that_are_the_parts_score_one_and_shuffling_them_scores_nothing():
    objects = [_object(seed=s) for s in range(4)]
    study = part_study(objects, {"truth": [_truth_maps(o) for o in objects]}, n_position=3, grid=(S, S))
    assert study["truth"]["within_image_nmi"] == pytest.approx(1.0)
    assert study["truth"]["within_class_nmi"] == pytest.approx(1.0)
    assert study["truth"]["best_part_share"] == pytest.approx(1.0)
    assert study["control: truth shuffled over the object"]["within_image_nmi"] < 0.05
    assert study["control: even map (one label per object)"]["within_image_nmi"] == 0.0
    assert study[f"control: true parts at the {S} x {S} grid (ceiling)"]["within_image_nmi"] == pytest.approx(1.0)


def test_the_class_alone_scores_high_pooled_and_zero_within_a_class():
    objects = [_object("house", 0), _object("car", 1), _object("house", 2), _object("car", 3)]
    study = part_study(objects, {"truth": [_truth_maps(o) for o in objects]}, 3, (8, 8))
    cls = study["control: class only"]
    assert cls["within_class_nmi"] == 0.0 and cls["within_image_nmi"] == 0.0
    assert cls["pooled_nmi"] > 0.3  # it knows which half of the "class/part" names an object can have


def test_position_partition_knows_nothing_of_parts():
    """Half of the objects have their parts laid out upside down: the position partition cuts an object and its
    flipped twin alike, so it cannot follow the parts' identity across them."""
    objects = [_object(seed=s // 2, flip=s % 2 == 1) for s in range(6)]
    labels = position_partition(objects, 3, random_state=0)
    assert all((lab >= 0).sum() == o.mask.sum() for lab, o in zip(labels, objects))
    for i in range(0, 6, 2):
        assert np.array_equal(labels[i], labels[i + 1])  # the same box: the same cut, whatever the parts
    truth = score_labelling(objects, [o.part_labels for o in objects])
    assert score_labelling(objects, labels)["within_class_nmi"] < truth["within_class_nmi"] - 0.3


def test_a_coarse_grid_cannot_hold_the_parts_exactly():
    obj = _object(seed=0)
    coarse = grid_ceiling(obj, (3, 3))
    fine = grid_ceiling(obj, (S, S))
    assert score_labelling([obj], [fine])["within_image_nmi"] == pytest.approx(1.0)
    assert score_labelling([obj], [coarse])["within_image_nmi"] < 1.0


def test_strongest_component_marks_pixels_no_component_reaches():
    maps = np.zeros((2, 4, 4), np.float32)
    maps[0, :2] = 1
    lab = strongest_component(maps, 8)
    assert (lab[:3] == 0).all() and (lab[-3:] == 2).all()


def test_part_study_refuses_maps_that_do_not_match_the_objects():
    with pytest.raises(ValueError, match="2 objects"):
        part_study([_object(seed=0), _object(seed=1)], {"x": [np.zeros((2, 4, 4))]}, 2, (4, 4))


def test_cluster_controls_expose_a_labelling_that_only_knows_the_class():
    rng = np.random.default_rng(0)
    parts = np.array([f"{c}/{p}" for c in ("car", "house") for p in ("a", "b", "c")] * 20)
    classes = np.array([p.split("/")[0] for p in parts])
    class_labels = (classes == "car").astype(int)
    out = cluster_part_controls(class_labels, parts, random_state=0)
    assert out["within_class_nmi"] == pytest.approx(0.0, abs=1e-12)
    assert out["class_only_nmi"] > 0.3
    by_part = np.unique(parts, return_inverse=True)[1]
    good = cluster_part_controls(by_part, parts, random_state=0)
    assert good["within_class_nmi"] == pytest.approx(1.0)
    assert good["shuffled_within_class_nmi"] < 0.2
    assert rng is not None
