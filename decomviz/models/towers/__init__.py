"""Tower adapters, one module per family, and the registry that picks the adapter for a model.

To add a family: a `Tower` subclass in a module of its own, added to `ADAPTERS` (see docs/extending.md)."""
from __future__ import annotations

from typing import Optional

import torch

from .base import Tower
from .hf import HFCLIP, HFSiglip
from .openclip_resnet import OpenCLIPResNet
from .openclip_vit import OpenCLIPViT
from .timm_stages import TimmStages
from .timm_vit import TimmViT

# tried in order; the first whose `matches` accepts the model is used
ADAPTERS = [OpenCLIPResNet, OpenCLIPViT, TimmViT, TimmStages, HFSiglip, HFCLIP]


def adapter_for(model: torch.nn.Module) -> Optional[Tower]:
    """The adapter of the model's image tower, or None when no family knows it."""
    for cls in ADAPTERS:
        if cls.matches(model):
            return cls(model)
    return None


__all__ = ["ADAPTERS", "Tower", "adapter_for"]
