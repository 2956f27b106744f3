"""Shape primitives and the per-class part builders of PartsWorld.

A builder draws the random proportions of one object instance and returns its parts in drawing order,
each as a list of polygons in an object frame where the object spans about ``[-1, 1] x [-1, 1]`` with
y pointing down. Later parts cover earlier ones. The world places, rotates, mirrors and scales that
frame into pixels.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Tuple

import numpy as np

__all__ = ["BUILDERS", "CLASSES", "PARTS", "PartList", "Poly", "uniform"]

#: a polygon: (N, 2) float64 vertices x, y
Poly = np.ndarray


def _rect(x0: float, y0: float, x1: float, y1: float) -> Poly:
    """Axis-aligned rectangle with corners (x0, y0) and (x1, y1): (4, 2) vertices."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28, rot: float = 0.0,
             a0: float = 0.0, a1: float = 2 * math.pi) -> Poly:
    """Ellipse (or the arc a0..a1 closed by its chord) as an (n, 2) polygon, rotated by rot radians."""
    closed = abs((a1 - a0) - 2 * math.pi) < 1e-9
    t = np.linspace(a0, a1, n, endpoint=not closed)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(rot), math.sin(rot)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _circle(cx: float, cy: float, r: float, n: int = 24) -> Poly:
    """Circle of radius r around (cx, cy) as an (n, 2) polygon."""
    return _ellipse(cx, cy, r, r, n)


def _poly(*pts: Tuple[float, float]) -> Poly:
    """The polygon through the given (x, y) points: (len(pts), 2)."""
    return np.asarray(pts, dtype=np.float64)


