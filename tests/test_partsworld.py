"""PartsWorld: determinism, random access, exact masks, captions that parse back, configuration."""
from __future__ import annotations

import numpy as np
import pytest

from decomviz.data import CLASSES, PALETTE, PartsWorld, parse_caption, partsworld_collate
from decomviz.data.partsworld import PARTS, object_phrase


def _same_scene(a, b) -> bool:
    return (a.image.tobytes() == b.image.tobytes() and a.caption == b.caption
            and [o.label for o in a.objects] == [o.label for o in b.objects]
            and all(np.array_equal(p.mask, q.mask) and p.name == q.name for p, q in zip(a.parts, b.parts))
            and len(a.parts) == len(b.parts))


@pytest.fixture(scope="module")
def multi():
    world = PartsWorld(60, seed=3, n_objects=(1, 3))
    return world, [world[i] for i in range(len(world))]


def test_world_attributes():
    w = PartsWorld(5)
    assert len(w) == 5
    assert len(w.classes) >= 10 and w.classes == CLASSES
    for c in w.classes:
        assert 2 <= len(w.parts[c]) <= 5, c
        assert len(set(w.parts[c])) == len(w.parts[c])
    assert set(w.colors) == {"red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "white",
                             "black", "gray", "cyan"}
    assert all(len(rgb) == 3 for rgb in w.colors.values())
    # caption vocabulary: class names, colour names and part names never collide
    part_words = {p for ps in PARTS.values() for p in ps}
    assert not (set(CLASSES) & part_words) and not (set(PALETTE) & part_words) and not (set(CLASSES) & set(PALETTE))
    assert all(" " not in p for p in part_words)


def test_determinism_same_seed():
    a, b = PartsWorld(8, seed=11, n_objects=(1, 3)), PartsWorld(8, seed=11, n_objects=(1, 3))
    for i in range(8):
        assert _same_scene(a[i], b[i])
    assert _same_scene(a[2], a[2])  # rendering twice from the same object too


def test_different_seed_or_index_differs():
    a, b = PartsWorld(6, seed=0), PartsWorld(6, seed=1)
    assert sum(a[i].image.tobytes() != b[i].image.tobytes() for i in range(6)) == 6
    assert a[0].image.tobytes() != a[1].image.tobytes()


def test_random_access_order_independent():
    w = PartsWorld(20, seed=5, n_objects=(1, 3))
    forward = [w[i] for i in range(20)]
    backward = {i: w[i] for i in reversed(range(20))}
    w2 = PartsWorld(20, seed=5, n_objects=(1, 3))
    shuffled = {i: w2[i] for i in np.random.default_rng(0).permutation(20)}
    for i in range(20):
        assert _same_scene(forward[i], backward[i])
        assert _same_scene(forward[i], shuffled[i])
        assert forward[i].index == i
    # a world of a different length draws the same scene i
    assert _same_scene(PartsWorld(100, seed=5, n_objects=(1, 3))[7], forward[7])


def test_index_errors():
    w = PartsWorld(3)
    for bad in (3, 10, -1, -3):
        with pytest.raises(IndexError):
            w[bad]
    with pytest.raises(TypeError):
        w["0"]
    assert len(list(w)) == 3
    assert [s.index for s in w[0:2]] == [0, 1]


def test_masks_consistent(multi):
    world, scenes = multi
    for s in scenes:
        H = W = world.size
        assert s.image.size == (W, H) and s.image.mode == "RGB"
        img = np.asarray(s.image)
        seen = np.zeros((H, W), dtype=np.int32)
        for p in s.parts:
            assert p.mask.shape == (H, W) and p.mask.dtype == bool
            assert p.mask.any(), f"part {p.name} of scene {s.index} is invisible"
            assert 0 <= p.object < len(s.objects)
            assert p.name in world.parts[s.objects[p.object].label]
            assert not (p.mask & ~s.objects[p.object].mask).any()     # part inside its object
            seen += p.mask
            # every visible pixel of a part has exactly its palette colour
            assert p.color == s.objects[p.object].colors[p.name]
            assert (img[p.mask] == np.array(world.colors[p.color], dtype=np.uint8)).all()
        assert seen.max() <= 1                                           # parts are disjoint
        union = np.zeros((H, W), dtype=bool)
        for k, o in enumerate(s.objects):
            assert o.label in world.classes
            assert set(o.colors) == set(world.parts[o.label])
            assert len(set(o.colors.values())) == len(o.colors)         # distinct colours within an object
            own = np.zeros((H, W), dtype=bool)
            for p in s.parts:
                if p.object == k:
                    own |= p.mask
            assert np.array_equal(own, o.mask)                           # object == union of its parts
            assert not (union & o.mask).any()                            # objects are disjoint
            union |= o.mask
            x0, y0, x1, y1 = o.bbox
            ys, xs = np.nonzero(o.mask)
            assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
        assert not (s.distractor_mask & union).any()
        lm = s.label_map("object")
        assert np.array_equal(lm >= 0, union)
        assert set(np.unique(s.label_map("part"))) <= set(range(-1, len(s.parts)))


