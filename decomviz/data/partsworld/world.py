"""PartsWorld: a deterministic, random-access collection of synthetic part-annotated scenes.

Scene ``i`` is drawn from ``np.random.default_rng([seed, i])`` alone: first its layout (classes,
shapes, poses, colours, distractors, background, caption choices) as a :class:`~.drawing.Drawing`,
then its pixels and ground truth from that drawing.
"""
from __future__ import annotations

import math
import operator
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from .background import Background
from .captions import CONNECTIVES
from .drawing import Blob, Drawing, DrawnObject, DrawnPart
from .palette import PALETTE
from .shapes import BUILDERS, CLASSES, PARTS, PartList, uniform
from .scene import Scene

__all__ = ["PartsWorld"]

_GAP = 2.0   # pixels kept free around every object's box (objects and distractors never come closer)


def _disjoint(box: Tuple[float, float, float, float], boxes: Sequence[Tuple[float, float, float, float]]) -> bool:
    """Whether the box (x0, y0, x1, y1) overlaps none of `boxes`."""
    return all(box[2] < b[0] or b[2] < box[0] or box[3] < b[1] or b[3] < box[1] for b in boxes)


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
            unknown = [c for c in classes if c not in BUILDERS]
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
        self._palette: Dict[str, Tuple[int, int, int]] = dict(PALETTE)   # what scenes are drawn in

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

    def export(self, path, format: str = "coco", indices: Optional[Sequence[int]] = None):
        """Write the scenes (all, or ``indices``) as a part dataset in a researcher's format; return the folder.

        Parameters
        ----------
        path : str or Path
            The folder to write (created if needed).
        format : {"coco", "masks"}
            "coco": ``path/annotations.json`` (objects and "class/part" categories, masks as exact RLE) and
            ``path/images/``, read back by ``dv.datasets.COCOParts(path / "annotations.json", path / "images")``.
            "masks": ``path/labels.json``, ``path/images/`` and ``path/masks/`` (PNG label maps), read back by
            ``dv.datasets.MaskFolder(path)``.
        indices : sequence of int, optional
            The scenes to write; images are named by scene index (``00012.png``).

        Returns
        -------
        pathlib.Path
        """
        from .export import export_world
        return export_world(self, path, format, indices)

    def _scale_range(self, count: int) -> Tuple[float, float]:
        """(lo, hi) half-size of an object as a fraction of ``size``, for a scene of `count` objects."""
        if self.scale is not None:
            return self.scale
        hi = 0.42 / math.sqrt(count)
        return 0.5 * hi, hi

    def render(self, i: int) -> Scene:
        """Scene `i` (no range check: any non-negative integer gives a scene).

        Parameters
        ----------
        i : int
            Scene index.

        Returns
        -------
        Scene
            The scene, with its drawing attached (for interventions).
        """
        drawing, bg = self._layout(i)
        return Scene.from_drawing(drawing, background=bg)

    def _layout(self, i: int) -> Tuple[Drawing, Image.Image]:
        """Draw the layout of scene `i` from ``np.random.default_rng([seed, i])``.

        Parameters
        ----------
        i : int
            Scene index.

        Returns
        -------
        drawing : Drawing
            What scene `i` draws.
        background : PIL.Image.Image
            Its ``size x size`` RGB background, already drawn (``drawing.background.image()`` draws the
            same again).
        """
        rng = np.random.default_rng([self.seed, int(i)])
        S = self.size
        lo, hi = self.n_objects
        count = int(rng.integers(lo, hi + 1))
        placed, boxes = self._place(rng, count, i)

        # colours: distinct within an object
        ncol = len(self._color_names)
        obj_colors: List[List[int]] = []
        for label, parts, *_ in placed:
            obj_colors.append([int(k) for k in rng.permutation(ncol)[: len(parts)]])
        used = np.array(sorted({k for cs in obj_colors for k in cs}), dtype=np.int64)
        drawn: List[DrawnPart] = []
        for k, (label, parts, flipped, angle, s, rot, (cx, cy), box) in enumerate(placed):
            for (pname, polys), ci in zip(parts, obj_colors[k]):
                drawn.append(DrawnPart(object=k, name=pname, color=self._color_names[ci],
                                       polygons=tuple(poly @ rot.T * s + (cx, cy) for poly in polys)))

        blobs = self._distractors(rng, boxes) if self.distractors else ()
        background, bg = Background.draw_from(rng, S, self._lut_rgb[used].astype(np.float64))

        # objects, and the parts each caption phrase names
        objects: List[DrawnObject] = []
        for k, (label, parts, flipped, angle, s, rot, (cx, cy), box) in enumerate(placed):
            bb = (max(int(math.floor(box[0] + _GAP)), 0), max(int(math.floor(box[1] + _GAP)), 0),
                  min(int(math.ceil(box[2] - _GAP)) + 1, S), min(int(math.ceil(box[3] - _GAP)) + 1, S))
            names = self.parts[label]
            nlo = min(self.caption_parts[0], len(names))
            nhi = min(self.caption_parts[1], len(names))
            m = int(rng.integers(nlo, nhi + 1))
            chosen = sorted(rng.choice(len(names), size=m, replace=False).tolist())
            objects.append(DrawnObject(label=label, bbox=bb, center=(float(cx), float(cy)), scale=float(s),
                                       angle=float(angle), flipped=bool(flipped),
                                       named=tuple(names[q] for q in chosen)))
        connectives = tuple(CONNECTIVES[int(rng.integers(len(CONNECTIVES)))] for _ in objects[1:])
        drawing = Drawing(index=int(i), seed=self.seed, size=S, palette=self._palette, objects=tuple(objects),
                          parts=tuple(drawn), blobs=blobs, connectives=connectives, background=background)
        return drawing, bg

    def _place(self, rng: np.random.Generator, count: int, i: int) -> Tuple[list, list]:
        """Choose classes, shapes and poses of `count` objects and place them without overlap.

        Rejection sampling on bounding boxes padded by ``_GAP`` pixels; the scale shrinks every 20
        failed tries.

        Returns
        -------
        placed : list
            Per object ``(label, parts, flipped, angle, scale, rot, (cx, cy), box)``: its
            :data:`PartList`, the (2, 2) rotation (and mirror) matrix and the padded box.
        boxes : list of (float, float, float, float)
            The padded boxes, x0, y0, x1, y1.
        """
        S = self.size
        smin, smax = self._scale_range(count)
        boxes: List[Tuple[float, float, float, float]] = []
        placed = []
        for _ in range(count):
            label = self.classes[int(rng.integers(len(self.classes)))]
            parts: PartList = BUILDERS[label](rng)
            flipped = self.flip and rng.random() < 0.5
            angle = uniform(rng, -self.rotation, self.rotation) if self.rotation > 0 else 0.0
            s = uniform(rng, smin, smax) * S
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
                cx, cy = uniform(rng, cxl, cxh), uniform(rng, cyl, cyh)
                box = (cx + x0 - _GAP, cy + y0 - _GAP, cx + x1 + _GAP, cy + y1 + _GAP)
                if _disjoint(box, boxes):
                    ok = True
                    break
            if not ok:   # pragma: no cover - only with extreme n_objects/scale settings
                raise RuntimeError(f"could not place {count} objects in scene {i}; lower n_objects or scale")
            boxes.append(box)
            placed.append((label, parts, flipped, angle, s, rot, (cx, cy), box))
        return placed, boxes

    def _distractors(self, rng: np.random.Generator, boxes: Sequence[Tuple[float, float, float, float]]
                     ) -> Tuple[Blob, ...]:
        """Draw 0-3 distractor blobs that keep clear of the object `boxes` (they may overlap each other)."""
        S = self.size
        ncol = len(self._color_names)
        blobs: List[Blob] = []
        want = int(rng.integers(0, 4))
        for _ in range(want):
            r = uniform(rng, 0.03, 0.09) * S
            nv = int(rng.integers(7, 13))
            ang = np.sort(rng.uniform(0, 2 * math.pi, nv))
            rad = r * rng.uniform(0.55, 1.0, nv)
            blob = np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
            ci = int(rng.integers(ncol))
            for _ in range(30):
                cx, cy = uniform(rng, r + 1, S - 1 - r), uniform(rng, r + 1, S - 1 - r)
                box = (cx - r - _GAP, cy - r - _GAP, cx + r + _GAP, cy + r + _GAP)
                if _disjoint(box, boxes):
                    blobs.append(Blob(polygon=blob + (cx, cy), color=self._color_names[ci]))
                    break
        return tuple(blobs)
