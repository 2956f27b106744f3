"""`Tower`: what decomviz needs to know about one family of image towers, and the layout math they share.

An adapter knows the layers that can be tapped and the default, how a layer's output lies on a grid
(`layout`: "nchw", "nhwc" or "tokens" with prefix tokens before the patch tokens), how to blend two outputs of a
layer (feature-space integration) and how to run the tower's tail from a layer's output to the embedding. It also
runs the image and text encoders of the whole model, so that `CLIPModel` never asks which family it holds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class AttentionSpec:
    """Where a transformer tower's attention lies, for the methods that read attention maps (LeGrad, Grad-ECLIP,
    Chefer et al., rollout; `models.attention` records them).

    blocks : the transformer blocks in order (full names); each one's output is the token sequence z^l.
    attentions : (module name, kind) of each block's attention, in the same order. The kind says how
        `models.attention` recomputes it: "mha" (torch's nn.MultiheadAttention), "timm" (timm's `Attention`), "hf"
        (a Hugging Face CLIP / SigLIP attention) or "probs" (timm's EVA and rotary attentions: their own unfused
        path, read at the dropout of the probabilities; queries, keys and values are not recorded).
    pool : how the embedding reads the last block's tokens: "cls" (the first token), "avg" (the mean of the patch
        tokens) or "map" (an attention pool, `pool_attention`, whose first query is the one pooled).
    pool_attention : (module name, kind) of the attention pool; kind "mha" or "timm-pool" (timm's
        `AttentionPoolLatent`, recomputed whole).
    """

    blocks: Tuple[str, ...]
    attentions: Tuple[Tuple[str, str], ...]
    pool: str
    pool_attention: Optional[Tuple[str, str]] = None


class Tower:
    """Base adapter. A family subclasses it, sets `kind`, implements `matches` and `_describe`, and overrides
    what differs from the defaults (an open_clip-style `encode_image` / `encode_text` / `logit_scale`, and a tail
    run by substitution, see `forward_from`)."""

    kind = "tower"
    prefix = "visual"  # the tower's name inside the model
    batch_first = True  # token layout (B, N, D); False for (N, B, D)
    input_size: Optional[Tuple[int, int]] = None  # set by CLIPModel from the preprocessing
    pad_to_max = True  # prompts padded to the full context (open_clip's tokenizers do; SigLIP pools the last one)

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.visual = model.get_submodule(self.prefix)
        self.layers, self.default_layer = self._describe()

    # ---------------------------------------------------------------- what the family says
    @classmethod
    def matches(cls, model: torch.nn.Module) -> bool:
        raise NotImplementedError

    def _describe(self) -> Tuple[List[str], str]:
        """The tap-able layer names (full names in the model) and the default one."""
        raise NotImplementedError

    def layout(self, layer: str) -> str:
        return "tokens"

    def patch_grid(self) -> Optional[Tuple[int, int]]:
        """The patch grid (h, w) of a token layer, when it is known without a forward pass."""
        return None

    def attention_spec(self) -> Optional[AttentionSpec]:
        """Where the tower's attention maps lie (a transformer), or None when it has none (convolutional towers)."""
        return None

    def hooks(self, tap) -> list:
        """Extra hooks a tap sets (e.g. to read the patch grid off the patch embedding); removed with the tap's."""
        return []

    def pooling_head(self, layer: str) -> Optional[torch.nn.Module]:
        """The attention pool when it is the whole tail after ``layer`` (feature-space integration then blends
        its projections, `models.attnpool`), else None."""
        return None

    def blocks_from_top(self) -> List[Tuple[str, List[torch.nn.Parameter]]]:
        """The tower's blocks from the embedding down, each as (name, its parameters): what the randomisation
        sanity check re-initialises, one more block at each step. Default: the tap-able layers, last first."""
        return [(name, list(self.model.get_submodule(name).parameters())) for name in reversed(self.layers)]

    def preprocess_defaults(self) -> Dict:
        """Preprocessing when the model carries none: image size, mean, std, resize mode."""
        size = getattr(self.visual, "image_size", 224)
        return {"size": size, "mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic",
                "resize_mode": "shortest"}

    def context_length(self) -> int:
        return int(getattr(self.model, "context_length", 77))

    # ---------------------------------------------------------------- encoders (open_clip's interface)
    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x)

    def encode_text(self, tokens: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.encode_text(tokens["input_ids"])

    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.detach().float().exp()

    def token_embedding(self) -> Optional[torch.nn.Embedding]:
        """The text tower's token embedding (what `token_attribution` integrates over), or None."""
        for name in ("token_embedding", "text.token_embedding"):  # open_clip's CLIP, CustomTextCLIP
            module = getattr(self.model, name.split(".")[0], None)
            module = getattr(module, "token_embedding", None) if "." in name else module
            if isinstance(module, torch.nn.Embedding):
                return module
        return None

    # ---------------------------------------------------------------- the tail
    def forward_from(self, layer: str, raw: torch.Tensor) -> torch.Tensor:
        """The embedding (not normalised) from `raw`, the output of `layer` in the tower's layout.

        Default: substitution. The image encoder runs on a blank batch with `layer`'s output replaced by `raw`;
        exact for any layer whose output is the only way to the embedding (a block or stage of a stack), at the
        cost of the layers below. Families with a simple tail override it."""
        module = self.model.get_submodule(layer)
        n = raw.shape[self.batch_axis(layer, raw)]
        H, W = self._input_size()
        blank = torch.zeros(n, 3, H, W, device=raw.device, dtype=self._input_dtype())

        def replace(mod, inputs, output):
            if isinstance(output, (tuple, list)):
                return type(output)([raw, *output[1:]])
            return raw

        handle = module.register_forward_hook(replace)
        try:
            return self.encode_image(blank)
        finally:
            handle.remove()

    def batch_axis(self, layer: str, raw: torch.Tensor) -> int:
        return 1 if self.layout(layer) == "tokens" and not self.batch_first else 0

    def _input_size(self) -> Tuple[int, int]:
        size = self.input_size or self.preprocess_defaults()["size"]
        return (size, size) if isinstance(size, int) else tuple(size)

    def _input_dtype(self) -> torch.dtype:
        p = next(self.visual.parameters(), None)
        return p.dtype if p is not None and p.is_floating_point() else torch.float32

    # ---------------------------------------------------------------- layouts
    def grid(self, layer: str, raw: torch.Tensor, t: torch.Tensor, hw: Optional[Tuple[int, int]]) -> torch.Tensor:
        """`t` (the layer's output `raw`, or a gradient of it with extra leading dims) as (..., B, C, h, w) fp32."""
        lead = t.shape[: t.ndim - raw.ndim]
        t = t.float()
        layout = self.layout(layer)
        if layout == "nchw" and raw.ndim == 4:
            return t
        if layout == "nhwc" and raw.ndim == 4:
            return t.movedim(-1, -3)
        if layout != "tokens" or raw.ndim != 3 or hw is None:
            raise RuntimeError(f"Cannot lay out the output of {layer} (shape {tuple(raw.shape)}) on a grid.")
        h, w = hw
        if not self.batch_first:
            t = t.transpose(-3, -2)  # (N, B, D) -> (B, N, D)
        n_tokens = t.shape[-2]
        if n_tokens < h * w:
            raise RuntimeError(f"{layer} has {n_tokens} tokens, fewer than the {h}x{w} patch grid.")
        patches = t[..., n_tokens - h * w:, :]  # class and register tokens come first
        return patches.transpose(-1, -2).reshape(*lead, t.shape[-3], t.shape[-1], h, w)

    def blend(self, layer: str, raw: torch.Tensor, index: torch.Tensor, other: torch.Tensor,
              masks: torch.Tensor) -> torch.Tensor:
        """In the tower's layout: M * raw[index] + (1 - M) * other[index] at the grid cells, for masks (N, h, w) in
        [0, 1]; prefix tokens (class, registers) are kept from `raw`."""
        layout = self.layout(layer)
        if layout == "nchw":
            m = masks[:, None].to(raw.dtype)
            return m * raw[index] + (1 - m) * other[index]
        if layout == "nhwc":
            m = masks[..., None].to(raw.dtype)
            return m * raw[index] + (1 - m) * other[index]
        bf = self.batch_first
        a = raw[index] if bf else raw[:, index].transpose(0, 1)
        o = other[index] if bf else other[:, index].transpose(0, 1)
        n = masks.shape[-2] * masks.shape[-1]
        m = masks.reshape(len(index), n, 1).to(a.dtype)
        out = torch.cat([a[:, :-n], m * a[:, -n:] + (1 - m) * o[:, -n:]], dim=1)
        return out if bf else out.transpose(0, 1)


def block_layers(prefix: str, n: int) -> Tuple[List[str], str]:
    """Names of a stack of n transformer blocks, and the default: the input of the last block (the last block's
    patch tokens get no gradient when only a class token is pooled), i.e. the previous block's output."""
    layers = [f"{prefix}.{i}" for i in range(n)]
    return layers, layers[-2] if n >= 2 else layers[-1]

