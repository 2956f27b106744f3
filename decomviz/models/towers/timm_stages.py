"""timm towers made of spatial stages behind open_clip's `TimmModel`: ConvNeXt and FastViT / MobileCLIP (NCHW
stages in ``trunk.stages``) and Swin (NHWC stages in ``trunk.layers``)."""
from __future__ import annotations

from typing import List, Tuple

import torch

from .base import Tower


def _stages(trunk) -> Tuple[str, torch.nn.Module]:
    for name in ("stages", "layers"):
        stages = getattr(trunk, name, None)
        if isinstance(stages, (torch.nn.Sequential, torch.nn.ModuleList)) and len(stages):
            return name, stages
    return "", None


# what forward_features runs after the stages, by timm class name
_AFTER_STAGES = {"ConvNeXt": "norm_pre", "SwinTransformer": "norm", "FastVit": "final_conv"}


class TimmStages(Tower):
    """Layers ``visual.trunk.stages.{i}`` (or ``.layers.{i}``), default: the last stage; the layout is the
    trunk's ``output_fmt`` (NHWC for Swin, NCHW otherwise). The tail: the later stages, what the class runs
    between its stages and its head (`_AFTER_STAGES`), the head and open_clip's projection; a class not listed
    there runs it by substitution."""

    kind = "timm-stages"

    @classmethod
    def matches(cls, model: torch.nn.Module) -> bool:
        trunk = getattr(getattr(model, "visual", None), "trunk", None)
        return trunk is not None and not hasattr(trunk, "blocks") and _stages(trunk)[1] is not None

    def _describe(self) -> Tuple[List[str], str]:
        name, stages = _stages(self.visual.trunk)
        fmt = str(getattr(self.visual.trunk, "output_fmt", "NCHW"))
        self._layout = "nhwc" if "NHWC" in fmt.upper() else "nchw"
        layers = [f"visual.trunk.{name}.{i}" for i in range(len(stages))]
        return layers, layers[-1]

    def layout(self, layer: str) -> str:
        return self._layout

    def forward_from(self, layer: str, raw: torch.Tensor) -> torch.Tensor:
        trunk = self.visual.trunk
        after = _AFTER_STAGES.get(type(trunk).__name__)
        _, stages = _stages(trunk)
        if after is None or not isinstance(stages, torch.nn.Sequential):
            return super().forward_from(layer, raw)
        x = stages[int(layer.rsplit(".", 1)[1]) + 1:](raw)
        x = trunk.forward_head(getattr(trunk, after)(x))
        return self.visual.head(x)
