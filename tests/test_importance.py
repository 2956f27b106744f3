"""Part importance from interventions, and part-level scores of maps, on cases whose answer is known."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import decomviz as dv
from decomviz import metrics
from decomviz.data import PALETTE


class RednessModel:
    """A stand-in CLIP whose image embedding grows with the share of pure palette-red pixels, and whose every
    prompt points at that direction: removing the red part must lower the score most."""

    logit_scale = torch.tensor(10.0)

    def encode_image(self, images):
        red = np.array(PALETTE["red"])
        share = [float((np.asarray(im) == red).all(-1).mean()) for im in images]
        return F.normalize(torch.tensor([[s, 0.05] for s in share]), dim=-1)

    def encode_text(self, prompts):
        return F.normalize(torch.tensor([[1.0, 0.0]] + [[0.0, 1.0]] * (len(prompts) - 1)), dim=-1)


def _scene_with_red_part():
    world = dv.PartsWorld(60, seed=5, n_objects=1)
    for scene in world:
        if any(p.color == "red" for p in scene.parts) and len(scene.parts) >= 3:
            return scene
    pytest.fail("no scene with a red part")


def test_part_importance_finds_the_part_the_model_uses():
    scene = _scene_with_red_part()
    imp = metrics.part_importance(RednessModel(), scene, "anything")
    assert imp.values.shape == (len(scene.parts),)
    red = [i for i, p in enumerate(scene.parts) if p.color == "red"][0]
    assert int(imp.values.argmax()) == red and imp.values[red] > 0
    others = torch.cat([imp.values[:red], imp.values[red + 1:]])
    assert (others.abs() < 1e-3).all()            # removing another part reveals no red: nothing changes
    assert imp.protocol["parts"][red] == (scene.parts[red].object, scene.parts[red].name)


def test_object_importance_and_softmax_needs_a_contrast():
    scene = _scene_with_red_part()
    imp = metrics.object_importance(RednessModel(), scene, "x")
    assert imp.values.shape == (1,) and imp.values[0] > 0
    with pytest.raises(ValueError, match="contrast"):
        metrics.part_importance(RednessModel(), scene, "x", score="softmax")
    soft = metrics.part_importance(RednessModel(), scene, "x", score="softmax", contrast=["y"])
    assert soft.values.shape == (len(scene.parts),)


def test_part_importance_on_a_real_model_matches_scoring_by_hand(tiny_rn):
    scene = dv.PartsWorld(3, seed=1, n_objects=2, size=128)[0]
    imp = metrics.part_importance(tiny_rn, scene, "a photo")
    i = next(i for i, p in enumerate(scene.parts) if sum(q.object == p.object for q in scene.parts) > 1)
    emb = tiny_rn.encode_image([scene.image, scene.without_part(i).image])
    text = tiny_rn.encode_text(["a photo"])
    by_hand = float((emb @ text.T)[0, 0] - (emb @ text.T)[1, 0])
    assert abs(float(imp.values[i]) - by_hand) < 1e-5


def test_part_mass_and_background_mass():
    masks = np.zeros((3, 8, 8), bool)
    masks[0, :4], masks[1, 4:, :4], masks[2, 4:, 4:] = True, True, True
    sal = np.zeros((8, 8))
    sal[:4] = 1.0
    sal[4:, :4] = 3.0
    shares = metrics.part_mass(sal, masks)
    assert torch.allclose(shares, torch.tensor([0.4, 0.6, 0.0], dtype=torch.float32))
    assert metrics.part_mass(np.zeros((8, 8)), masks).sum() == 0
    assert metrics.background_mass(shares, [1.0, 0.0, 0.5]) == pytest.approx(0.6)
    assert metrics.background_mass(shares, [1.0, 0.5, 0.5]) == 0.0
    up = metrics.part_mass(np.kron(sal, np.ones((2, 2))), masks)      # masks follow the map's size
    assert torch.allclose(up, shares)


def test_spearman_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 4, 7).astype(float), rng.normal(size=7)
        if a.std() == 0:
            continue
        assert float(metrics.spearman(a, b)) == pytest.approx(stats.spearmanr(a, b).statistic)
    assert np.isnan(float(metrics.spearman([1, 1, 1], [1, 2, 3])))
    a = np.random.default_rng(1).normal(size=(3, 9))
    assert torch.allclose(metrics.spearman(a, a[::-1].copy()), torch.tensor([float(stats.spearmanr(x, y).statistic) for x, y in zip(a, a[::-1])], dtype=torch.float64).float(), atol=1e-6)
    assert metrics.deletion_rank_correlation([0.1, 0.5, 0.4], [0.0, 2.0, 1.0]) == pytest.approx(1.0)


def test_target_sensitivity():
    mask_a = np.zeros((6, 6), bool)
    mask_a[:, :3] = True
    on_a, on_b = mask_a.astype(float), (~mask_a).astype(float)
    assert metrics.target_sensitivity(on_a, on_b, mask_a)
    assert not metrics.target_sensitivity(on_b, on_a, mask_a)
    assert not metrics.target_sensitivity(on_a, on_a, mask_a)      # the same map for both: not sensitive


def test_component_parts():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2], masks[1, 2:] = True, True
    ossms = np.zeros((3, 4, 4))
    ossms[0, :2] = 1
    ossms[1, 2:] = 1
    out = metrics.component_parts(ossms, masks, weights=[1.0, 0.2, 0.0], importance=[0.5, 0.1])
    assert out["part"].tolist() == [0, 1, -1]
    assert out["weight_importance_correlation"] == pytest.approx(1.0)
    out = metrics.component_parts(ossms, masks, weights=[0.2, 1.0, 0.0], importance=[0.5, 0.1])
    assert out["weight_importance_correlation"] == pytest.approx(-1.0)