def test_mask_is_exactly_what_was_drawn():
    # without distractors, the pixels next to each object that are not in its mask are background: the
    # object's outline pixels all carry part colours, so a mask that missed drawn pixels would fail here.
    w = PartsWorld(10, seed=8, n_objects=(1, 3), distractors=False)
    for s in (w[i] for i in range(10)):
        img = np.asarray(s.image).astype(int)
        pal = np.array(list(w.colors.values()))
        union = s.label_map("object") >= 0
        # dilate the union by one pixel: the ring around objects must not be a part colour of that scene
        ring = np.zeros_like(union)
        ring[1:] |= union[:-1]
        ring[:-1] |= union[1:]
        ring[:, 1:] |= union[:, :-1]
        ring[:, :-1] |= union[:, 1:]
        ring &= ~union
        used = np.array([w.colors[p.color] for p in s.parts])
        d = np.abs(img[ring][:, None, :] - used[None]).sum(-1).min(1)
        assert (d > 0).mean() > 0.99, s.index
        assert pal.shape == (12, 3)


def test_distractors_present_and_off():
    on = PartsWorld(40, seed=2, distractors=True)
    off = PartsWorld(40, seed=2, distractors=False)
    assert sum(on[i].distractor_mask.any() for i in range(40)) > 10
    assert not any(off[i].distractor_mask.any() for i in range(40))


def test_captions_parse_back(multi):
    world, scenes = multi
    for s in scenes:
        parsed = parse_caption(s.caption)
        assert [c for c, _ in parsed] == [o.label for o in s.objects], s.caption
        for (cls, attrs), o in zip(parsed, s.objects):
            assert attrs, s.caption                                     # some part attribute is named
            for part, colour in attrs.items():
                assert o.colors[part] == colour, s.caption
    assert parse_caption("a house with a red roof and a blue door next to a car with black wheels") == [
        ("house", {"roof": "red", "door": "blue"}), ("car", {"wheels": "black"})]
    assert object_phrase("car", {"lights": "orange", "cabin": "orange"}) == \
        "a car with orange lights and an orange cabin"
    with pytest.raises(ValueError):
        parse_caption("a house with a red wheels")


def test_n_objects_range_and_size():
    w = PartsWorld(60, seed=1, size=160, n_objects=(1, 3))
    counts = [len(w[i].objects) for i in range(60)]
    assert set(counts) == {1, 2, 3}
    assert w[0].image.size == (160, 160) and w[0].objects[0].mask.shape == (160, 160)
    assert all(len(PartsWorld(5, seed=9, n_objects=2)[i].objects) == 2 for i in range(5))
    sub = PartsWorld(10, seed=0, classes=["fish", "boat"])
    assert {sub[i].objects[0].label for i in range(10)} <= {"fish", "boat"}
    assert sub.classes == ["fish", "boat"] and set(sub.parts) == {"fish", "boat"}
    for bad in [dict(n_objects=0), dict(n_objects=(3, 1)), dict(classes=["unicorn"]), dict(size=8), dict(n=-1)]:
        kw = dict(n=3)
        kw.update(bad)
        with pytest.raises(ValueError):
            PartsWorld(**kw)


def test_all_classes_appear_and_render():
    w = PartsWorld(150, seed=4)
    seen = {w[i].objects[0].label for i in range(150)}
    assert seen == set(CLASSES)


def test_dataloader_workers_identical():
    pytest.importorskip("torch")
    from torch.utils.data import DataLoader
    w = PartsWorld(12, seed=6, n_objects=(1, 2))
    batches = list(DataLoader(w, batch_size=4, num_workers=2, collate_fn=partsworld_collate))
    assert [len(b["images"]) for b in batches] == [4, 4, 4]
    flat = [s for b in batches for s in b["scenes"]]
    assert [s.index for s in flat] == list(range(12))
    for s in flat:
        assert _same_scene(s, w[s.index])
    assert batches[0]["captions"][0] == w[0].caption
    assert batches[0]["labels"][0] == [o.label for o in w[0].objects]
