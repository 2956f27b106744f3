"""open_clip's ModifiedResNet (the CLIP ResNets): four NCHW stages and an attention pool."""
from __future__ import annotations

from typing import List, Tuple

import torch

from .base import Tower


class OpenCLIPResNet(Tower):
    """Layers ``visual.layer1`` .. ``visual.layer4`` (default: the last stage); the tail is the remaining stages
    and the attention pool (feature-space integration at layer4 takes `models.attnpool`'s shortcut)."""

    kind = "resnet"

    @classmethod
    def matches(cls, model: torch.nn.Module) -> bool:
        visual = getattr(model, "visual", None)
        return hasattr(visual, "layer4") and hasattr(visual, "attnpool")

    def _describe(self) -> Tuple[List[str], str]:
        return [f"visual.layer{i}" for i in range(1, 5)], "visual.layer4"

    def layout(self, layer: str) -> str:
        return "nchw"

    def forward_from(self, layer: str, raw: torch.Tensor) -> torch.Tensor:
        x = raw
        for i in range(int(layer[-1]) + 1, 5):
            x = getattr(self.visual, f"layer{i}")(x)
        return self.visual.attnpool(x)
