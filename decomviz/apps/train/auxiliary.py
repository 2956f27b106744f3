"""An auxiliary training target that puts part colours in the image embedding (issue 11).

Trained without it, the small ResNet came out colour-blind in both towers, and colour binding stayed at chance
(BENCHMARKS.md, issue 11). Our reading: the attribute hard negatives give no gradient while each tower waits for
the other to see colour. This target gives the image tower a signal of its own:
a linear head on the normalised image embedding predicts, for every (class, part) slot of PartsWorld whose part
is drawn, that part's colour among the 12 of the palette (cross-entropy; slots not drawn are ignored). Knowing
the class alone leaves it at log 12: only colour lowers it. (A first version used a multi-label target over
(slot, colour) pairs, which the class alone could mostly satisfy: its loss fell while a linear probe still
read no colour from the embedding.) The head is dropped after training: the saved model is a plain open_clip
CLIP, and every evaluation uses CLIP scores only.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import torch

from ...data import CLASSES, PALETTE, PARTS, Scene

#: The (class, part) slots in a fixed order.
SLOTS: List[Tuple[str, str]] = [(c, p) for c in CLASSES for p in PARTS[c]]
_SLOT_INDEX: Dict[Tuple[str, str], int] = {s: k for k, s in enumerate(SLOTS)}
_COLOUR_INDEX: Dict[str, int] = {c: k for k, c in enumerate(PALETTE)}
NOT_DRAWN = -1


def part_colour_target(scene: Scene) -> torch.Tensor:
    """(len(SLOTS),) int64: for each (class, part) slot, the palette index of that part's colour where the scene
    draws it, `NOT_DRAWN` elsewhere (a part removed by `Scene.without_part`, or hidden entirely)."""
    y = torch.full((len(SLOTS),), NOT_DRAWN, dtype=torch.int64)
    for part in scene.parts:
        if part.mask.any():
            y[_SLOT_INDEX[(scene.objects[part.object].label, part.name)]] = _COLOUR_INDEX[part.color]
    return y


class PartColourHead(torch.nn.Module):
    """A linear read-out of each drawn part's colour from the normalised image embedding."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.linear = torch.nn.Linear(embed_dim, len(SLOTS) * len(PALETTE))
        # a unit-norm embedding has components of about 1/sqrt(D): scaled back to about 1, the head's logits and
        # the gradient it sends to the tower are of a useful size from the first step (unscaled, the loss sat at
        # log 12 for 400 steps)
        self.gain = float(embed_dim) ** 0.5

    def loss(self, image_embedding: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the drawn parts of the batch; log 12 (2.48) when colour is not seen."""
        logits = self.linear(self.gain * image_embedding).view(-1, len(PALETTE))
        return torch.nn.functional.cross_entropy(logits, target.reshape(-1), ignore_index=NOT_DRAWN)


# ------------------------------------------------------------------------------------ the dense target

#: Most parts a scene may have for `part_area_target` (the recipes draw at most 2 objects of at most 5 parts).
MAX_PARTS = 16


def part_area_target(scene: Scene, grid: int) -> Dict[str, torch.Tensor]:
    """Where each drawn part lies on a ``grid x grid`` feature map, and which (slot, colour) it is.

    Returns ``classes`` ((MAX_PARTS,) int64: ``slot * len(PALETTE) + colour`` of each part, `NOT_DRAWN` for
    padding and hidden parts) and ``areas`` ((MAX_PARTS, grid, grid) float32: the share of each cell the part
    covers)."""
    if len(scene.parts) > MAX_PARTS:
        raise ValueError(f"the scene has {len(scene.parts)} parts; part_area_target takes at most {MAX_PARTS} "
                         f"(draw fewer objects per scene, or raise auxiliary.MAX_PARTS)")
    classes = torch.full((MAX_PARTS,), NOT_DRAWN, dtype=torch.int64)
    areas = torch.zeros((MAX_PARTS, grid, grid))
    for k, part in enumerate(scene.parts):
        if part.mask.any():
            slot = _SLOT_INDEX[(scene.objects[part.object].label, part.name)]
            classes[k] = slot * len(PALETTE) + _COLOUR_INDEX[part.color]
    if scene.parts:
        masks = torch.from_numpy(np.stack([part.mask for part in scene.parts])).float()
        areas[:len(scene.parts)] = torch.nn.functional.adaptive_avg_pool2d(masks[None], grid)[0]
    return {"classes": classes, "areas": areas}


class DensePartHead(torch.nn.Module):
    """A 1 x 1 convolution on one layer's feature map that names, in every cell, which part of which class lies
    there and in which colour: one of ``len(SLOTS) * len(PALETTE)`` joint classes.

    Why (BENCHMARKS.md, issue 11): with only `PartColourHead` on the pooled embedding, every recipe read the
    colour of each object's largest part and not of its smallest (binding 0.83 against 0.08). A joint target
    per cell asks each location for the conjunction "this is the eye, and it is red", so that the features
    pooled into the embedding carry it; a separate part and colour would be mixed up once pooled over several
    parts. Each part counts equally in the loss, whatever its size. Like the other head, it is dropped after
    training.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, len(SLOTS) * len(PALETTE), kernel_size=1)

    def loss(self, features: torch.Tensor, classes: torch.Tensor, areas: torch.Tensor) -> torch.Tensor:
        """Mean over the batch's drawn parts of the part's cross-entropy, averaged over its cells by area.

        ``features`` (B, C, g, g); ``classes`` (B, K); ``areas`` (B, K, g, g), as `part_area_target` gives."""
        if features.shape[-2:] != areas.shape[-2:]:
            raise ValueError(f"the feature map is {tuple(features.shape[-2:])} but the targets were pooled to "
                             f"{tuple(areas.shape[-2:])}: build part_area_target with the tapped layer's grid")
        logp = torch.log_softmax(self.conv(features.float()), dim=1)                # (B, n_classes, g, g)
        drawn = classes != NOT_DRAWN
        picked = torch.gather(logp, 1, classes.clamp(min=0)[..., None, None].expand(-1, -1, *logp.shape[-2:]))
        per_part = -(picked * areas).sum((-2, -1)) / areas.sum((-2, -1)).clamp(min=1e-6)   # (B, K)
        return per_part[drawn].mean() if drawn.any() else logp.sum() * 0.0
