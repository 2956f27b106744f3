"""ConceptBasis: non-negative concepts of one layer, fitted over a dataset and used on other images."""
import numpy as np
import pytest
import torch

import decomviz as dv
from decomviz.analysis.concepts import _nnls_codes
from decomviz.ops import blurred_reference, minmax

from .conftest import make_image


@pytest.fixture(scope="module")
def scenes():
    return list(dv.PartsWorld(6, seed=3, n_objects=1, size=128))


@pytest.fixture(scope="module")
def basis(tiny_rn, scenes):
    return dv.ConceptBasis(tiny_rn, n_concepts=3, random_state=0, batch_size=4).fit(scenes)


def test_concepts_are_non_negative_directions_of_the_layer(basis, tiny_rn):
    C = dv.tap_activations(tiny_rn, make_image(0), basis.layer_).shape[1]
    assert basis.components_.shape == (3, C) and (basis.components_ >= 0).all()
    assert basis.n_images_ == 6 and len(basis.grid_) == 2


def test_transform_gives_a_non_negative_map_per_concept(basis, tiny_rn):
    maps = basis.transform([make_image(0), make_image(1)])
    assert maps.shape == (2, 3, *tiny_rn.image_size) and (maps >= 0).all()
    grid = basis.transform(make_image(0), size="grid")
    assert grid.shape == (1, 3, *basis.grid_)


def test_codes_rebuild_cells_made_of_the_concepts():
    rng = np.random.default_rng(0)
    basis = rng.random((3, 10))
    codes = rng.random((20, 3))
    found = _nnls_codes(codes @ basis, basis, n_iter=500)
    np.testing.assert_allclose(found @ basis, codes @ basis, rtol=1e-3, atol=1e-3)


def test_importance_is_the_score_each_concept_region_restores(basis, tiny_rn):
    img = make_image(2)
    out = basis.importance(img, ["a dog", "a cat"])
    assert out["contributions"].shape == (1, 2, 3)
    # concept 0 and prompt 1, recomputed by hand: the image masked by the concept over its blurred reference
    x = tiny_rn.prepare(img).tensor
    ref = blurred_reference(x, 10.0)
    m = minmax(torch.from_numpy(basis.transform(img))[:, :1])
    with torch.no_grad():
        text = tiny_rn.encode_text(["a dog", "a cat"])
        masked = (tiny_rn.embed(m * x + (1 - m) * ref) @ text.T)[0, 1]
        base = (tiny_rn.embed(ref) @ text.T)[0, 1]
    assert out["contributions"][0, 1, 0] == pytest.approx(float(masked - base), abs=1e-4)
    gap = out["score"] - out["reference_score"]
    expected = np.where(gap[..., None] > 0, out["contributions"] / gap[..., None], np.nan)
    np.testing.assert_allclose(out["shares"], expected, rtol=1e-5)


def test_part_report_scores_concepts_beside_the_controls(basis, scenes):
    report = basis.part_report(scenes)
    assert "concepts" in report
    names = list(report)
    assert any(n.startswith("control: position partition") for n in names)
    assert any("ceiling" in n for n in names) and "control: class only" in names
    assert 0 <= report["concepts"]["within_image_nmi"] <= 1


def test_saved_concepts_load_without_pickle_and_give_the_same_maps(basis, tiny_rn, tmp_path):
    path = tmp_path / "concepts.npz"
    basis.save(path)
    with np.load(path, allow_pickle=False) as f:
        assert "meta" in f.files
    again = dv.ConceptBasis.load(path, tiny_rn)
    np.testing.assert_array_equal(again.components_, basis.components_)
    np.testing.assert_allclose(again.transform(make_image(3)), basis.transform(make_image(3)), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=".npz"):
        basis.save(tmp_path / "concepts.pkl")


def test_per_class_concepts_need_each_image_class(tiny_rn, scenes):
    per_class = dv.ConceptBasis(tiny_rn, n_concepts=2, per_class=True, random_state=0).fit(scenes)
    assert set(per_class.components_) == {s.objects[0].label for s in scenes}
    with pytest.raises(ValueError, match="classes="):
        per_class.transform(scenes[0].image)
    label = scenes[0].objects[0].label
    assert per_class.transform(scenes[0].image, classes=[label]).shape[1] == 2


def test_name_parts_reads_ground_truth_style_names_as_part_prompts(basis, scenes, tiny_rn):
    names = basis.name_parts(["car/wheel", "house/roof", "tree"], [s.image for s in scenes[:2]])
    assert len(names) == 3 and {n["prompt"] for n in names} <= {"the wheel of a car", "the roof of a house",
                                                                 "a photo of a tree"}
    assert basis.model_names_ is names


