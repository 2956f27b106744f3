import numpy as np
import pytest
import torch

import decomviz as dv
from decomviz.metrics import dilate


@pytest.fixture
def mask():
    m = np.zeros((224, 224), bool)
    m[50:100, 60:120] = True
    return m


def test_pointing_game_perfect_inverted_uniform(mask):
    perfect = mask.astype(np.float32)
    assert dv.metrics.pointing_game(perfect, mask).mean == 1.0
    inverted = 1.0 - perfect
    assert dv.metrics.pointing_game(inverted, mask, tolerance=0).mean == 0.0
    assert dv.metrics.pointing_game(np.zeros_like(perfect), mask).mean == 0.0  # empty map is a miss


def test_pointing_game_tolerance(mask):
    sal = np.zeros((224, 224), np.float32)
    sal[110, 90] = 1.0  # 11 px below the mask
    assert dv.metrics.pointing_game(sal, mask, tolerance=0).mean == 0.0
    assert dv.metrics.pointing_game(sal, mask, tolerance=15).mean == 1.0
    small = sal[::2, ::2]  # at 112 px the tolerance scales to 8 px: (55, 45) is 6 px below the 25..49 rows
    assert dv.metrics.pointing_game(small, mask[::2, ::2], tolerance=15).protocol["radius_px"] == 8


def test_energy_pointing_game_values(mask):
    assert dv.metrics.energy_pointing_game(mask.astype(float), mask).mean == pytest.approx(1.0)
    assert dv.metrics.energy_pointing_game(1.0 - mask, mask).mean == pytest.approx(0.0)
    uniform = np.ones((224, 224))
    assert dv.metrics.energy_pointing_game(uniform, mask).mean == pytest.approx(mask.mean())


def test_batches_and_broadcast(mask):
    sal = torch.stack([torch.from_numpy(mask.astype(np.float32)), torch.from_numpy(1.0 - mask.astype(np.float32))])
    res = dv.metrics.pointing_game(sal, mask, tolerance=0)
    assert res.values.tolist() == [1.0, 0.0] and res.mean == 0.5
    with pytest.raises(ValueError, match="differ in size"):
        dv.metrics.pointing_game(sal, mask[:100])


def test_dilate_disc():
    m = torch.zeros(1, 21, 21, dtype=torch.bool)
    m[0, 10, 10] = True
    d = dilate(m, 3)
    assert d.sum() == 29  # lattice points in a disc of radius 3


def test_part_alignment_perfect_inverted_uniform():
    parts = np.zeros((2, 20, 20), bool)
    parts[0, :10] = True
    parts[1, 10:] = True
    perfect = parts.astype(float)
    res = dv.metrics.part_alignment(perfect, parts)
    assert res["ossm_alignment"].mean == pytest.approx(1.0) and res["part_coverage"].mean == 1.0
    uniform = np.ones((1, 20, 20))
    res = dv.metrics.part_alignment(uniform, parts)
    assert res["ossm_alignment"].mean == pytest.approx(0.5) and res["part_coverage"].mean == 0.5
    empty = np.zeros((1, 20, 20))
    res = dv.metrics.part_alignment(empty, parts)
    assert res["ossm_alignment"].values.numel() == 0 and res["part_coverage"].mean == 0.0


def test_cluster_scores_known_values():
    perfect = dv.metrics.cluster_scores([0, 0, 1, 1], ["a", "a", "b", "b"])
    assert perfect == {"purity": 1.0, "nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}
    mixed = dv.metrics.cluster_scores([0, 0, 0, 0], ["a", "a", "b", "b"])
    assert mixed["purity"] == 0.5 and mixed["nmi"] == pytest.approx(0.0) and mixed["ari"] == pytest.approx(0.0)


@pytest.fixture
def explained(tiny_rn):
    from tests.conftest import make_image
    return dv.GradCAM(tiny_rn)([make_image(0), make_image(1)], ["a red circle", "a blue square"])


def test_insertion_deletion_endpoints(tiny_rn, explained):
    res = dv.metrics.insertion_deletion(tiny_rn, explained, steps=4)
    ins, dele = res["insertion"], res["deletion"]
    assert ins.values.shape == dele.values.shape == (2, 2)
    # insertion ends at the full image and deletion starts there: both equal the explanation's base score
    assert torch.allclose(ins.curves[..., -1], explained.base_score, atol=1e-4)
    assert torch.allclose(dele.curves[..., 0], explained.base_score, atol=1e-4)
    assert torch.allclose(ins.curves[..., 0], dele.curves[..., -1], atol=1e-5)  # both the blurred image
    assert ins.protocol["steps"] == 4 and ins.protocol["method"] == "gradcam"
    with pytest.raises(ValueError, match="steps"):
        dv.metrics.insertion_deletion(tiny_rn, explained, steps=0)


def test_confidence_change_full_map_changes_nothing(tiny_rn, explained):
    explained.saliency = torch.ones_like(explained.saliency)
    res = dv.metrics.confidence_change(tiny_rn, explained)
    assert torch.allclose(res["average_drop"].values, torch.zeros(2, 2), atol=1e-4)
    assert res["increase_in_confidence"].values.sum() == 0


def test_sanity_check_randomisation_changes_maps(tiny_rn):
    from tests.conftest import make_image
    before = dv.GradCAM(tiny_rn)(make_image(0), "a red circle").saliency
    res = dv.metrics.sanity_check(lambda m: dv.GradCAM(m), tiny_rn, [make_image(0)], ["a red circle"], steps=2)
    assert res.values.shape == (2,) and res.protocol["randomised_from_top"][0] == "visual.attnpool"
    finite = ~res.values.isnan()          # NaN: every map of that step became constant (left out of the mean)
    assert finite.any() and (res.values[finite] < 0.9).all()
    # the original model is untouched
    assert torch.equal(dv.GradCAM(tiny_rn)(make_image(0), "a red circle").saliency, before)


def test_sanity_check_runs_on_a_timm_tower_from_its_top_layer_down():
    from tests.conftest import make_image
    from tests.tower_zoo import open_clip_model
    model = dv.load_model(open_clip_model("timm-convnext"), tokenizer=lambda texts: torch.zeros(len(texts), 16,
                                                                                                dtype=torch.long))
    res = dv.metrics.sanity_check(lambda m: dv.GradCAM(m), model, [make_image(0)], ["x"], steps=2)
    assert res.protocol["randomised_from_top"] == list(reversed(model.layers))[:2]
    assert res.values.shape == (2,)
