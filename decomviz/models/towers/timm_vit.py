"""timm transformer towers behind open_clip's `TimmModel`: ViT (incl. SigLIP / SigLIP2 with their attention-pool
head, MobileCLIP2-B, the hybrid and relative-position ViTs, ViTamin) and EVA / EVA02 / PE-Core."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from .base import AttentionSpec, Tower, block_layers


def _trunk(model: torch.nn.Module):
    return getattr(getattr(model, "visual", None), "trunk", None)


class TimmViT(Tower):
    """Layers ``visual.trunk.blocks.{i}`` (default: the input of the last block), tokens (B, N, D) whose first
    ``N - h*w`` are prefix tokens (class, registers; none for an attention-pool head). A plain timm
    `VisionTransformer` runs its tail directly (blocks, norm, head, open_clip's projection); other classes (EVA's
    rotary embeddings, relative positions) by substitution."""

    kind = "timm-vit"

    @classmethod
    def matches(cls, model: torch.nn.Module) -> bool:
        trunk = _trunk(model)
        return trunk is not None and hasattr(trunk, "blocks") and hasattr(trunk, "patch_embed")

    def _describe(self) -> Tuple[List[str], str]:
        self.trunk = self.visual.trunk
        return block_layers("visual.trunk.blocks", len(self.trunk.blocks))

    def attention_spec(self) -> Optional[AttentionSpec]:
        blocks = tuple(f"visual.trunk.blocks.{i}" for i in range(len(self.trunk.blocks)))
        attentions = []
        for name in blocks:
            attn = getattr(self.model.get_submodule(name), "attn", None)
            cls = type(attn).__name__
            if cls == "Attention" and hasattr(attn, "qkv"):
                attentions.append((f"{name}.attn", "timm"))
            elif cls in ("EvaAttention", "AttentionRope") and hasattr(attn, "attn_drop"):
                attentions.append((f"{name}.attn", "probs"))
            else:
                return None  # an attention decomviz does not know how to read
        pool = getattr(self.trunk, "global_pool", "token")
        if pool == "map" and type(getattr(self.trunk, "attn_pool", None)).__name__ == "AttentionPoolLatent":
            return AttentionSpec(blocks, tuple(attentions), "map", ("visual.trunk.attn_pool", "timm-pool"))
        if pool in ("token", "avg"):
            return AttentionSpec(blocks, tuple(attentions), "cls" if pool == "token" else "avg")
        return None

    def patch_grid(self) -> Optional[Tuple[int, int]]:
        grid = getattr(self.trunk.patch_embed, "grid_size", None)
        if grid is not None:
            return tuple(int(g) for g in grid)
        H, W = self._input_size()
        patch = getattr(self.trunk.patch_embed, "patch_size", (16, 16))
        patch = (patch, patch) if isinstance(patch, int) else patch
        return H // patch[0], W // patch[1]

    def hooks(self, tap) -> list:
        # the grid the tokens really have: a config may build the trunk for one size and feed it another
        # (open_clip's ViTamin-XL-384 is a 384 px trunk given 256 px images)
        proj = getattr(self.trunk.patch_embed, "proj", None)  # a patch conv, or (hybrid stems) an identity
        if not isinstance(proj, torch.nn.Module):
            return []

        def capture(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.ndim == 4:  # (B, D, h, w), before flattening
                tap.patch_grid = tuple(output.shape[-2:])
        return [proj.register_forward_hook(capture)]

    def forward_from(self, layer: str, raw: torch.Tensor) -> torch.Tensor:
        from timm.models.vision_transformer import VisionTransformer
        if type(self.trunk) is not VisionTransformer or not isinstance(self.trunk.blocks, torch.nn.Sequential):
            return super().forward_from(layer, raw)
        x = self.trunk.blocks[int(layer.rsplit(".", 1)[1]) + 1:](raw)
        x = self.trunk.forward_head(self.trunk.norm(x))
        return self.visual.head(x)
