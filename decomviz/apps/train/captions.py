"""Training captions of PartsWorld scenes, object level and part level, fixed by (seed, scene index)."""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from ...data import PALETTE, PARTS, PLURAL_PARTS, Scene, article, object_phrase


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
def _colour_choices(true: str) -> List[str]:
    return [true] + [c for c in PALETTE if c != true]


#: How `part_examples` lays out its texts: the object caption; the attribute caption with the part's true colour,
#: then the same text with each other colour of the palette (its hard negatives); a part that is drawn, then the
#: part that was removed.
PART_EXAMPLE_LAYOUT = ("object", "attribute", *("attribute_negative",) * (len(PALETTE) - 1), "part", "part_negative")
ATTRIBUTE = slice(1, 1 + len(PALETTE))
PART, PART_NEGATIVE = ATTRIBUTE.stop, ATTRIBUTE.stop + 1


def part_examples(scene: Scene, seed: int = 0, variant: int = 0) -> tuple:
    """A training example in which parts decide the match: (scene, texts in `PART_EXAMPLE_LAYOUT`).

    - One part of one object is removed from the scene (`Scene.without_part`), so that the presence of a part is
      something the image shows or does not. The two ``variant`` s (0, 1) of a scene remove two different parts
      of the same object: side by side in a batch, "the {removed part} of a {class}" must match the sibling, which
      still has that part, better than its own image (the image-side contrast of the part-use test).
    - attribute: a drawn part's colour, "a house with a red roof" or "the red roof of a house", followed by the
      same text with every other colour of the palette: the image must rank its true colour first.
    - part: "the door of a house" for a part that is drawn; its negative names the removed part.
    Everything is fixed by (seed, scene.index, variant).
    """
    if variant not in (0, 1):
        raise ValueError(f"variant must be 0 or 1, not {variant!r}")
    index = scene.index
    pair = np.random.default_rng([seed, index, 2])            # shared by both variants
    obj_text, _ = training_captions(scene, seed)
    j = int(pair.integers(len(scene.objects)))
    own = [i for i, p in enumerate(scene.parts) if p.object == j]
    removed_pair = pair.choice(len(own), size=2, replace=False)
    i = own[int(removed_pair[variant])]
    removed = scene.parts[i].name
    scene = scene.without_part(i)
    rng = np.random.default_rng([seed, index, 3, variant])
    label = scene.objects[j].label
    visible = [p for p in scene.parts if p.object == j]
    part = visible[int(rng.integers(len(visible)))]
    if rng.random() < 0.5:
        attribute = [object_phrase(label, {part.name: c}) for c in _colour_choices(part.color)]
    else:
        attribute = [f"the {c} {part.name} of {object_phrase(label, {})}" for c in _colour_choices(part.color)]
    shown = visible[int(rng.integers(len(visible)))].name
    texts = (obj_text, *attribute, f"the {shown} of {object_phrase(label, {})}",
             f"the {removed} of {object_phrase(label, {})}")
    return scene, texts
