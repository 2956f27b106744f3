"""An auxiliary training target that keeps part colours in the image embedding (issue 11).

Trained on object captions first, the small ResNet learns that colour never changes a class and drops it from
both towers; the attribute hard negatives then give no gradient, because each tower waits for the other to
see colour (BENCHMARKS.md, "parts-rn is colour-blind"). This target gives the image tower a signal of its own:
a linear head on the normalised image embedding predicts, for every (class, part) slot of PartsWorld, the
colour of that part when it is drawn (multi-label, binary cross-entropy). The head is dropped after training:
the saved model is a plain open_clip CLIP, and every evaluation uses CLIP scores only.
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
N_TARGETS = len(SLOTS) * len(PALETTE)


def part_colour_target(scene: Scene) -> torch.Tensor:
    """(len(SLOTS) * 12,) float multi-hot: slot ``s`` of a drawn part with colour ``c`` sets ``s * 12 + c``.

    A part that was removed (`Scene.without_part`) or hidden entirely sets nothing, so the target also says
    which parts are present.
    """
    y = np.zeros(N_TARGETS, dtype=np.float32)
    for part in scene.parts:
        if not part.mask.any():
            continue
        slot = _SLOT_INDEX[(scene.objects[part.object].label, part.name)]
        y[slot * len(PALETTE) + _COLOUR_INDEX[part.color]] = 1.0
    return torch.from_numpy(y)


class PartColourHead(torch.nn.Module):
    """A linear read-out of `part_colour_target` from the normalised image embedding."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.linear = torch.nn.Linear(embed_dim, N_TARGETS)

    def loss(self, image_embedding: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = self.linear(image_embedding)
        # mean over the positives and the negatives separately: 564 targets, of which only about 4-8 are set
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
        pos = (bce * target).sum() / target.sum().clamp_min(1)
        neg = (bce * (1 - target)).sum() / (1 - target).sum().clamp_min(1)
        return pos + neg