def test_unfitted_concepts_say_what_to_do(tiny_rn):
    with pytest.raises(RuntimeError, match="fit"):
        dv.ConceptBasis(tiny_rn).transform(make_image(0))
    with pytest.raises(ValueError, match="n_concepts"):
        dv.ConceptBasis(tiny_rn, n_concepts=0)


def test_concept_gallery_opens_on_the_strongest_concept_and_switches(basis, scenes):
    from decomviz.widgets import ConceptGallery
    report = basis.part_report(scenes)
    g = ConceptGallery(basis, scenes[:3], prompt="a photo of a car", report=report)
    assert g.concept == int(np.nanargmax(np.nanmean(g.shares, axis=0)))  # the concept that restores most of the score
    assert ConceptGallery(basis, scenes[:3]).concept == int(g.maps.sum(axis=(0, 2, 3)).argmax())  # no prompt: mass
    assert "position alone" in g.summary.value
    other = (g.concept + 1) % basis.n_concepts
    g.dropdown.value = other
    assert g.concept == other and f"concept {other}" in g.fig.layout.title.text
    with pytest.raises(ValueError, match="concept must be"):
        g.select_concept(99)


def test_score_masks_on_the_ossms_gives_back_decomcams_own_scores(tiny_rn):
    """The public stage 2 that `importance` and the scrubber use is the scoring DecomCAM runs on its OSSMs."""
    cam = dv.DecomCAM(tiny_rn, n_components=3, top_channels=32)
    img = make_image(1)
    exp = cam(img, ["a dog", "a cat"])
    out = cam.score_masks(img, ["a dog", "a cat"], exp.ossms)
    np.testing.assert_allclose(out["masked_scores"], exp.masked_scores, atol=1e-4)
    np.testing.assert_allclose(out["contributions"], exp.contributions, atol=1e-4)
    np.testing.assert_allclose(out["reference_score"], exp.reference_score, atol=1e-4)
    x = tiny_rn.prepare(img).tensor
    with torch.no_grad():
        whole = tiny_rn.embed(x) @ tiny_rn.encode_text(["a dog", "a cat"]).T
    np.testing.assert_allclose(out["score"], whole.cpu(), atol=1e-4)
    with pytest.raises(ValueError, match="masks must have shape"):
        cam.score_masks(img, ["a dog"], exp.ossms)


def test_normalized_cells_factorize_directions_and_give_maps_at_the_cells_strength(tiny_rn, scenes, tmp_path):
    basis = dv.ConceptBasis(tiny_rn, n_concepts=3, random_state=0, batch_size=4, normalize_cells=True).fit(scenes)
    cells = basis._cells([make_image(4)]).numpy().astype(np.float64)[0]  # (n, C)
    norm = np.linalg.norm(cells, axis=-1, keepdims=True)
    expected = (_nnls_codes(cells / np.maximum(norm, 1e-12), basis.components_) * norm).T.reshape(3, *basis.grid_)
    np.testing.assert_allclose(basis.transform(make_image(4), size="grid")[0], expected, rtol=1e-4, atol=1e-6)
    # a basis fitted on directions differs from one fitted on the activations as they are
    plain = dv.ConceptBasis(tiny_rn, n_concepts=3, random_state=0, batch_size=4).fit(scenes)
    assert not np.allclose(plain.components_, basis.components_, atol=1e-3)
    basis.save(tmp_path / "c.npz")
    again = dv.ConceptBasis.load(tmp_path / "c.npz", tiny_rn)
    assert again.normalize_cells and "normalize_cells=True" in repr(again)
    np.testing.assert_allclose(again.transform(make_image(4)), basis.transform(make_image(4)), rtol=1e-5, atol=1e-6)


def test_image_parts_concepts_cluster_each_images_components(tiny_rn, scenes, tmp_path):
    basis = dv.ConceptBasis(tiny_rn, n_concepts=3, random_state=0, batch_size=4, strategy="image-parts").fit(scenes)
    C = basis.components_.shape[1]
    assert basis.components_.shape == (3, C) and (basis.components_ >= 0).all() and basis.n_images_ == 6
    # the centres of unit directions: each norm at most 1
    assert (np.linalg.norm(basis.components_, axis=1) <= 1 + 1e-5).all()
    maps = basis.transform(make_image(2), size="grid")
    assert maps.shape == (1, 3, *basis.grid_) and (maps >= 0).all()
    basis.save(tmp_path / "parts.npz")
    again = dv.ConceptBasis.load(tmp_path / "parts.npz", tiny_rn)
    assert again.strategy == "image-parts" and "strategy='image-parts'" in repr(again)
    np.testing.assert_allclose(again.transform(make_image(2)), basis.transform(make_image(2)), rtol=1e-5, atol=1e-6)
    per_class = dv.ConceptBasis(tiny_rn, n_concepts=2, per_class=True, random_state=0,
                                strategy="image-parts").fit(scenes)
    assert set(per_class.components_) == {s.objects[0].label for s in scenes}


