"""PartsWorld scenes: the rendered image with its ground truth, and interventions on it.

A :class:`Scene` made by :class:`~.world.PartsWorld` keeps its :class:`~.drawing.Drawing`, so it can be
rendered again with one change (the idea of FunnyBirds' interventions): :meth:`Scene.without_part`,
:meth:`Scene.without_object` and :meth:`Scene.with_part_color` each return a new Scene whose image,
masks and caption follow the change, and whose every other pixel (other objects, distractors,
background) is the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .captions import join_phrases, object_phrase
from .drawing import Drawing

__all__ = ["Scene", "SceneObject", "ScenePart", "partsworld_collate"]


@dataclass
class SceneObject:
    """One object of a scene.

    Attributes
    ----------
    label : str
        Class name.
    mask : numpy.ndarray
        (H, W) bool: the pixels of its visible parts.
    colors : dict of str to str
        Part name -> colour name, for each part drawn (in drawing order).
    bbox : (int, int, int, int)
        x0, y0, x1, y1 (inclusive-exclusive) in pixels of the object as placed.
    center : (float, float)
        x, y in pixels.
    scale : float
        Half-size of the object frame, pixels.
    angle : float
        Rotation, degrees.
    flipped : bool
        Mirrored left-right.
    """
    label: str
    mask: np.ndarray
    colors: Dict[str, str]
    bbox: Tuple[int, int, int, int] = (0, 0, 0, 0)
    center: Tuple[float, float] = (0.0, 0.0)
    scale: float = 0.0
    angle: float = 0.0
    flipped: bool = False


@dataclass
class ScenePart:
    """One part of a scene.

    Attributes
    ----------
    name : str
        Part name.
    object : int
        Index of its object in ``scene.objects``.
    mask : numpy.ndarray
        (H, W) bool: its visible pixels (a later part of the same object drawn over it takes those).
    color : str
        Colour name.
    """
    name: str
    object: int
    mask: np.ndarray
    color: str = ""


@dataclass
class Scene:
    """A rendered scene with its ground truth.

    Attributes
    ----------
    index : int
        Index of the scene in its world.
    image : PIL.Image.Image
        RGB, W x H.
    caption : str
        One phrase per object, e.g. ``"a house with a red roof next to a car with black wheels"``.
    objects : list of SceneObject
        The objects, in caption order.
    parts : list of ScenePart
        The parts of all objects, in drawing order.
    distractor_mask : numpy.ndarray, optional
        (H, W) bool: pixels of distractor blobs.
    seed : int
        The world's seed.
    drawing : Drawing, optional
        What was drawn, to render the scene again with a change; None for a scene not made by a
        PartsWorld (which then supports no intervention).
    """
    index: int
    image: Image.Image
    caption: str
    objects: List[SceneObject]
    parts: List[ScenePart]
    distractor_mask: Optional[np.ndarray] = None
    seed: int = 0
    drawing: Optional[Drawing] = field(default=None, repr=False, compare=False)

    @classmethod
    def from_drawing(cls, drawing: Drawing, background: Optional[Image.Image] = None) -> "Scene":
        """Render a drawing and read its ground truth off the label map.

        Parameters
        ----------
        drawing : Drawing
            What to draw.
        background : PIL.Image.Image, optional
            The background, if already drawn (it is drawn over); default: drawn again from
            ``drawing.background``.

        Returns
        -------
        Scene
            The scene, with ``drawing`` attached.
        """
        image, lab = drawing.rasterize(background)
        S = drawing.size
        obj_masks = [np.zeros((S, S), dtype=bool) for _ in drawing.objects]
        parts: List[ScenePart] = []
        for j, p in enumerate(drawing.parts):
            m = lab == (j + 1)
            obj_masks[p.object] |= m
            parts.append(ScenePart(name=p.name, object=p.object, mask=m, color=p.color))
        objects: List[SceneObject] = []
        phrases = []
        for k, o in enumerate(drawing.objects):
            colors = {p.name: p.color for p in drawing.parts if p.object == k}
            objects.append(SceneObject(label=o.label, mask=obj_masks[k], colors=colors, bbox=o.bbox,
                                       center=o.center, scale=o.scale, angle=o.angle, flipped=o.flipped))
            phrases.append(object_phrase(o.label, {n: colors[n] for n in o.named}))
        nblobs = len(drawing.blobs)
        dmask = lab >= 256 - nblobs if nblobs else np.zeros((S, S), dtype=bool)
        return cls(index=drawing.index, image=image, caption=join_phrases(phrases, drawing.connectives),
                   objects=objects, parts=parts, distractor_mask=dmask, seed=drawing.seed, drawing=drawing)

    @property
    def labels(self) -> List[str]:
        """The class name of each object, in ``objects`` order."""
        return [o.label for o in self.objects]

    def label_map(self, level: str = "part") -> np.ndarray:
        """Which part or object covers each pixel.

        Parameters
        ----------
        level : {"part", "object"}
            Index into ``self.parts`` or into ``self.objects``.

        Returns
        -------
        numpy.ndarray
            (H, W) int32: the index of the part or object covering each pixel, -1 elsewhere.
        """
        if level not in ("part", "object"):
            raise ValueError(f"level must be 'part' or 'object', not {level!r}")
        h, w = self.image.size[1], self.image.size[0]
        out = np.full((h, w), -1, dtype=np.int32)
        items = self.parts if level == "part" else self.objects
        for k, it in enumerate(items):
            out[it.mask] = k
        return out

    def part_masks(self, object_index: int) -> Dict[str, np.ndarray]:
        """The (H, W) bool masks of one object's parts, by part name."""
        return {p.name: p.mask for p in self.parts if p.object == object_index}

    def to_dict(self) -> dict:
        """Ground truth as plain Python data (no masks, no image): handy for JSON."""
        return {"index": self.index, "seed": self.seed, "caption": self.caption,
                "objects": [{"label": o.label, "colors": dict(o.colors), "bbox": list(o.bbox)}
                            for o in self.objects]}

    # -- interventions -----------------------------------------------------------------------

    def _drawing(self) -> Drawing:
        if self.drawing is None:
            raise ValueError("this scene has no drawing to render again: only scenes made by a PartsWorld "
                             "support interventions")
        return self.drawing

    def without_part(self, i: int) -> "Scene":
        """The scene rendered again without part `i`.

        What lay under the part shows instead: an earlier part of the same object (whose mask gains
        those pixels) or the background (the object's mask loses them). The part leaves ``parts`` and
        its object's ``colors``, and the caption no longer names it.

        Parameters
        ----------
        i : int
            Index into ``self.parts``.

        Returns
        -------
        Scene
            A new scene; ``self`` is unchanged.

        Raises
        ------
        IndexError
            `i` is not in ``0 .. len(self.parts) - 1``.
        ValueError
            Part `i` is the last part of its object (use :meth:`without_object`), or the scene has no
            drawing.
        """
        return Scene.from_drawing(self._drawing().without_part(i))

    def without_object(self, j: int) -> "Scene":
        """The scene rendered again without object `j`: the background shows where it was.

        The object leaves ``objects``, its parts leave ``parts`` (later objects' indices, and their
        parts' ``object``, move down by one) and its phrase leaves the caption (``""`` once no object is
        left).

        Parameters
        ----------
        j : int
            Index into ``self.objects``.

        Returns
        -------
        Scene
            A new scene; ``self`` is unchanged.

        Raises
        ------
        IndexError
            `j` is not in ``0 .. len(self.objects) - 1``.
        ValueError
            The scene has no drawing.
        """
        return Scene.from_drawing(self._drawing().without_object(j))

    def with_part_color(self, i: int, color: str) -> "Scene":
        """The scene rendered again with part `i` in colour `color`.

        Exactly the part's visible pixels change, to the RGB of `color`; masks stay the same. The part's
        ``color``, its object's ``colors`` and, if it names the part, the caption follow.

        Parameters
        ----------
        i : int
            Index into ``self.parts``.
        color : str
            A colour name of the world's palette (``world.colors``, by default :data:`PALETTE`).

        Returns
        -------
        Scene
            A new scene; ``self`` is unchanged.

        Raises
        ------
        IndexError
            `i` is not in ``0 .. len(self.parts) - 1``.
        ValueError
            `color` is not a colour of the palette (the message lists them), or the scene has no
            drawing.
        """
        return Scene.from_drawing(self._drawing().with_part_color(i, color))


def partsworld_collate(batch: Sequence[Scene]) -> dict:
    """A DataLoader ``collate_fn`` that keeps everything as lists (images stay PIL, masks numpy).

    Parameters
    ----------
    batch : sequence of Scene
        B scenes.

    Returns
    -------
    dict
        ``images``, ``captions``, ``labels``, ``indices`` and ``scenes``: lists of length B.
    """
    batch = list(batch)
    return {
        "images": [s.image for s in batch],
        "captions": [s.caption for s in batch],
        "labels": [s.labels for s in batch],
        "indices": [s.index for s in batch],
        "scenes": batch,
    }
