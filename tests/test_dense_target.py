"""The dense part-and-colour target of the parts recipe: its ground truth, its loss, a short run."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from decomviz.apps.train import RECIPES, load_local, train  # noqa: E402
from decomviz.apps.train.auxiliary import (  # noqa: E402
    MAX_PARTS, NOT_DRAWN, SLOTS, DensePartHead, part_area_target)
from decomviz.apps.train.loop import tap_shape, training_targets  # noqa: E402
from decomviz.data import PALETTE, PartsWorld  # noqa: E402

N_JOINT = len(SLOTS) * len(PALETTE)


def _scene():
    return PartsWorld(1, seed=5, n_objects=1, size=112)[0]


def test_part_area_target_names_each_part_and_where_it_lies():
    scene = _scene()
    t = part_area_target(scene, grid=7)
    assert t["classes"].shape == (MAX_PARTS,) and t["areas"].shape == (MAX_PARTS, 7, 7)
    label = scene.objects[0].label
    for k, part in enumerate(scene.parts):
        slot = SLOTS.index((label, part.name))
        assert t["classes"][k] == slot * len(PALETTE) + list(PALETTE).index(part.color)
        # each cell holds the share of its 16 x 16 pixels the part covers
        cells = part.mask.reshape(7, 16, 7, 16).mean(axis=(1, 3))
        np.testing.assert_allclose(t["areas"][k].numpy(), cells, atol=1e-6)
    assert (t["classes"][len(scene.parts):] == NOT_DRAWN).all() and t["areas"][len(scene.parts):].sum() == 0
    # a removed part is no target; a recoloured part changes its class
    assert t["classes"][0] not in part_area_target(scene.without_part(0), 7)["classes"]
    other = next(c for c in PALETTE if c != scene.parts[1].color)
    recoloured = part_area_target(scene.with_part_color(1, other), 7)["classes"][1]
    assert recoloured == SLOTS.index((label, scene.parts[1].name)) * len(PALETTE) + list(PALETTE).index(other)


def test_training_targets_bundle_both_targets():
    scene = _scene()
    both = training_targets(scene, colours=True, grid=7)
    assert set(both) == {"colours", "classes", "areas"}
    assert set(training_targets(scene, colours=True)) == {"colours"}
    assert set(training_targets(scene, colours=False, grid=7)) == {"classes", "areas"}


def test_dense_loss_counts_each_part_alike_whatever_its_size():
    head = DensePartHead(N_JOINT)
    torch.nn.init.zeros_(head.conv.bias)
    with torch.no_grad():
        head.conv.weight.copy_(torch.eye(N_JOINT)[..., None, None])
    classes = torch.full((1, MAX_PARTS), NOT_DRAWN)
    classes[0, :2] = torch.tensor([3, 40])
    areas = torch.zeros(1, MAX_PARTS, 4, 4)
    areas[0, 0] = 1.0                    # a large part over every cell
    areas[0, 1, 0, 0] = 0.1              # a small part in a tenth of one cell
    # features that name the large part everywhere, strongly: its loss is about 0, the small part's is large
    features = torch.zeros(1, N_JOINT, 4, 4)
    features[0, 3] = 30.0
    loss = head.loss(features, classes, areas)
    assert loss.item() == pytest.approx(30.0 / 2, rel=1e-3)     # (0 + 30) / 2: the small part weighs half
    # a head that knows nothing scores log(n classes) on every part
    torch.nn.init.zeros_(head.conv.weight)
    assert head.loss(torch.randn(1, N_JOINT, 4, 4), classes, areas).item() == pytest.approx(np.log(N_JOINT), abs=1e-5)


def test_dense_loss_says_when_the_grid_does_not_match():
    head = DensePartHead(8)
    t = part_area_target(_scene(), grid=7)
    with pytest.raises(ValueError, match="tapped layer's grid"):
        head.loss(torch.zeros(1, 8, 14, 14), t["classes"][None], t["areas"][None])


def test_too_many_parts_is_a_clear_error():
    crowded = PartsWorld(4, seed=1, n_objects=8, size=112)
    scene = max((crowded[i] for i in range(4)), key=lambda s: len(s.parts))
    assert len(scene.parts) > MAX_PARTS
    with pytest.raises(ValueError, match="at most"):
        part_area_target(scene, 7)


def test_tap_shape_reads_the_layer_grid():
    import open_clip
    net = open_clip.CLIP(**RECIPES["tiny-rn"]["model_cfg"])
    assert tap_shape(net, "visual.layer3", 64) == (128, 4)     # width 8: layer3 has 16 * 8 channels, stride 16
    assert not net.visual.layer3._forward_hooks


def test_dense_target_trains_and_is_not_saved(tmp_path, monkeypatch):
    recipe = dict(RECIPES["tiny-rn"], dense_layer="visual.layer3", dense_weight=1.0)
    monkeypatch.setitem(RECIPES, "tiny-dense", recipe)
    rec = train("tiny-dense", steps=30, batch_size=16, seed=0, out=tmp_path / "dense", eval_every=0,
                progress=False, workers=0, final_eval=False)
    assert len(rec["dense_losses"]) == 30 and rec["dense_layer"] == "visual.layer3"
    assert rec["aux_losses"] == []                     # the two heads are independent
    assert np.mean(rec["dense_losses"][-5:]) < np.mean(rec["dense_losses"][:5])
    assert not rec["model_object"].visual.layer3._forward_hooks      # the tap's hook is gone after training
    model, _, _ = load_local(tmp_path / "dense")       # a plain open_clip CLIP: the head is not in it
    assert not any(k.startswith("conv.") for k in model.state_dict())


def test_dense_weight_without_a_layer_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(RECIPES, "tiny-bad", dict(RECIPES["tiny-rn"], dense_weight=1.0))
    with pytest.raises(ValueError, match="no dense_layer"):
        train("tiny-bad", steps=2, batch_size=4, out=tmp_path / "bad", eval_every=0, progress=False, workers=0,
              final_eval=False)


def test_the_dense_recipe_taps_a_14_by_14_layer_of_parts_rn():
    import open_clip
    recipe = RECIPES["parts-rn-dense"]

    def shared(r):
        return {k: v for k, v in r.items() if k not in ("steps", "stages", "dense_layer", "dense_weight", "why")}
    assert shared(recipe) == shared(RECIPES["parts-rn"])     # recipe 6 with the dense target and its own stages
    assert "dense_layer" not in RECIPES["parts-rn"]
    net = open_clip.CLIP(**recipe["model_cfg"])
    assert tap_shape(net, recipe["dense_layer"], 224) == (256, 14)
