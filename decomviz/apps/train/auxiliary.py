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