def test_a_strategy_is_checked_and_too_few_components_say_what_to_change(tiny_rn, scenes):
    with pytest.raises(ValueError, match="dataset, image-parts"):
        dv.ConceptBasis(tiny_rn, strategy="pca")
    with pytest.raises(ValueError, match="fewer concepts"):
        dv.ConceptBasis(tiny_rn, n_concepts=1000, random_state=0, strategy="image-parts").fit(scenes[:1])


def test_image_parts_coding_gives_each_region_whole_to_the_concept_it_matches():
    from decomviz.analysis.concepts import _matched_image_parts
    basis = np.eye(6)[[0, 2, 4]] + 0.05  # three non-negative directions over 6 channels
    cells = np.zeros((30, 6))
    cells[:10] = 2.0 * basis[2]  # region A is concept 2, region B concept 0, region C concept 1
    cells[10:20] = 1.0 * basis[0]
    cells[20:] = 0.5 * basis[1]
    codes = _matched_image_parts(cells, basis, random_state=0)
    assert codes.shape == (30, 3)
    np.testing.assert_array_equal(codes.argmax(1), [2] * 10 + [0] * 10 + [1] * 10)
    # in the cells' units (coefficient times the component's norm): the region's strength times its direction's norm
    norms = np.linalg.norm(basis, axis=1)
    np.testing.assert_allclose(codes[np.arange(30), codes.argmax(1)],
                               [2.0 * norms[2]] * 10 + [norms[0]] * 10 + [0.5 * norms[1]] * 10, rtol=0.05)
    assert np.abs(codes - codes.max(1, keepdims=True) * (codes == codes.max(1, keepdims=True))).max() < 0.05
    assert not _matched_image_parts(np.zeros((30, 6)), basis, 0).any()  # nothing active: no map


def test_image_parts_coding_is_saved_and_checked(tiny_rn, scenes, tmp_path):
    basis = dv.ConceptBasis(tiny_rn, n_concepts=3, random_state=0, batch_size=4, strategy="image-parts",
                            coding="image-parts").fit(scenes)
    maps = basis.transform([s.image for s in scenes[:2]], size="grid")
    assert maps.shape == (2, 3, *basis.grid_) and (maps >= 0).all()
    basis.save(tmp_path / "coded.npz")
    again = dv.ConceptBasis.load(tmp_path / "coded.npz", tiny_rn)
    assert again.coding == "image-parts" and "coding='image-parts'" in repr(again)
    np.testing.assert_allclose(again.transform(scenes[0].image), basis.transform(scenes[0].image), rtol=1e-5,
                               atol=1e-6)
    cells_coded = dv.ConceptBasis(tiny_rn, n_concepts=3, random_state=0, batch_size=4, strategy="image-parts")
    cells_coded.components_, cells_coded.grid_, cells_coded.layer_ = basis.components_, basis.grid_, basis.layer_
    assert not np.allclose(cells_coded.transform(scenes[0].image), basis.transform(scenes[0].image))
    with pytest.raises(ValueError, match="cells, image-parts"):
        dv.ConceptBasis(tiny_rn, coding="nearest")


def test_one_class_of_a_per_class_basis_is_a_shared_basis_for_the_gallery_and_naming(tiny_rn, scenes):
    from decomviz.widgets import ConceptGallery
    basis = dv.ConceptBasis(tiny_rn, n_concepts=2, per_class=True, random_state=0, batch_size=4).fit(scenes)
    cls = scenes[0].objects[0].label
    own = [s for s in scenes if s.objects[0].label == cls]
    with pytest.raises(ValueError, match=r"for_class\('house'\)"):
        ConceptGallery(basis, own)
    with pytest.raises(ValueError, match="for_class"):
        basis.name_parts(["robot/head"], [s.image for s in own])
    one = basis.for_class(cls)
    assert not one.per_class and one.for_class("anything") is one and basis.per_class  # the original is unchanged
    np.testing.assert_allclose(one.transform([s.image for s in own]),
                               basis.transform([s.image for s in own], classes=[cls] * len(own)), rtol=1e-6)
    gallery = ConceptGallery(one, own)
    assert gallery.maps.shape[:2] == (len(own), 2)
    assert len(one.name_parts([f"{cls}/{p.name}" for p in own[0].parts if p.object == 0], [own[0].image])) == 2
    with pytest.raises(ValueError, match="per class"):
        basis.for_class("no such class")
