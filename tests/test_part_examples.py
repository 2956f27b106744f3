"""The parts recipe's training examples and losses: colour choices over the palette, sibling scenes with different
parts removed, the image-side part contrast, and text encoded on the captions' length only."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from decomviz.apps.train import RECIPES, train  # noqa: E402
from decomviz.apps.train.captions import ATTRIBUTE, PART, PART_EXAMPLE_LAYOUT, PART_NEGATIVE, part_examples  # noqa: E402,E501
from decomviz.apps.train.evaluate import CaptionedScenes  # noqa: E402
from decomviz.apps.train.loop import encode_text_trimmed, hard_negative_loss, sibling_part_loss  # noqa: E402
from decomviz.data import PALETTE, PartsWorld, object_phrase  # noqa: E402


@pytest.fixture(scope="module")
def world():
    return PartsWorld(12, seed=7, size=96, n_objects=(1, 2))


def _removed_part(before, after):
    """The (object, part name) that `after` lacks."""
    names = lambda s: {(p.object, p.name) for p in s.parts}  # noqa: E731
    (gone,) = names(before) - names(after)
    return gone


def test_part_examples_follow_the_layout_and_the_scene(world):
    for m in range(len(world)):
        base = world[m]
        for variant in (0, 1):
            scene, texts = part_examples(base, seed=0, variant=variant)
            assert len(texts) == len(PART_EXAMPLE_LAYOUT)
            assert texts == part_examples(base, seed=0, variant=variant)[1]                    # deterministic
            j, removed = _removed_part(base, scene)
            label = scene.objects[j].label
            assert texts[PART_NEGATIVE] == f"the {removed} of {object_phrase(label, {})}"
            drawn = {p.name: p.color for p in scene.parts if p.object == j}
            assert removed not in drawn
            assert texts[PART] in {f"the {n} of {object_phrase(label, {})}" for n in drawn}
            # the attribute: a drawn part in its true colour first, then the same text with each other colour
            attribute = texts[ATTRIBUTE]
            named = [(n, c) for n, c in drawn.items() if attribute[0] in
                     (object_phrase(label, {n: c}), f"the {c} {n} of {object_phrase(label, {})}")]
            assert len(named) == 1
            name, colour = named[0]
            used = [c for t in attribute for c in PALETTE if f" {c} {name}" in t]
            assert used[0] == colour and sorted(used) == sorted(PALETTE)


def test_the_two_variants_remove_different_parts_of_one_object(world):
    for m in range(len(world)):
        base = world[m]
        (j0, p0), (j1, p1) = (_removed_part(base, part_examples(base, 0, v)[0]) for v in (0, 1))
        assert j0 == j1 and p0 != p1
    with pytest.raises(ValueError, match="variant"):
        part_examples(world[0], 0, 2)


def test_paired_dataset_puts_siblings_side_by_side(world):
    tok = open_clip.tokenizer.SimpleTokenizer(context_length=32)
    data = CaptionedScenes(world, tok, example_fn=part_examples, pairs=True)
    assert len(data) == 2 * len(world)
    a, b = data[6], data[7]                                      # the two variants of scene 3
    assert a[1].shape == (len(PART_EXAMPLE_LAYOUT), 32)
    assert torch.equal(a[1][0], b[1][0])                          # one scene: the same object caption
    assert not torch.equal(a[0], b[0])                            # different parts removed
    with pytest.raises(ValueError, match="example_fn"):
        CaptionedScenes(world, tok, pairs=True)


def _unit(x):
    return torch.nn.functional.normalize(x, dim=-1)


def test_hard_negative_loss_ranks_the_true_text_over_its_own_negatives():
    g = torch.Generator().manual_seed(0)
    image = _unit(torch.randn(6, 16, generator=g))
    negatives = _unit(torch.randn(6, 11, 16, generator=g))
    scale = torch.tensor(20.0)
    good = hard_negative_loss(image, image, negatives, scale)
    bad = hard_negative_loss(image, negatives[:, 0], torch.cat([image[:, None], negatives[:, 1:]], 1), scale)
    assert good < 0.1 < bad
    # one negative each: (B, D) is the same as (B, 1, D)
    assert torch.allclose(hard_negative_loss(image, image, negatives[:, 0], scale),
                          hard_negative_loss(image, image, negatives[:, :1], scale))


def test_sibling_loss_wants_the_removed_part_text_on_the_sibling():
    g = torch.Generator().manual_seed(1)
    image = _unit(torch.randn(8, 16, generator=g))
    sibling = image.reshape(4, 2, 16).flip(1).reshape(8, 16)
    scale = torch.tensor(20.0)
    assert sibling_part_loss(image, sibling, scale) < 0.1 < sibling_part_loss(image, image, scale)
    with pytest.raises(ValueError, match="even"):
        sibling_part_loss(image[:7], sibling[:7], scale)


def test_trimmed_text_encoding_equals_open_clip_encode_text():
    torch.manual_seed(0)
    net = open_clip.CLIP(**RECIPES["parts-rn"]["model_cfg"]).eval()
    tok = open_clip.tokenizer.SimpleTokenizer(context_length=32)
    tokens = tok(["a house", "the red roof of a house next to a car with blue wheels and a yellow door"])
    with torch.no_grad():
        full = net.encode_text(tokens, normalize=True)
        trimmed = encode_text_trimmed(net, tokens)
    assert torch.allclose(full, trimmed, atol=1e-6)


def test_parts_stage_trains_and_needs_an_even_batch(tmp_path, monkeypatch):
    recipe = dict(RECIPES["tiny-rn"], examples="parts", aux_weight=1.0)
    monkeypatch.setitem(RECIPES, "tiny-parts", recipe)
    rec = train("tiny-parts", steps=4, batch_size=8, seed=0, eval_every=0, progress=False, workers=0, save=False)
    assert len(rec["losses"]) == 4 and np.all(np.isfinite(rec["losses"]))
    with pytest.raises(ValueError, match="batch_size must be even"):
        train("tiny-parts", steps=2, batch_size=7, seed=0, eval_every=0, progress=False, workers=0, save=False)


def test_part_example_loss_weighs_the_object_caption():
    from decomviz.apps.train.loop import part_example_loss
    g = torch.Generator().manual_seed(2)
    texts = _unit(torch.randn(len(PART_EXAMPLE_LAYOUT), 8, 16, generator=g))
    image = _unit(torch.randn(8, 16, generator=g))
    scale = torch.tensor(10.0)
    clip = open_clip.ClipLoss()
    one, two = (part_example_loss(image, texts, scale, clip, w) for w in (1.0, 2.0))
    object_loss = clip(image, texts[0], scale)
    rest = 4 * one - object_loss                                 # the three part terms together
    assert torch.allclose(two, (2 * object_loss + rest) / 5, atol=1e-5)


def test_a_stage_may_set_its_own_colour_target_weight():
    from decomviz.apps.train.loop import _plan_stages
    recipe = {"warmup": 0, "aux_weight": 2.0,
              "stages": [{"image_size": 32, "fraction": 1, "aux_weight": 0.5}, {"image_size": 64, "fraction": 1}]}
    assert [st["aux_weight"] for st in _plan_stages(recipe, 10, 64)] == [0.5, 2.0]
