"""PartsWorld interventions: a scene rendered again without a part, without an object or with a part
recoloured. Pixels the change does not touch stay exactly the same; masks and captions follow."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from decomviz.data import PALETTE, PartsWorld, Scene, parse_caption


def _scenes():
    worlds = [PartsWorld(10, seed=3, n_objects=(1, 3)),
              PartsWorld(6, seed=21, size=160, n_objects=(2, 4), caption_parts=(1, 4)),
              PartsWorld(6, seed=5, n_objects=1, rotation=40.0),
              PartsWorld(4, seed=8, size=96, n_objects=(1, 2), distractors=False)]
    return [w[i] for w in worlds for i in range(len(w))]


SCENES = _scenes()


def _px(scene) -> np.ndarray:
    return np.asarray(scene.image)


def _background(scene) -> np.ndarray:
    return np.asarray(scene.drawing.background.image())


def _same(a, b) -> bool:
    return (a.image.tobytes() == b.image.tobytes() and a.caption == b.caption
            and len(a.parts) == len(b.parts) and len(a.objects) == len(b.objects)
            and all(p.name == q.name and p.object == q.object and p.color == q.color
                    and np.array_equal(p.mask, q.mask) for p, q in zip(a.parts, b.parts))
            and all(o.label == q.label and o.colors == q.colors and np.array_equal(o.mask, q.mask)
                    for o, q in zip(a.objects, b.objects))
            and np.array_equal(a.distractor_mask, b.distractor_mask))


def _one_cut(old: str, new: str) -> bool:
    """Whether `new` is `old` with one contiguous piece cut out (the rest of the caption kept word for word)."""
    pre = len(os.path.commonprefix([old, new]))
    suf = len(os.path.commonprefix([old[::-1], new[::-1]]))
    return len(new) < len(old) and pre + suf >= len(new)


def _removable(scene, i) -> bool:
    return sum(p.object == scene.parts[i].object for p in scene.parts) > 1


def test_background_record_is_what_shows_between_objects():
    # the oracle the other tests use: where no object or distractor is drawn, the image is the background
    for s in SCENES:
        free = (s.label_map("object") < 0) & ~s.distractor_mask
        assert np.array_equal(_px(s)[free], _background(s)[free])


def test_without_part():
    revealed_part = revealed_background = 0
    for s in SCENES:
        img, bg, old = _px(s), _background(s), parse_caption(s.caption)
        for i, gone in enumerate(s.parts):
            if not _removable(s, i):
                continue
            t = s.without_part(i)
            new = _px(t)
            k, removed = gone.object, gone.mask
            # outside the removed part nothing changes
            assert np.array_equal(new[~removed], img[~removed])
            # the other parts keep their order, names, colours; masks only gain pixels of the removed part
            rest = s.parts[:i] + s.parts[i + 1:]
            assert [(p.name, p.object, p.color) for p in t.parts] == [(p.name, p.object, p.color) for p in rest]
            gained_any = np.zeros_like(removed)
            for q, (p_old, p_new) in enumerate(zip(rest, t.parts)):
                assert not (p_old.mask & ~p_new.mask).any()
                gained = p_new.mask & ~p_old.mask
                assert not (gained & ~removed).any()
                if gained.any():    # only an earlier part of the same object shows through
                    assert p_new.object == k and q < i
                    assert (new[gained] == np.array(PALETTE[p_new.color], dtype=np.uint8)).all()
                    revealed_part += 1
                gained_any |= gained
            # the rest of the removed part is background now, in no mask
            bare = removed & ~gained_any
            assert np.array_equal(new[bare], bg[bare])
            assert (t.label_map("object")[bare] == -1).all() and not t.distractor_mask[bare].any()
            revealed_background += bool(bare.any())
            # object masks: object k loses the bare pixels, the others are unchanged
            for j, (o_old, o_new) in enumerate(zip(s.objects, t.objects)):
                assert o_new.label == o_old.label and o_new.bbox == o_old.bbox
                if j == k:
                    assert np.array_equal(o_new.mask, o_old.mask & ~bare)
                    assert o_new.colors == {n: c for n, c in o_old.colors.items() if n != gone.name}
                else:
                    assert np.array_equal(o_new.mask, o_old.mask) and o_new.colors == o_old.colors
                own = np.zeros_like(removed)
                for p in t.parts:
                    if p.object == j:
                        own |= p.mask
                assert np.array_equal(own, o_new.mask)
            assert np.array_equal(t.distractor_mask, s.distractor_mask)
            # the caption forgets the part, and only that
            parsed = parse_caption(t.caption)
            assert [c for c, _ in parsed] == [c for c, _ in old] == t.labels
            for j, ((_, a_new), (_, a_old)) in enumerate(zip(parsed, old)):
                want = {n: c for n, c in a_old.items() if not (j == k and n == gone.name)}
                assert a_new == want, (s.caption, t.caption)
                assert all(t.objects[j].colors[n] == c for n, c in a_new.items())
            assert t.caption == s.caption if gone.name not in old[k][1] else _one_cut(s.caption, t.caption)
    assert revealed_part > 5 and revealed_background > 20       # both kinds of reveal were exercised


def test_without_object():
    for s in SCENES:
        img, bg, old = _px(s), _background(s), parse_caption(s.caption)
        for j, gone in enumerate(s.objects):
            t = s.without_object(j)
            new = _px(t)
            assert np.array_equal(new[~gone.mask], img[~gone.mask])
            assert np.array_equal(new[gone.mask], bg[gone.mask])           # the background shows
            assert (t.label_map("object")[gone.mask] == -1).all()
            assert np.array_equal(t.distractor_mask, s.distractor_mask)
            kept = s.objects[:j] + s.objects[j + 1:]
            assert t.labels == [o.label for o in kept]
            for o_old, o_new in zip(kept, t.objects):
                assert np.array_equal(o_new.mask, o_old.mask) and o_new.colors == o_old.colors
            rest = [p for p in s.parts if p.object != j]
            assert len(t.parts) == len(rest)
            for p_old, p_new in zip(rest, t.parts):
                assert p_new.object == (p_old.object if p_old.object < j else p_old.object - 1)
                assert p_new.name == p_old.name and p_new.color == p_old.color
                assert np.array_equal(p_new.mask, p_old.mask)
            assert parse_caption(t.caption) == old[:j] + old[j + 1:], (s.caption, t.caption)
            assert (t.caption == "") == (not t.objects) and _one_cut(s.caption, t.caption)


def test_remove_every_object():
    for s in SCENES[:8]:
        t = s
        while t.objects:
            t = t.without_object(len(t.objects) - 1)
        assert t.caption == "" and t.parts == [] and parse_caption(t.caption) == []
        union = s.label_map("object") >= 0
        assert np.array_equal(_px(t)[union], _background(s)[union])
        assert np.array_equal(_px(t)[~union], _px(s)[~union])


def test_with_part_color():
    names = list(PALETTE)
    assert len({PALETTE[n] for n in names}) == len(names)             # distinct RGBs: a recolour is visible
    for n_scene, s in enumerate(SCENES):
        img, old = _px(s), parse_caption(s.caption)
        for i, part in enumerate(s.parts):
            own = s.objects[part.object].colors
            # a colour new to the object, and (every other part) one a sibling part already has
            choices = [next(c for c in names[n_scene % len(names):] + names if c not in own.values())]
            if i % 2:
                choices.append(next(c for n, c in own.items() if n != part.name))
            for color in choices:
                t = s.with_part_color(i, color)
                new = _px(t)
                changed = (new != img).any(-1)
                assert np.array_equal(changed, part.mask)                 # exactly the part's pixels change
                assert (new[part.mask] == np.array(PALETTE[color], dtype=np.uint8)).all()
                assert all(np.array_equal(p.mask, q.mask) for p, q in zip(s.parts, t.parts))
                assert all(np.array_equal(o.mask, q.mask) for o, q in zip(s.objects, t.objects))
                assert t.parts[i].color == color
                assert [p.color for q, p in enumerate(t.parts) if q != i] == \
                       [p.color for q, p in enumerate(s.parts) if q != i]
                assert t.objects[part.object].colors == {**own, part.name: color}
                parsed = parse_caption(t.caption)
                k = part.object
                if part.name in old[k][1]:
                    assert parsed[k][1] == {**old[k][1], part.name: color}
                    assert parsed[:k] + parsed[k + 1:] == old[:k] + old[k + 1:]
                else:
                    assert t.caption == s.caption


def test_deterministic_and_original_untouched():
    world = PartsWorld(6, seed=13, n_objects=(2, 3))
    for idx in range(len(world)):
        s = world[idx]
        before = (s.image.tobytes(), s.caption, [p.mask.copy() for p in s.parts], [o.mask.copy() for o in s.objects])
        i = next(q for q in range(len(s.parts)) if _removable(s, q))
        for make in (lambda sc: sc.without_part(i), lambda sc: sc.without_object(1),
                     lambda sc: sc.with_part_color(0, "cyan" if s.parts[0].color != "cyan" else "red")):
            a, b = make(s), make(s)
            assert _same(a, b)
            assert _same(a, make(world[idx]))            # same scene rendered again: same intervention
            assert _same(a, make(pickle.loads(pickle.dumps(s))))   # DataLoader workers pickle scenes
            assert a.index == s.index and a.seed == s.seed
        assert s.image.tobytes() == before[0] and s.caption == before[1]
        assert all(np.array_equal(p.mask, m) for p, m in zip(s.parts, before[2]))
        assert all(np.array_equal(o.mask, m) for o, m in zip(s.objects, before[3]))
        # the identity intervention re-renders the original exactly
        assert _same(s.with_part_color(0, s.parts[0].color), s)


def test_interventions_compose():
    for s in (sc for sc in SCENES if len(sc.objects) >= 2):
        first = [q for q, p in enumerate(s.parts) if p.object == 0]
        second = [q for q, p in enumerate(s.parts) if p.object == 1]
        # on different objects, order does not matter (indices shift with the removal)
        a = s.without_object(0).with_part_color(second[0] - len(first), "white")
        b = s.with_part_color(second[0], "white").without_object(0)
        assert _same(a, b)
        a = s.without_part(first[-1]).without_part(second[-1] - 1)
        b = s.without_part(second[-1]).without_part(first[-1])
        assert _same(a, b)


def test_bad_input():
    s = next(sc for sc in SCENES if len(sc.objects) == 2)
    n_parts, n_objects = len(s.parts), len(s.objects)
    for bad in (n_parts, n_parts + 5, -1):
        for call in (lambda: s.without_part(bad), lambda: s.with_part_color(bad, "red")):
            with pytest.raises(IndexError, match=f"0..{n_parts - 1}"):
                call()
    for bad in (n_objects, -1, 99):
        with pytest.raises(IndexError, match=f"0..{n_objects - 1}"):
            s.without_object(bad)
    for bad in ("0", 1.0, None):
        with pytest.raises(TypeError):
            s.without_part(bad)
    for bad in ("magenta", "Red", "", None, (220, 40, 40)):
        with pytest.raises(ValueError, match="red, green, blue, .*gray, cyan") as info:
            s.with_part_color(0, bad)
        assert all(c in str(info.value) for c in PALETTE)
    # the last part of an object cannot go alone: the message points to without_object
    t = s
    while sum(p.object == 0 for p in t.parts) > 1:
        t = t.without_part(0)
    with pytest.raises(ValueError, match=r"without_object\(0\)"):
        t.without_part(0)
    # an empty scene has nothing left to index
    empty = s.without_object(0).without_object(0)
    with pytest.raises(IndexError, match="no objects"):
        empty.without_object(0)
    with pytest.raises(IndexError, match="no parts"):
        empty.without_part(0)
    # a scene not made by a PartsWorld has no drawing to render again
    bare = Scene(index=0, image=s.image, caption=s.caption, objects=s.objects, parts=s.parts)
    for call in (lambda: bare.without_part(0), lambda: bare.without_object(0), lambda: bare.with_part_color(0, "red")):
        with pytest.raises(ValueError, match="PartsWorld"):
            call()
