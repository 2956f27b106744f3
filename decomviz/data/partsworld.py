"""PartsWorld: synthetic scenes of simple objects made of named, coloured parts, with exact masks.

Every scene is drawn with numpy and PIL from ``np.random.default_rng([seed, index])`` alone, so
``world[i]`` is the same scene whatever order or process asks for it (DataLoader workers included).

Ground truth per scene: one boolean mask per object and per *visible* part (a later part drawn over
an earlier part of the same object takes those pixels), the class of each object, the colour name of
each part, and a caption such as ``"a house with a red roof and a blue door next to a car with black
wheels"`` that :func:`parse_caption` turns back into ``[("house", {"roof": "red", "door": "blue"}),
("car", {"wheels": "black"})]``.

Objects never overlap each other and distractor blobs (shapes that belong to no object and to no
mask) never overlap objects, so an object's mask is exactly the pixels drawn for it. Parts are drawn
flat in their palette colour, without anti-aliasing: every pixel of a part mask has exactly the RGB of
``world.colors[part.color]``.

>>> world = PartsWorld(100, seed=0, n_objects=(1, 3))
>>> scene = world[7]
>>> scene.image.size, scene.caption                                    # doctest: +SKIP
((224, 224), 'a fish with a red tail next to a lamp with a blue shade')
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageChops, ImageDraw

__all__ = [
    "PALETTE", "CLASSES", "PARTS", "object_phrase", "PartsWorld", "Scene", "SceneObject", "ScenePart",
    "parse_caption", "partsworld_collate",
]

# ----------------------------------------------------------------------------------------------
# palette

PALETTE: Dict[str, Tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 220, 40),
    "orange": (245, 140, 30),
    "purple": (140, 60, 190),
    "pink": (245, 130, 190),
    "brown": (130, 80, 40),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "cyan": (40, 210, 220),
}

# ----------------------------------------------------------------------------------------------
# shape primitives, in an object frame where the object spans about [-1, 1] x [-1, 1], y pointing down

Poly = np.ndarray  # (N, 2) float vertices


def _rect(x0: float, y0: float, x1: float, y1: float) -> Poly:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28, rot: float = 0.0,
             a0: float = 0.0, a1: float = 2 * math.pi) -> Poly:
    """Ellipse (or the sector-free arc a0..a1 closed by its chord) as a polygon, rotated by rot radians."""
    closed = abs((a1 - a0) - 2 * math.pi) < 1e-9
    t = np.linspace(a0, a1, n, endpoint=not closed)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(rot), math.sin(rot)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _circle(cx: float, cy: float, r: float, n: int = 24) -> Poly:
    return _ellipse(cx, cy, r, r, n)


def _poly(*pts: Tuple[float, float]) -> Poly:
    return np.asarray(pts, dtype=np.float64)


def _mirror(p: Poly) -> Poly:
    q = p.copy()
    q[:, 0] = -q[:, 0]
    return q


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


# Each builder returns the parts in drawing order: [(part name, [polygons]), ...]. Later parts cover
# earlier ones. Small random proportions keep instances of a class from being identical.
PartList = List[Tuple[str, List[Poly]]]


def _house(rng: np.random.Generator) -> PartList:
    top = _u(rng, -0.2, 0.0)
    peak = _u(rng, -1.0, -0.8)
    wx = _u(rng, 0.7, 0.85)
    dx = _u(rng, -0.45, -0.15) * (1 if rng.random() < 0.5 else -1)
    wxc = -0.45 if dx > 0 else 0.45
    return [
        ("wall", [_rect(-wx, top, wx, 1.0)]),
        ("roof", [_poly((-1.0, top), (1.0, top), (0.0, peak))]),
        ("door", [_rect(dx - 0.17, 0.45, dx + 0.17, 1.0)]),
        ("window", [_rect(wxc - 0.17, top + 0.25, wxc + 0.17, top + 0.55)]),
    ]


def _car(rng: np.random.Generator) -> PartList:
    r = _u(rng, 0.24, 0.3)
    ct = _u(rng, -0.65, -0.5)
    return [
        ("cabin", [_poly((-0.6, 0.0), (-0.35, ct), (0.35, ct), (0.65, 0.0))]),
        ("body", [_rect(-1.0, -0.05, 1.0, 0.5)]),
        ("wheels", [_circle(-0.55, 0.5, r), _circle(0.55, 0.5, r)]),
        ("lights", [_rect(0.82, 0.02, 0.97, 0.17)]),
    ]


def _tree(rng: np.random.Generator) -> PartList:
    rx, ry = _u(rng, 0.6, 0.8), _u(rng, 0.55, 0.7)
    cy = -0.3
    fruit = []
    for ang in rng.uniform(0, 2 * math.pi, size=3):
        rad = _u(rng, 0.2, 0.5)
        fruit.append(_circle(rad * rx * math.cos(ang), cy + rad * ry * math.sin(ang), 0.1, 14))
    return [
        ("trunk", [_rect(-0.14, 0.1, 0.14, 1.0)]),
        ("crown", [_ellipse(0.0, cy, rx, ry)]),
        ("fruit", fruit),
    ]


def _snowman(rng: np.random.Generator) -> PartList:
    rb = _u(rng, 0.36, 0.42)
    return [
        ("base", [_circle(0.0, 1.0 - rb, rb, 32)]),
        ("body", [_circle(0.0, 0.05, 0.3, 28)]),
        ("head", [_circle(0.0, -0.42, 0.2, 24)]),
        ("hat", [_rect(-0.3, -0.6, 0.3, -0.53), _rect(-0.17, -0.95, 0.17, -0.58)]),
    ]


def _rocket(rng: np.random.Generator) -> PartList:
    hw = _u(rng, 0.22, 0.28)
    fl = _u(rng, 0.85, 1.0)
    return [
        ("flame", [_poly((-0.17, 0.5), (0.17, 0.5), (0.0, fl))]),
        ("fins", [_poly((-hw, 0.05), (-hw - 0.32, 0.6), (-hw, 0.5)),
                  _mirror(_poly((-hw, 0.05), (-hw - 0.32, 0.6), (-hw, 0.5)))]),
        ("hull", [_rect(-hw, -0.45, hw, 0.55)]),
        ("nose", [_poly((-hw, -0.45), (hw, -0.45), (0.0, -0.98))]),
        ("window", [_circle(0.0, -0.12, 0.12, 18)]),
    ]


def _flower(rng: np.random.Generator) -> PartList:
    cy = -0.45
    n = int(rng.integers(5, 8))
    a0 = _u(rng, 0, 2 * math.pi)
    petals = []
    for k in range(n):
        a = a0 + 2 * math.pi * k / n
        petals.append(_ellipse(0.3 * math.cos(a), cy + 0.3 * math.sin(a), 0.22, 0.12, 18, rot=a))
    side = 1 if rng.random() < 0.5 else -1
    return [
        ("stem", [_rect(-0.05, cy, 0.05, 1.0)]),
        ("leaf", [_ellipse(side * 0.22, 0.5, 0.22, 0.09, 18, rot=-side * 0.5)]),
        ("petals", petals),
        ("centre", [_circle(0.0, cy, 0.16, 20)]),
    ]


def _fish(rng: np.random.Generator) -> PartList:
    ry = _u(rng, 0.32, 0.42)
    return [
        ("tail", [_poly((0.5, 0.0), (1.0, -0.42), (1.0, 0.42))]),
        ("fin", [_poly((-0.2, -ry + 0.1), (0.3, -ry + 0.1), (0.05, -ry - 0.3))]),
        ("body", [_ellipse(0.0, 0.0, 0.68, ry, 32)]),
        ("eye", [_circle(-0.4, -0.08, 0.08, 14)]),
    ]


def _mushroom(rng: np.random.Generator) -> PartList:
    rx = _u(rng, 0.7, 0.95)
    ry = _u(rng, 0.55, 0.75)
    spots = [_circle(-0.35 * rx, -0.3 * ry, 0.1, 14), _circle(0.1 * rx, -0.65 * ry, 0.1, 14),
             _circle(0.45 * rx, -0.25 * ry, 0.1, 14)]
    return [
        ("stem", [_rect(-0.2, -0.05, 0.2, 0.95)]),
        ("cap", [_ellipse(0.0, 0.0, rx, ry, 28, a0=math.pi, a1=2 * math.pi)]),
        ("spots", spots),
    ]


def _boat(rng: np.random.Generator) -> PartList:
    sw = _u(rng, 0.55, 0.8)
    return [
        ("mast", [_rect(-0.04, -0.92, 0.04, 0.4)]),
        ("sail", [_poly((0.1, -0.8), (0.1, 0.25), (0.1 + sw, 0.25))]),
        ("flag", [_poly((-0.04, -0.92), (-0.04, -0.7), (-0.38, -0.81))]),
        ("hull", [_poly((-1.0, 0.35), (1.0, 0.35), (0.7, 0.78), (-0.7, 0.78))]),
    ]


def _lamp(rng: np.random.Generator) -> PartList:
    sw = _u(rng, 0.5, 0.7)
    return [
        ("pole", [_rect(-0.05, -0.4, 0.05, 0.86)]),
        ("base", [_rect(-0.45, 0.84, 0.45, 1.0)]),
        ("bulb", [_circle(0.0, -0.25, 0.14, 18)]),
        ("shade", [_poly((-0.28, -0.95), (0.28, -0.95), (sw, -0.3), (-sw, -0.3))]),
    ]


def _robot(rng: np.random.Generator) -> PartList:
    hw = _u(rng, 0.25, 0.33)
    return [
        ("legs", [_rect(-0.35, 0.5, -0.1, 1.0), _rect(0.1, 0.5, 0.35, 1.0)]),
        ("arms", [_rect(-0.72, -0.25, -0.5, 0.35), _rect(0.5, -0.25, 0.72, 0.35)]),
        ("body", [_rect(-0.46, -0.3, 0.46, 0.55)]),
        ("head", [_rect(-hw, -0.76, hw, -0.33)]),
        ("antenna", [_rect(-0.03, -0.92, 0.03, -0.76), _circle(0.0, -0.93, 0.07, 12)]),
    ]


def _cactus(rng: np.random.Generator) -> PartList:
    ly, ry_ = _u(rng, -0.1, 0.15), _u(rng, -0.35, -0.1)
    left = [_rect(-0.55, ly, -0.15, ly + 0.13), _rect(-0.55, ly - 0.45, -0.42, ly + 0.13)]
    right = [_rect(0.15, ry_, 0.55, ry_ + 0.13), _rect(0.42, ry_ - 0.4, 0.55, ry_ + 0.13)]
    return [
        ("arms", left + right),
        ("stem", [_rect(-0.18, -0.7, 0.18, 0.5), _ellipse(0.0, -0.7, 0.18, 0.18, 16)]),
        ("pot", [_poly((-0.45, 0.5), (0.45, 0.5), (0.35, 1.0), (-0.35, 1.0))]),
    ]


_BUILDERS: Dict[str, Callable[[np.random.Generator], PartList]] = {
    "house": _house, "car": _car, "tree": _tree, "snowman": _snowman, "rocket": _rocket,
    "flower": _flower, "fish": _fish, "mushroom": _mushroom, "boat": _boat, "lamp": _lamp,
    "robot": _robot, "cactus": _cactus,
}

CLASSES: List[str] = list(_BUILDERS)
#: part names of each class, in drawing order
PARTS: Dict[str, List[str]] = {c: [p for p, _ in b(np.random.default_rng(0))] for c, b in _BUILDERS.items()}
_PLURAL_PARTS = {"wheels", "lights", "fruit", "fins", "petals", "spots", "legs", "arms"}
_CONNECTIVES = (" next to ", " and ", " beside ")
_NONZERO = [0] + [255] * 255   # PIL point table: label image -> paste mask

# ----------------------------------------------------------------------------------------------
# scene data


@dataclass
class SceneObject:
    """One object of a scene: its class, its mask (bool H x W) and the colour name of each part."""
    label: str
    mask: np.ndarray
    colors: Dict[str, str]
    bbox: Tuple[int, int, int, int] = (0, 0, 0, 0)   # x0, y0, x1, y1 (inclusive-exclusive), pixels
    center: Tuple[float, float] = (0.0, 0.0)        # x, y in pixels
    scale: float = 0.0                              # half-size of the object frame, pixels
    angle: float = 0.0                              # rotation, degrees
    flipped: bool = False                           # mirrored left-right


@dataclass
class ScenePart:
    """One visible part: its name, the index of its object in ``scene.objects``, its mask and colour."""
    name: str
    object: int
    mask: np.ndarray
    color: str = ""


@dataclass
class Scene:
    """A rendered scene with its ground truth."""
    index: int
    image: Image.Image
    caption: str
    objects: List[SceneObject]
    parts: List[ScenePart]
    distractor_mask: Optional[np.ndarray] = None
    seed: int = 0

    @property
    def labels(self) -> List[str]:
        return [o.label for o in self.objects]

    def label_map(self, level: str = "part") -> np.ndarray:
        """int32 H x W map: the index into ``self.parts`` (level="part") or ``self.objects`` (level="object")
        of the part or object covering each pixel, -1 elsewhere."""
        if level not in ("part", "object"):
            raise ValueError(f"level must be 'part' or 'object', not {level!r}")
        h, w = self.image.size[1], self.image.size[0]
        out = np.full((h, w), -1, dtype=np.int32)
        items = self.parts if level == "part" else self.objects
        for k, it in enumerate(items):
            out[it.mask] = k
        return out

    def part_masks(self, object_index: int) -> Dict[str, np.ndarray]:
        """The masks of one object's parts, by part name."""
        return {p.name: p.mask for p in self.parts if p.object == object_index}

    def to_dict(self) -> dict:
        """Ground truth as plain Python data (no masks, no image): handy for JSON."""
        return {"index": self.index, "seed": self.seed, "caption": self.caption,
                "objects": [{"label": o.label, "colors": dict(o.colors), "bbox": list(o.bbox)}
                            for o in self.objects]}


