"""open_clip's VisionTransformer: CLIP ViTs, with a class token or without (global average pooling), and CoCa's
attentional pooler."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from .base import AttentionSpec, Tower, block_layers


class OpenCLIPViT(Tower):
    """Layers ``visual.ln_pre`` and ``visual.transformer.resblocks.{i}`` (default: the input of the last block);
    tokens (B, N, D), or (N, B, D) for towers that are not batch-first; the patch grid is read off ``conv1``."""

    kind = "vit"

    @classmethod
    def matches(cls, model: torch.nn.Module) -> bool:
        visual = getattr(model, "visual", None)
        blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
        return blocks is not None and hasattr(visual, "conv1")

    @property
    def batch_first(self) -> bool:  # read at each use: older open_clip ran (N, B, D)
        return bool(getattr(self.visual.transformer, "batch_first", True))

    def _describe(self) -> Tuple[List[str], str]:
        n = len(self.visual.transformer.resblocks)
        layers, default = block_layers("visual.transformer.resblocks", n)
        return ["visual.ln_pre"] + layers, default if n >= 2 else "visual.ln_pre"

    def attention_spec(self) -> Optional[AttentionSpec]:
        v = self.visual
        blocks = tuple(f"visual.transformer.resblocks.{i}" for i in range(len(v.transformer.resblocks)))
        attentions = tuple((f"{b}.attn", "mha") for b in blocks)
        if getattr(v, "attn_pool_contrastive", None) is not None:
            return AttentionSpec(blocks, attentions, "map", ("visual.attn_pool_contrastive.attn", "mha"))
        if getattr(v, "attn_pool", None) is not None:  # CoCa: the pooler's first query is the embedding
            return AttentionSpec(blocks, attentions, "map", ("visual.attn_pool.attn", "mha"))
        if getattr(v, "pool_type", "tok") not in ("tok", "avg"):
            return None
        return AttentionSpec(blocks, attentions, "cls" if v.pool_type == "tok" else "avg")

    def hooks(self, tap) -> list:
        def capture(module, inputs, output):
            tap.patch_grid = tuple(output.shape[-2:])
        return [self.visual.conv1.register_forward_hook(capture)]

    def blocks_from_top(self) -> List[Tuple[str, List[torch.nn.Parameter]]]:
        v = self.visual
        head = list(v.ln_post.parameters()) + ([v.proj] if getattr(v, "proj", None) is not None else [])
        blocks = v.transformer.resblocks
        return [("visual.ln_post+proj", head)] + [(f"visual.transformer.resblocks.{i}", list(blocks[i].parameters()))
                                                  for i in range(len(blocks) - 1, -1, -1)]

    def forward_from(self, layer: str, raw: torch.Tensor) -> torch.Tensor:
        v = self.visual
        start = 0 if layer == "visual.ln_pre" else int(layer.rsplit(".", 1)[1]) + 1
        x = raw
        for block in v.transformer.resblocks[start:]:
            x = block(x)
        if not self.batch_first:
            x = x.transpose(0, 1)
        pooled, _ = v._pool(x)
        return pooled @ v.proj if v.proj is not None else pooled
