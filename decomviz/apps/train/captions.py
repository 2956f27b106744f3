"""Training captions of PartsWorld scenes, object level and part level, fixed by (seed, scene index)."""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from ...data import PARTS, PLURAL_PARTS, Scene, article, object_phrase


def _join(phrases: List[str], rng: np.random.Generator) -> str:
    joins = (" and ", " next to ", ", ")
    text = phrases[0]
    for ph in phrases[1:]:
        text += joins[int(rng.integers(len(joins)))] + ph
    return text


def _part_level_phrase(label: str, colors: Dict[str, str], rng: np.random.Generator) -> str:
    """One object described through its parts, or now and then by its name alone."""
    names = PARTS[label]
    r = rng.random()
    if r < 0.2:                                              # "a house"
        return object_phrase(label, {})
    if r < 0.65:                                             # "a house with a red roof (and a blue door)"
        k = int(rng.integers(1, min(2, len(names)) + 1))
        pick = sorted(rng.choice(len(names), size=k, replace=False).tolist())
        return object_phrase(label, {names[q]: colors[names[q]] for q in pick})
    part = names[int(rng.integers(len(names)))]               # "the (red) roof of a house"
    col = colors[part] + " " if rng.random() < 0.6 else ""
    return f"the {col}{part} of {object_phrase(label, {})}"


def training_captions(scene: Scene, seed: int = 0) -> tuple:
    """Two captions for a training scene, fixed by (seed, scene.index): (object level, part level).

    Object level names every object: "a photo of a house and a car". Part level mixes "a house with a red
    roof", "the wheels of a car", the scene's own PartsWorld caption and, now and then, a bare part
    ("a red roof"). Training pairs each image with both, so class words and part words are both grounded.
    """
    rng = np.random.default_rng([seed, scene.index, 1])
    objs = scene.objects
    order = list(range(len(objs)))
    rng.shuffle(order)
    obj_text = _join([object_phrase(objs[k].label, {}) for k in order], rng)
    if rng.random() < 0.7:
        obj_text = "a photo of " + obj_text
    r = rng.random()
    if r < 0.1:                                              # a bare part of one object: "a red roof"
        o = objs[int(rng.integers(len(objs)))]
        part = PARTS[o.label][int(rng.integers(len(PARTS[o.label])))]
        col = o.colors[part]
        part_text = f"{col} {part}" if part in PLURAL_PARTS else f"{article(col)} {col} {part}"
    elif r < 0.25:                                           # the scene's own canonical caption
        part_text = scene.caption
    else:
        if rng.random() < 0.5:
            rng.shuffle(order)
        part_text = _join([_part_level_phrase(objs[k].label, objs[k].colors, rng) for k in order], rng)
    if rng.random() < 0.3:
        part_text = "a photo of " + part_text
    return obj_text, part_text


def training_caption(scene: Scene, seed: int = 0) -> str:
    """The part-level caption of :func:`training_captions`."""
    return training_captions(scene, seed)[1]


# ----------------------------------------------------------------------------------------------- parts recipe
#: How `part_examples` lays out its texts: object caption, then (positive, hard negative) pairs.
PART_EXAMPLE_LAYOUT = ("object", "attribute", "attribute_negative", "part", "part_negative")


def part_examples(scene: Scene, seed: int = 0, remove_part: float = 0.7) -> tuple:
    """A training example in which parts decide the match: (scene, texts in `PART_EXAMPLE_LAYOUT`).

    - With probability ``remove_part`` one part of one object is removed from the scene (`Scene.without_part`),
      so that the presence of a part is something the image shows or does not.
    - attribute: a part's colour, "a house with a red roof" or "the red roof of a house"; its hard negative is the
      same text with another colour (half the time the colour of another part of the same object, so that the
      colour must be bound to the right part).
    - part: "the door of a house" for a part that is drawn; its hard negative names the removed part, or, when
      nothing was removed, the same part of a class that is not in the scene.
    Everything is fixed by (seed, scene.index).
    """
    from ...data import CLASSES, PALETTE
    rng = np.random.default_rng([seed, scene.index, 2])
    obj_text, _ = training_captions(scene, seed)
    removed = None
    j = int(rng.integers(len(scene.objects)))
    if rng.random() < remove_part:
        own = [i for i, p in enumerate(scene.parts) if p.object == j]
        if len(own) > 1:
            i = own[int(rng.integers(len(own)))]
            removed = scene.parts[i].name
            scene = scene.without_part(i)
    obj = scene.objects[j]
    visible = [p for p in scene.parts if p.object == j]
    part = visible[int(rng.integers(len(visible)))]
    true = part.color
    siblings = [p.color for p in visible if p.color != true]
    if siblings and rng.random() < 0.5:
        wrong = siblings[int(rng.integers(len(siblings)))]
    else:
        others = [c for c in PALETTE if c != true]
        wrong = others[int(rng.integers(len(others)))]
    if rng.random() < 0.5:
        attr, attr_neg = (object_phrase(obj.label, {part.name: c}) for c in (true, wrong))
    else:
        attr, attr_neg = (f"the {c} {part.name} of {object_phrase(obj.label, {})}" for c in (true, wrong))
    shown = visible[int(rng.integers(len(visible)))].name
    part_text = f"the {shown} of {object_phrase(obj.label, {})}"
    if removed is not None:
        part_neg = f"the {removed} of {object_phrase(obj.label, {})}"
    else:
        absent = [c for c in CLASSES if c not in {o.label for o in scene.objects} and shown in PARTS[c]]
        absent = absent or [c for c in CLASSES if c not in {o.label for o in scene.objects}]
        other = absent[int(rng.integers(len(absent)))]
        name = shown if shown in PARTS[other] else PARTS[other][int(rng.integers(len(PARTS[other])))]
        part_neg = f"the {name} of {object_phrase(other, {})}"
    return scene, (obj_text, attr, attr_neg, part_text, part_neg)