def partsworld_collate(batch: Sequence[Scene]) -> dict:
    """A DataLoader ``collate_fn`` that keeps everything as lists (images stay PIL, masks numpy)."""
    batch = list(batch)
    return {
        "images": [s.image for s in batch],
        "captions": [s.caption for s in batch],
        "labels": [s.labels for s in batch],
        "indices": [s.index for s in batch],
        "scenes": batch,
    }

# ----------------------------------------------------------------------------------------------
# captions


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _part_phrase(part: str, color: str) -> str:
    if part in _PLURAL_PARTS:
        return f"{color} {part}"
    return f"{_article(color)} {color} {part}"


def object_phrase(label: str, colors: Dict[str, str]) -> str:
    """``"a house with a red roof and a blue door"`` (parts in the given order; none: ``"a house"``)."""
    head = f"{_article(label)} {label}"
    if not colors:
        return head
    return head + " with " + " and ".join(_part_phrase(p, c) for p, c in colors.items())


def parse_caption(caption: str, classes: Optional[Dict[str, Sequence[str]]] = None,
                  colors: Optional[Sequence[str]] = None) -> List[Tuple[str, Dict[str, str]]]:
    """Turn a PartsWorld caption back into ``[(class, {part: colour}), ...]`` in caption order.

    An object starts at "a"/"an" + class name; "colour part" pairs after it belong to it. Other words
    (with, and, next to, beside, commas) are connectives. A colour followed by a word that is not a
    part of the current object raises ValueError.
    """
    parts = PARTS if classes is None else {k: list(v) for k, v in classes.items()}
    cols = set(PALETTE if colors is None else colors)
    toks = caption.lower().replace(",", " ").replace(".", " ").split()
    out: List[Tuple[str, Dict[str, str]]] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t in parts and i > 0 and toks[i - 1] in ("a", "an"):
            out.append((t, {}))
        elif t in cols:
            if not out:
                raise ValueError(f"colour {t!r} before any object in caption {caption!r}")
            cls, attrs = out[-1]
            if i + 1 >= len(toks) or toks[i + 1] not in parts[cls]:
                nxt = toks[i + 1] if i + 1 < len(toks) else "<end>"
                raise ValueError(f"{nxt!r} after colour {t!r} is not a part of a {cls} in {caption!r}")
            attrs[toks[i + 1]] = t
            i += 1
        i += 1
    return out

