"""Hugging Face `CLIPModel` and `SiglipModel` (transformers, an optional extra: ``pip install decomviz[hf]``)."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from .base import OPENAI_MEAN, OPENAI_STD, AttentionSpec, Tower, block_layers


def _pooled(output) -> torch.Tensor:
    """A `get_*_features` result (a tensor, or an output with ``pooler_output`` in transformers 5) as a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class HFCLIP(Tower):
    """Layers ``vision_model.encoder.layers.{i}`` (default: the input of the last one), tokens (B, 1 + h*w, D)
    with the class token first; the tail runs by substitution."""

    kind = "hf-clip"
    prefix = "vision_model"
    class_name = "CLIPModel"
    pad_to_max = False  # text padding: to the longest prompt (with an attention mask)

    @classmethod
    def matches(cls, model: torch.nn.Module) -> bool:
        return type(model).__module__.startswith("transformers") and any(
            c.__name__ == cls.class_name for c in type(model).__mro__)

    def _describe(self) -> Tuple[List[str], str]:
        return block_layers(f"{self.prefix}.encoder.layers", len(self.visual.encoder.layers))

    def _vision_config(self):
        return self.model.config.vision_config

    def attention_spec(self) -> Optional[AttentionSpec]:
        blocks = tuple(f"{self.prefix}.encoder.layers.{i}" for i in range(len(self.visual.encoder.layers)))
        attentions = tuple((f"{b}.self_attn", "hf") for b in blocks)
        if self.class_name == "CLIPModel":
            return AttentionSpec(blocks, attentions, "cls")
        if getattr(self.visual, "head", None) is not None and hasattr(self.visual.head, "attention"):
            return AttentionSpec(blocks, attentions, "map", (f"{self.prefix}.head.attention", "mha"))
        return None

    def patch_grid(self) -> Optional[Tuple[int, int]]:
        H, W = self._input_size()
        p = self._vision_config().patch_size
        return H // p, W // p

    def preprocess_defaults(self) -> Dict:
        return {"size": self._vision_config().image_size, "mean": OPENAI_MEAN, "std": OPENAI_STD,
                "interpolation": "bicubic", "resize_mode": "shortest"}

    def context_length(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings)

    def token_embedding(self) -> Optional[torch.nn.Embedding]:
        return self.model.text_model.embeddings.token_embedding

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return _pooled(self.model.get_image_features(pixel_values=x))

    def encode_text(self, tokens: Dict[str, torch.Tensor]) -> torch.Tensor:
        keep = ("input_ids", "attention_mask") if not self.pad_to_max else ("input_ids",)
        return _pooled(self.model.get_text_features(**{k: v for k, v in tokens.items() if k in keep}))


class HFSiglip(HFCLIP):
    """SigLIP: no class token (the attention-pool head reads every patch token), inputs squashed to the model's
    size with mean and std 0.5, prompts padded to the full context as in training."""

    kind = "hf-siglip"
    class_name = "SiglipModel"
    pad_to_max = True

    def preprocess_defaults(self) -> Dict:
        return {"size": self._vision_config().image_size, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                "interpolation": "bicubic", "resize_mode": "squash"}
