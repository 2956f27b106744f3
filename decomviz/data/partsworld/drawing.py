"""What a PartsWorld scene draws, as data: the recipe a :class:`~.scene.Scene` is rendered from.

A :class:`Drawing` lists the scene's objects, its parts in drawing order (pixel polygons and colour
names), its distractor blobs, how its background was drawn and how its caption is put together. It
holds no random state: :meth:`Drawing.rasterize` turns it into pixels and a label map the same way
every time. An intervention is a new Drawing with one change (:meth:`Drawing.without_part`,
:meth:`Drawing.without_object`, :meth:`Drawing.with_part_color`), rasterized again: whatever the change
does not touch is drawn exactly as before.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from typing import Mapping, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .background import Background

__all__ = ["Blob", "Drawing", "DrawnObject", "DrawnPart"]

_NONZERO = [0] + [255] * 255   # PIL point table: label image -> paste mask


@dataclass(frozen=True)
class DrawnObject:
    """An object of a drawing: its class, pose and the parts its caption phrase names.

    Attributes
    ----------
    label : str
        Class name.
    bbox : (int, int, int, int)
        x0, y0, x1, y1 in pixels (inclusive-exclusive) of the object as placed.
    center : (float, float)
        x, y of the object frame's origin, in pixels.
    scale : float
        Half-size of the object frame, in pixels.
    angle : float
        Rotation, degrees.
    flipped : bool
        Mirrored left-right.
    named : tuple of str
        The part names the caption phrase names, in drawing order.
    """
    label: str
    bbox: Tuple[int, int, int, int]
    center: Tuple[float, float]
    scale: float
    angle: float
    flipped: bool
    named: Tuple[str, ...]


@dataclass(frozen=True)
class DrawnPart:
    """A part of a drawing: the polygons filled in one palette colour.

    Attributes
    ----------
    object : int
        Index of its object in ``Drawing.objects``.
    name : str
        Part name.
    color : str
        Colour name (a key of ``Drawing.palette``).
    polygons : tuple of numpy.ndarray
        Each (N_k, 2) float64 vertices x, y in pixels.
    """
    object: int
    name: str
    color: str
    polygons: Tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Blob:
    """A distractor: a polygon in a palette colour that belongs to no object and no mask.

    Attributes
    ----------
    polygon : numpy.ndarray
        (N, 2) float64 vertices x, y in pixels.
    color : str
        Colour name (a key of ``Drawing.palette``).
    """
    polygon: np.ndarray
    color: str


def _check_index(i: int, n: int, what: str) -> int:
    """`i` as an int in 0..n-1, or IndexError (TypeError for a non-integer) naming the valid range."""
    try:
        k = operator.index(i)
    except TypeError:
        raise TypeError(f"{what} index must be an integer, not {type(i).__name__}") from None
    if not 0 <= k < n:
        valid = f"valid {what} indices are 0..{n - 1}" if n else f"the scene has no {what}s"
        raise IndexError(f"{what} index {k} out of range: {valid}")
    return k


@dataclass(frozen=True)
class Drawing:
    """Everything needed to render one PartsWorld scene, and to render it again with a change.

    Attributes
    ----------
    index, seed : int
        The scene's index in its world, and the world's seed.
    size : int
        Images are ``size x size`` RGB.
    palette : mapping of str to (int, int, int)
        Colour name -> RGB.
    objects : tuple of DrawnObject
        The objects, in scene order.
    parts : tuple of DrawnPart
        The parts of all objects, in drawing order (later parts cover earlier ones of their object);
        ``Scene.parts`` follows this order.
    blobs : tuple of Blob
        Distractors, drawn after the parts in this order.
    connectives : tuple of str
        ``connectives[k]`` joins the phrases of objects k and k + 1 in the caption.
    background : Background
        How the background was drawn.
    """
    index: int
    seed: int
    size: int
    palette: Mapping[str, Tuple[int, int, int]]
    objects: Tuple[DrawnObject, ...]
    parts: Tuple[DrawnPart, ...]
    blobs: Tuple[Blob, ...]
    connectives: Tuple[str, ...]
    background: Background

    def rasterize(self, background: Optional[Image.Image] = None) -> Tuple[Image.Image, np.ndarray]:
        """Draw the scene.

        Parts are drawn flat, without anti-aliasing, into a label image (part ``k`` of ``self.parts``
        gets label ``k + 1``, blob ``b`` of ``self.blobs`` gets ``255 - b``), which is palette-mapped and
        pasted over the background where drawn.

        Parameters
        ----------
        background : PIL.Image.Image, optional
            The ``size x size`` RGB background, if already drawn (it is pasted over, so pass a copy
            to keep it); default: drawn again from ``self.background``.

        Returns
        -------
        image : PIL.Image.Image
            RGB, ``size x size``.
        labels : numpy.ndarray
            (size, size) uint8 label map: 0 background, ``k + 1`` part k, ``255 - b`` blob b.
        """
        S = self.size
        lab_img = Image.new("L", (S, S), 0)
        draw = ImageDraw.Draw(lab_img)
        lut = np.zeros((256, 3), dtype=np.uint8)
        for pid, part in enumerate(self.parts, start=1):
            lut[pid] = self.palette[part.color]
            for poly in part.polygons:
                draw.polygon([tuple(p) for p in poly.tolist()], fill=pid)
        for b, blob in enumerate(self.blobs):
            lut[255 - b] = self.palette[blob.color]
            draw.polygon([tuple(p) for p in blob.polygon.tolist()], fill=255 - b)
        labels = np.asarray(lab_img)
        image = self.background.image() if background is None else background
        fg = lab_img.copy()
        fg.putpalette(lut.tobytes(), "RGB")
        image.paste(fg.convert("RGB"), (0, 0), lab_img.point(_NONZERO))
        return image, labels

    # -- interventions -----------------------------------------------------------------------

    def without_part(self, i: int) -> "Drawing":
        """This drawing without part `i`: the part is not drawn and its caption phrase no longer names it.

        Parameters
        ----------
        i : int
            Index into ``self.parts``.

        Returns
        -------
        Drawing
            The new drawing (``self`` is unchanged).

        Raises
        ------
        IndexError
            `i` is not in ``0 .. len(self.parts) - 1``.
        ValueError
            Part `i` is the last part of its object (remove the object with :meth:`without_object`).
        """
        i = _check_index(i, len(self.parts), "part")
        part = self.parts[i]
        if sum(p.object == part.object for p in self.parts) == 1:
            raise ValueError(f"part {i} ({part.name!r}) is the last part of object {part.object} "
                             f"({self.objects[part.object].label!r}); remove the object with "
                             f"without_object({part.object}) instead")
        objects = list(self.objects)
        obj = objects[part.object]
        objects[part.object] = replace(obj, named=tuple(n for n in obj.named if n != part.name))
        return replace(self, objects=tuple(objects), parts=self.parts[:i] + self.parts[i + 1:])

    def without_object(self, j: int) -> "Drawing":
        """This drawing without object `j`: none of its parts is drawn, its phrase leaves the caption.

        The caption drops the connective before the object's phrase (after it, for the first object);
        later objects move down one index.

        Parameters
        ----------
        j : int
            Index into ``self.objects``.

        Returns
        -------
        Drawing
            The new drawing (``self`` is unchanged). Without any object left, its caption is ``""``.

        Raises
        ------
        IndexError
            `j` is not in ``0 .. len(self.objects) - 1``.
        """
        j = _check_index(j, len(self.objects), "object")
        parts = tuple(p if p.object < j else replace(p, object=p.object - 1)
                      for p in self.parts if p.object != j)
        cut = j - 1 if j > 0 else 0
        return replace(self, objects=self.objects[:j] + self.objects[j + 1:], parts=parts,
                       connectives=self.connectives[:cut] + self.connectives[cut + 1:])

    def with_part_color(self, i: int, color: str) -> "Drawing":
        """This drawing with part `i` in colour `color`; the caption names the new colour if it named the part.

        The colour may be one another part of the same object already has.

        Parameters
        ----------
        i : int
            Index into ``self.parts``.
        color : str
            A colour name of ``self.palette``.

        Returns
        -------
        Drawing
            The new drawing (``self`` is unchanged).

        Raises
        ------
        IndexError
            `i` is not in ``0 .. len(self.parts) - 1``.
        ValueError
            `color` is not a colour name of the palette.
        """
        i = _check_index(i, len(self.parts), "part")
        if not isinstance(color, str) or color not in self.palette:
            raise ValueError(f"unknown colour {color!r}; choose from {', '.join(self.palette)}")
        parts = list(self.parts)
        parts[i] = replace(parts[i], color=color)
        return replace(self, parts=tuple(parts))
