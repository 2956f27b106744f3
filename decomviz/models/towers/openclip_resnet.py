"""open_clip's ModifiedResNet (the CLIP ResNets): four NCHW stages and an attention pool."""
from __future__ import annotations

from typing import List, Optional, Tuple

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

    def pooling_head(self, layer: str) -> Optional[torch.nn.Module]:
        return self.visual.attnpool if layer == "visual.layer4" else None

    def blocks_from_top(self) -> List[Tuple[str, List[torch.nn.Parameter]]]:
        v = self.visual
        return [("visual.attnpool", list(v.attnpool.parameters()))] + [
            (f"visual.layer{i}", list(getattr(v, f"layer{i}").parameters())) for i in (4, 3, 2, 1)]

    def forward_from(self, layer: str, raw: torch.Tensor) -> torch.Tensor:
        x = raw
        for i in range(int(layer[-1]) + 1, 5):
            x = getattr(self.visual, f"layer{i}")(x)
        return self.visual.attnpool(x)