def _mirror(p: Poly) -> Poly:
    """A copy of polygon p (N, 2) mirrored left-right about x = 0."""
    q = p.copy()
    q[:, 0] = -q[:, 0]
    return q


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One draw from U[lo, hi) as a Python float (consumes one double of `rng`)."""
    return float(rng.uniform(lo, hi))


#: what a builder returns: the parts in drawing order, ``[(part name, [polygons]), ...]``. Later parts
#: cover earlier ones. Small random proportions keep instances of a class from being identical.
PartList = List[Tuple[str, List[Poly]]]


def _house(rng: np.random.Generator) -> PartList:
    top = uniform(rng, -0.2, 0.0)
    peak = uniform(rng, -1.0, -0.8)
    wx = uniform(rng, 0.7, 0.85)
    dx = uniform(rng, -0.45, -0.15) * (1 if rng.random() < 0.5 else -1)
    wxc = -0.45 if dx > 0 else 0.45
    return [
        ("wall", [_rect(-wx, top, wx, 1.0)]),
        ("roof", [_poly((-1.0, top), (1.0, top), (0.0, peak))]),
        ("door", [_rect(dx - 0.17, 0.45, dx + 0.17, 1.0)]),
        ("window", [_rect(wxc - 0.17, top + 0.25, wxc + 0.17, top + 0.55)]),
    ]


def _car(rng: np.random.Generator) -> PartList:
    r = uniform(rng, 0.24, 0.3)
    ct = uniform(rng, -0.65, -0.5)
    return [
        ("cabin", [_poly((-0.6, 0.0), (-0.35, ct), (0.35, ct), (0.65, 0.0))]),
        ("body", [_rect(-1.0, -0.05, 1.0, 0.5)]),
        ("wheels", [_circle(-0.55, 0.5, r), _circle(0.55, 0.5, r)]),
        ("lights", [_rect(0.82, 0.02, 0.97, 0.17)]),
    ]


def _tree(rng: np.random.Generator) -> PartList:
    rx, ry = uniform(rng, 0.6, 0.8), uniform(rng, 0.55, 0.7)
    cy = -0.3
    fruit = []
    for ang in rng.uniform(0, 2 * math.pi, size=3):
        rad = uniform(rng, 0.2, 0.5)
        fruit.append(_circle(rad * rx * math.cos(ang), cy + rad * ry * math.sin(ang), 0.1, 14))
    return [
        ("trunk", [_rect(-0.14, 0.1, 0.14, 1.0)]),
        ("crown", [_ellipse(0.0, cy, rx, ry)]),
        ("fruit", fruit),
    ]


def _snowman(rng: np.random.Generator) -> PartList:
    rb = uniform(rng, 0.36, 0.42)
    return [
        ("base", [_circle(0.0, 1.0 - rb, rb, 32)]),
        ("body", [_circle(0.0, 0.05, 0.3, 28)]),
        ("head", [_circle(0.0, -0.42, 0.2, 24)]),
        ("hat", [_rect(-0.3, -0.6, 0.3, -0.53), _rect(-0.17, -0.95, 0.17, -0.58)]),
    ]


def _rocket(rng: np.random.Generator) -> PartList:
    hw = uniform(rng, 0.22, 0.28)
    fl = uniform(rng, 0.85, 1.0)
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
    a0 = uniform(rng, 0, 2 * math.pi)
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
    ry = uniform(rng, 0.32, 0.42)
    return [
        ("tail", [_poly((0.5, 0.0), (1.0, -0.42), (1.0, 0.42))]),
        ("fin", [_poly((-0.2, -ry + 0.1), (0.3, -ry + 0.1), (0.05, -ry - 0.3))]),
        ("body", [_ellipse(0.0, 0.0, 0.68, ry, 32)]),
        ("eye", [_circle(-0.4, -0.08, 0.08, 14)]),
    ]


def _mushroom(rng: np.random.Generator) -> PartList:
    rx = uniform(rng, 0.7, 0.95)
    ry = uniform(rng, 0.55, 0.75)
    spots = [_circle(-0.35 * rx, -0.3 * ry, 0.1, 14), _circle(0.1 * rx, -0.65 * ry, 0.1, 14),
             _circle(0.45 * rx, -0.25 * ry, 0.1, 14)]
    return [
        ("stem", [_rect(-0.2, -0.05, 0.2, 0.95)]),
        ("cap", [_ellipse(0.0, 0.0, rx, ry, 28, a0=math.pi, a1=2 * math.pi)]),
        ("spots", spots),
    ]


def _boat(rng: np.random.Generator) -> PartList:
    sw = uniform(rng, 0.55, 0.8)
    return [
        ("mast", [_rect(-0.04, -0.92, 0.04, 0.4)]),
        ("sail", [_poly((0.1, -0.8), (0.1, 0.25), (0.1 + sw, 0.25))]),
        ("flag", [_poly((-0.04, -0.92), (-0.04, -0.7), (-0.38, -0.81))]),
        ("hull", [_poly((-1.0, 0.35), (1.0, 0.35), (0.7, 0.78), (-0.7, 0.78))]),
    ]


def _lamp(rng: np.random.Generator) -> PartList:
    sw = uniform(rng, 0.5, 0.7)
    return [
        ("pole", [_rect(-0.05, -0.4, 0.05, 0.86)]),
        ("base", [_rect(-0.45, 0.84, 0.45, 1.0)]),
        ("bulb", [_circle(0.0, -0.25, 0.14, 18)]),
        ("shade", [_poly((-0.28, -0.95), (0.28, -0.95), (sw, -0.3), (-sw, -0.3))]),
    ]


def _robot(rng: np.random.Generator) -> PartList:
    hw = uniform(rng, 0.25, 0.33)
    return [
        ("legs", [_rect(-0.35, 0.5, -0.1, 1.0), _rect(0.1, 0.5, 0.35, 1.0)]),
        ("arms", [_rect(-0.72, -0.25, -0.5, 0.35), _rect(0.5, -0.25, 0.72, 0.35)]),
        ("body", [_rect(-0.46, -0.3, 0.46, 0.55)]),
        ("head", [_rect(-hw, -0.76, hw, -0.33)]),
        ("antenna", [_rect(-0.03, -0.92, 0.03, -0.76), _circle(0.0, -0.93, 0.07, 12)]),
    ]


def _cactus(rng: np.random.Generator) -> PartList:
    ly, ry_ = uniform(rng, -0.1, 0.15), uniform(rng, -0.35, -0.1)
    left = [_rect(-0.55, ly, -0.15, ly + 0.13), _rect(-0.55, ly - 0.45, -0.42, ly + 0.13)]
    right = [_rect(0.15, ry_, 0.55, ry_ + 0.13), _rect(0.42, ry_ - 0.4, 0.55, ry_ + 0.13)]
    return [
        ("arms", left + right),
        ("stem", [_rect(-0.18, -0.7, 0.18, 0.5), _ellipse(0.0, -0.7, 0.18, 0.18, 16)]),
        ("pot", [_poly((-0.45, 0.5), (0.45, 0.5), (0.35, 1.0), (-0.35, 1.0))]),
    ]


#: class name -> builder, ``builder(rng) -> PartList``
BUILDERS: Dict[str, Callable[[np.random.Generator], PartList]] = {
    "house": _house, "car": _car, "tree": _tree, "snowman": _snowman, "rocket": _rocket,
    "flower": _flower, "fish": _fish, "mushroom": _mushroom, "boat": _boat, "lamp": _lamp,
    "robot": _robot, "cactus": _cactus,
}

#: the object classes, in a fixed order
CLASSES: List[str] = list(BUILDERS)
#: part names of each class, in drawing order
PARTS: Dict[str, List[str]] = {c: [p for p, _ in b(np.random.default_rng(0))] for c, b in BUILDERS.items()}