# ----------------------------------------------------------------------------------------------
# backgrounds

_NOISE_BANK: Dict[int, np.ndarray] = {}
_NOISE_OFFSET = 20   # bank values lie in [0, 2 * _NOISE_OFFSET]; tones lie in [_TONE_LO, _TONE_HI]
_TONE_LO, _TONE_HI = 40, 210


def _noise_bank(size: int) -> Image.Image:
    """A fixed (2*size, 2*size) RGB noise texture (fixed seed) centred on _NOISE_OFFSET: fine grain plus
    coarse blotches. Scenes add random crops of it to their base tones (values stay in 0..255)."""
    bank = _NOISE_BANK.get(size)
    if bank is None:
        r = np.random.default_rng(20240531)
        n2 = 2 * size
        fine = r.integers(-10, 11, size=(n2, n2, 3), dtype=np.int16)
        cell = max(size // 28, 2)
        cs = n2 // cell + 1
        coarse = r.integers(-9, 10, size=(cs, cs, 3), dtype=np.int16)
        coarse = np.repeat(np.repeat(coarse, cell, 0), cell, 1)[:n2, :n2]
        arr = (fine + coarse + _NOISE_OFFSET).clip(0, 2 * _NOISE_OFFSET).astype(np.uint8)
        bank = Image.fromarray(arr, "RGB")
        _NOISE_BANK[size] = bank
    return bank


def _background(rng: np.random.Generator, size: int, avoid: np.ndarray) -> Image.Image:
    """Textured background (RGB, size x size) whose base tones keep away from the colours in `avoid`."""
    def tone() -> np.ndarray:
        for _ in range(30):
            c = rng.integers(_TONE_LO, _TONE_HI + 1, size=3).astype(np.float64)
            c = c * 0.6 + c.mean() * 0.4                        # muted
            if avoid.size == 0 or np.min(np.abs(avoid - c).sum(1)) > 110:
                break
        return c.astype(np.uint8) - np.uint8(_NOISE_OFFSET)  # room for the noise, still in [20, 190]

    kind = int(rng.integers(0, 4))
    a = tone()
    if kind == 0:      # flat
        base = Image.new("RGB", (size, size), tuple(int(v) for v in a))
    else:
        b = tone()
        vertical = rng.random() < 0.5
        if kind == 1:      # linear gradient
            t = np.linspace(0.0, 1.0, size)[:, None]
            line = (a * (1 - t) + b * t).astype(np.uint8)
        elif kind == 2:    # stripes
            period = int(rng.integers(max(size // 16, 4), max(size // 5, 6)))
            band = (np.arange(size) // period) % 2 == 0
            line = np.where(band[:, None], a, b).astype(np.uint8)
        if kind in (1, 2):
            line = line[:, None, :] if vertical else line[None, :, :]
            base = Image.fromarray(np.ascontiguousarray(line), "RGB").resize((size, size), Image.NEAREST)
        else:              # checker
            period = int(rng.integers(max(size // 12, 4), max(size // 4, 6)))
            nc = size // period + 1
            idx = np.arange(nc)
            small = np.where(((idx[:, None] + idx[None, :]) % 2 == 0)[..., None], a, b).astype(np.uint8)
            base = Image.fromarray(small, "RGB").resize((nc * period, nc * period), Image.NEAREST)
            base = base.crop((0, 0, size, size))
    oy, ox = (int(v) for v in rng.integers(0, size, size=2))
    noise = _noise_bank(size).crop((ox, oy, ox + size, oy + size))
    return ImageChops.add(base, noise)


# ----------------------------------------------------------------------------------------------
# the world


class PartsWorld:
    """A deterministic, random-access collection of synthetic part-annotated scenes.

    Parameters
    ----------
    n : int
        Number of scenes (``len(world)``).
    seed : int
        Scene ``i`` is drawn from ``np.random.default_rng([seed, i])`` only.
    size : int
        Images are ``size x size`` RGB.
    n_objects : int or (lo, hi)
        Objects per scene, or an inclusive range to draw from.
    distractors : bool
        Add 0-3 blobs that belong to no object and no mask (never overlapping an object).
    classes : list of str, optional
        Restrict to these classes (default: all of ``CLASSES``).
    rotation : float
        Objects are rotated by up to +-rotation degrees.
    scale : (lo, hi), optional
        Half-size of an object as a fraction of ``size``; default depends on the object count.
    flip : bool
        Mirror objects left-right at random.
    caption_parts : (lo, hi)
        How many parts (inclusive range, clipped to the class) each object's caption phrase names.
    """

    def __init__(self, n: int, seed: int = 0, size: int = 224,
                 n_objects: Union[int, Tuple[int, int]] = 1, distractors: bool = True,
                 classes: Optional[Sequence[str]] = None, rotation: float = 15.0,
                 scale: Optional[Tuple[float, float]] = None, flip: bool = True,
                 caption_parts: Tuple[int, int] = (1, 2)):
        if int(n) != n or n < 0:
            raise ValueError(f"n must be a non-negative integer, not {n!r}")
        if int(size) != size or size < 32:
            raise ValueError(f"size must be an integer >= 32, not {size!r}")
        if isinstance(n_objects, (int, np.integer)):
            lo = hi = int(n_objects)
        else:
            try:
                lo, hi = (int(v) for v in n_objects)
            except (TypeError, ValueError):
                raise ValueError(f"n_objects must be an int or a (lo, hi) pair, not {n_objects!r}") from None
        if not 1 <= lo <= hi <= 8:
            raise ValueError(f"n_objects must satisfy 1 <= lo <= hi <= 8, got {n_objects!r}")
        if classes is None:
            classes = list(CLASSES)
        else:
            classes = list(classes)
            unknown = [c for c in classes if c not in _BUILDERS]
            if unknown or not classes:
                raise ValueError(f"unknown classes {unknown}; choose from {CLASSES}")
        if scale is not None:
            if not (0 < scale[0] <= scale[1] <= 0.5):
                raise ValueError(f"scale must be (lo, hi) with 0 < lo <= hi <= 0.5, not {scale!r}")
        if not 1 <= caption_parts[0] <= caption_parts[1]:
            raise ValueError(f"caption_parts must be (lo, hi) with 1 <= lo <= hi, not {caption_parts!r}")
        self.n = int(n)
        self.seed = int(seed)
        self.size = int(size)
        self.n_objects = (lo, hi)
        self.distractors = bool(distractors)
        self.classes: List[str] = classes
        self.parts: Dict[str, List[str]] = {c: list(PARTS[c]) for c in classes}
        self.colors: Dict[str, Tuple[int, int, int]] = dict(PALETTE)
        self.rotation = float(rotation)
        self.scale = None if scale is None else (float(scale[0]), float(scale[1]))
        self.flip = bool(flip)
        self.caption_parts = (int(caption_parts[0]), int(caption_parts[1]))
        self._color_names = list(PALETTE)
        self._lut_rgb = np.array([PALETTE[c] for c in self._color_names], dtype=np.uint8)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return (f"PartsWorld(n={self.n}, seed={self.seed}, size={self.size}, n_objects={self.n_objects}, "
                f"distractors={self.distractors}, classes={len(self.classes)})")

    def __getitem__(self, index: int) -> Scene:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.n))]
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(f"PartsWorld indices must be integers, not {type(index).__name__}") from None
        if not 0 <= i < self.n:
            raise IndexError(f"scene index {index} out of range for a PartsWorld of {self.n} scenes")
        return self.render(i)

    def __iter__(self):
        for i in range(self.n):
            yield self.render(i)

    # -- rendering ---------------------------------------------------------------------------

    def _scale_range(self, count: int) -> Tuple[float, float]:
        if self.scale is not None:
            return self.scale
        hi = 0.42 / math.sqrt(count)
        return 0.5 * hi, hi

    def render(self, i: int) -> Scene:
        """Scene ``i`` (no range check: any non-negative integer gives a scene)."""
        rng = np.random.default_rng([self.seed, int(i)])
        S = self.size
        lo, hi = self.n_objects
        count = int(rng.integers(lo, hi + 1))
        smin, smax = self._scale_range(count)

        # 1. choose classes, shapes, poses; place with rejection sampling on padded bounding boxes
        boxes: List[Tuple[float, float, float, float]] = []
        placed = []
        gap = 2.0
        for _ in range(count):
            label = self.classes[int(rng.integers(len(self.classes)))]
            parts = _BUILDERS[label](rng)
            flipped = self.flip and rng.random() < 0.5
            angle = _u(rng, -self.rotation, self.rotation) if self.rotation > 0 else 0.0
            s = _u(rng, smin, smax) * S
            allpts = np.concatenate([p for _, polys in parts for p in polys])
            th = math.radians(angle)
            c, sn = math.cos(th), math.sin(th)
            fx = -1.0 if flipped else 1.0
            rot = np.array([[c * fx, -sn], [sn * fx, c]])
            ok = False
            for attempt in range(200):
                if attempt and attempt % 20 == 0:
                    s *= 0.85
                local = allpts @ rot.T * s
                x0, y0 = local.min(0)
                x1, y1 = local.max(0)
                # centre so that the whole object stays inside [1, S-1)
                cxl, cxh = 1 - x0, S - 1 - x1
                cyl, cyh = 1 - y0, S - 1 - y1
                if cxl > cxh or cyl > cyh:
                    continue
                cx, cy = _u(rng, cxl, cxh), _u(rng, cyl, cyh)
                box = (cx + x0 - gap, cy + y0 - gap, cx + x1 + gap, cy + y1 + gap)
                if all(box[2] < b[0] or b[2] < box[0] or box[3] < b[1] or b[3] < box[1] for b in boxes):
                    ok = True
                    break
            if not ok:   # pragma: no cover - only with extreme n_objects/scale settings
                raise RuntimeError(f"could not place {count} objects in scene {i}; lower n_objects or scale")
            boxes.append(box)
            placed.append((label, parts, flipped, angle, s, rot, (cx, cy), box))

        # 2. colours: distinct within an object
        ncol = len(self._color_names)
        obj_colors: List[List[int]] = []
        for label, parts, *_ in placed:
            obj_colors.append([int(k) for k in rng.permutation(ncol)[: len(parts)]])
        used = np.array(sorted({k for cs in obj_colors for k in cs}), dtype=np.int64)

        # 3. draw the label map: part ids 1..P, distractor ids 255, 254, ...
        lab_img = Image.new("L", (S, S), 0)
        draw = ImageDraw.Draw(lab_img)
        lut = np.zeros((256, 3), dtype=np.uint8)
        part_meta = []  # (object index, part name, colour name)
        pid = 0
        for k, (label, parts, flipped, angle, s, rot, (cx, cy), box) in enumerate(placed):
            for (pname, polys), ci in zip(parts, obj_colors[k]):
                pid += 1
                lut[pid] = self._lut_rgb[ci]
                part_meta.append((k, pname, self._color_names[ci]))
                for poly in polys:
                    pts = poly @ rot.T * s + (cx, cy)
                    draw.polygon([tuple(p) for p in pts.tolist()], fill=pid)

        ndis = 0
        if self.distractors:
            want = int(rng.integers(0, 4))
            for _ in range(want):
                r = _u(rng, 0.03, 0.09) * S
                nv = int(rng.integers(7, 13))
                ang = np.sort(rng.uniform(0, 2 * math.pi, nv))
                rad = r * rng.uniform(0.55, 1.0, nv)
                blob = np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
                ci = int(rng.integers(ncol))
                for _ in range(30):
                    cx, cy = _u(rng, r + 1, S - 1 - r), _u(rng, r + 1, S - 1 - r)
                    box = (cx - r - gap, cy - r - gap, cx + r + gap, cy + r + gap)
                    if all(box[2] < b[0] or b[2] < box[0] or box[3] < b[1] or b[3] < box[1] for b in boxes):
                        ndis += 1
                        did = 256 - ndis
                        lut[did] = self._lut_rgb[ci]
                        draw.polygon([tuple(p) for p in (blob + (cx, cy)).tolist()], fill=did)
                        break

        lab = np.asarray(lab_img)
        # 4. compose: palette-map the label image and paste it over the background where drawn
        bg = _background(rng, S, self._lut_rgb[used].astype(np.float64))
        fg = lab_img.copy()
        fg.putpalette(lut.tobytes(), "RGB")
        bg.paste(fg.convert("RGB"), (0, 0), lab_img.point(_NONZERO))

        # 5. masks and captions
        parts_out: List[ScenePart] = []
        obj_masks = [np.zeros((S, S), dtype=bool) for _ in placed]
        for j, (k, pname, cname) in enumerate(part_meta):
            m = lab == (j + 1)
            obj_masks[k] |= m
            parts_out.append(ScenePart(name=pname, object=k, mask=m, color=cname))
        objects: List[SceneObject] = []
        phrases = []
        for k, (label, parts, flipped, angle, s, rot, (cx, cy), box) in enumerate(placed):
            colors = {pn: self._color_names[ci] for (pn, _), ci in zip(parts, obj_colors[k])}
            bb = (max(int(math.floor(box[0] + gap)), 0), max(int(math.floor(box[1] + gap)), 0),
                  min(int(math.ceil(box[2] - gap)) + 1, S), min(int(math.ceil(box[3] - gap)) + 1, S))
            objects.append(SceneObject(label=label, mask=obj_masks[k], colors=colors, bbox=bb,
                                       center=(float(cx), float(cy)), scale=float(s), angle=float(angle),
                                       flipped=bool(flipped)))
            names = self.parts[label]
            nlo = min(self.caption_parts[0], len(names))
            nhi = min(self.caption_parts[1], len(names))
            m = int(rng.integers(nlo, nhi + 1))
            chosen = sorted(rng.choice(len(names), size=m, replace=False).tolist())
            phrases.append(object_phrase(label, {names[q]: colors[names[q]] for q in chosen}))
        caption = phrases[0]
        for ph in phrases[1:]:
            caption += _CONNECTIVES[int(rng.integers(len(_CONNECTIVES)))] + ph
        dmask = lab >= 256 - ndis if ndis else np.zeros((S, S), dtype=bool)
        return Scene(index=int(i), image=bg, caption=caption, objects=objects,
                     parts=parts_out, distractor_mask=dmask, seed=self.seed)
