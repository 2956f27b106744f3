"""`CLIPModel`: the wrapper every other module talks to (preprocessing, tokenizer, encoders, layers)."""
from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..images import ImageInputError, load_images, resize_center_crop

_TEXT_CACHE_SIZE = 4096


class ModelLoadError(RuntimeError):
    """A model could not be built or its weights could not be found; the message says how to fix it."""


class LayerError(ValueError):
    """A layer name that the model cannot tap."""


@dataclass
class PreparedImages:
    """Images ready for the image tower, and the exact pixels they show (for overlays)."""

    tensor: torch.Tensor  # (B, 3, H, W), normalised, on the model's device
    pixels: np.ndarray  # (B, H, W, 3) uint8: the resized, centre-cropped images the tensor encodes


class CLIPModel:
    """A CLIP-style model with its preprocessing and tokenizer, ready to be explained.

    Attributes: `model` (the open_clip module, eval mode, no gradients on weights), `name`, `pretrained`,
    `device`, `image_size` (H, W), `layers` (tap-able layer names), `default_layer`, `kind` ("resnet"|"vit").
    """

    def __init__(self, model: torch.nn.Module, tokenizer, *, name: str, pretrained: Optional[str],
                 source: str, preprocess_cfg: Dict[str, Any], device: Union[str, torch.device],
                 default_layer: Optional[str] = None):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.pretrained = pretrained
        self.source = source
        self.device = torch.device(device)
        self.preprocess_cfg = dict(preprocess_cfg)
        size = preprocess_cfg.get("size", getattr(model.visual, "image_size", 224))
        self.image_size: Tuple[int, int] = (size, size) if isinstance(size, int) else tuple(size)
        mean = preprocess_cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))
        std = preprocess_cfg.get("std", (0.26862954, 0.26130258, 0.27577711))
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.interpolation = preprocess_cfg.get("interpolation", "bicubic")
        self.kind, self.layers, self.default_layer = _describe_tower(model.visual)
        if default_layer is not None:   # a checkpoint may name its own (e.g. a finer grid than the last stage)
            if default_layer not in self.layers:
                raise ModelLoadError(f"The model's config names default layer {default_layer!r}, which is not one "
                                     f"of its layers: {', '.join(self.layers)}.")
            self.default_layer = default_layer
        self._text_cache: "OrderedDict[str, torch.Tensor]" = OrderedDict()

    def __repr__(self) -> str:
        tag = f", pretrained={self.pretrained!r}" if self.pretrained else ""
        return (f"CLIPModel({self.name!r}{tag}, kind={self.kind!r}, image_size={self.image_size}, "
                f"default_layer={self.default_layer!r}, device={str(self.device)!r})")

    def clone(self) -> "CLIPModel":
        """An independent copy (weights copied), e.g. to re-initialise layers for a sanity check."""
        import copy
        twin = CLIPModel(copy.deepcopy(self.model), self.tokenizer, name=self.name, pretrained=self.pretrained,
                         source=self.source, preprocess_cfg=self.preprocess_cfg, device=self.device,
                         default_layer=self.default_layer)
        twin._text_cache = self._text_cache.copy()
        return twin

    # ------------------------------------------------------------------ layers
    @property
    def visual(self) -> torch.nn.Module:
        return self.model.visual

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.detach().float().exp()

    def resolve_layer(self, layer: Optional[str]) -> str:
        layer = self.default_layer if layer is None else layer
        if not isinstance(layer, str) or layer not in self.layers:
            raise LayerError(f"Unknown layer {layer!r} for {self.name}. Valid layers: {', '.join(self.layers)} "
                             f"(default: {self.default_layer}).")
        return layer

    def module(self, layer: str) -> torch.nn.Module:
        return self.model.get_submodule(self.resolve_layer(layer))

    # ------------------------------------------------------------------ images
    def prepare(self, images: Any) -> PreparedImages:
        """Images (PIL, paths, uint8 arrays, or a list of them) -> normalised tensor + displayed pixels.

        Resizes the shorter side to the model's input size and centre-crops, as CLIP's preprocessing does.
        A float tensor (B, 3, H, W) is taken as already normalised for this model.
        """
        if isinstance(images, torch.Tensor):
            return self._prepare_tensor(images)
        pils = load_images(images)
        H, W = self.image_size
        resample = Image.BICUBIC if self.interpolation == "bicubic" else Image.BILINEAR
        pixels = np.stack([resize_center_crop(im, (H, W), resample) for im in pils])
        tensor = torch.from_numpy(pixels).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        return PreparedImages((tensor - self.mean) / self.std, pixels)

    def _prepare_tensor(self, x: torch.Tensor) -> PreparedImages:
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
            raise ImageInputError(f"A tensor input must be a normalised float (B, 3, H, W) batch; got "
                                  f"{tuple(x.shape)} {x.dtype}. Pass PIL images or uint8 arrays to have them "
                                  "preprocessed.")
        x = x.to(self.device, torch.float32)
        pixels = ((x * self.std + self.mean).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        return PreparedImages(x, pixels)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised image embeddings of a preprocessed batch (keeps whatever autograd context it is in)."""
        return F.normalize(self.model.encode_image(x).float(), dim=-1)

    def forward_from(self, layer: str, raw: torch.Tensor) -> torch.Tensor:
        """Run the image tower from the output of `layer` (in the tower's own layout) to the embedding
        (not normalised). `forward_from(layer, tap.raw)` equals the full forward."""
        layer = self.resolve_layer(layer)
        v = self.visual
        if self.kind == "resnet":
            x = raw
            for i in range(int(layer[-1]) + 1, 5):
                x = getattr(v, f"layer{i}")(x)
            return v.attnpool(x)
        start = 0 if layer == "visual.ln_pre" else int(layer.rsplit(".", 1)[1]) + 1
        x = raw
        for block in v.transformer.resblocks[start:]:
            x = block(x)
        if not getattr(v.transformer, "batch_first", True):
            x = x.transpose(0, 1)
        pooled, _ = v._pool(x)
        return pooled @ v.proj if v.proj is not None else pooled

    @torch.no_grad()
    def encode_image(self, images: Any, batch_size: int = 64) -> torch.Tensor:
        """L2-normalised image embeddings (B, D) of images given as anywhere else in the API."""
        x = self.prepare(images).tensor
        return torch.cat([self.embed(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

    # ------------------------------------------------------------------ text
    def check_prompts(self, prompts: Union[str, Sequence[str]]) -> List[str]:
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, (list, tuple)) or len(prompts) == 0:
            raise ValueError("Prompts must be a non-empty string or a non-empty list of strings, "
                             f"got {type(prompts).__name__}.")
        out = []
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise ValueError(f"Prompt {i} is a {type(p).__name__}, not a string.")
            if not p.strip():
                raise ValueError(f"Prompt {i} is empty: give some text to explain the image against, "
                                 "e.g. 'a photo of a house'.")
            out.append(p)
        return out

    @torch.no_grad()
    def encode_text(self, prompts: Union[str, Sequence[str]]) -> torch.Tensor:
        """L2-normalised text embeddings (T, D); each distinct prompt is encoded once and cached."""
        prompts = self.check_prompts(prompts)
        missing = list(dict.fromkeys(p for p in prompts if p not in self._text_cache))
        if missing:
            self._warn_truncation(missing)
            tokens = self.tokenizer(missing).to(self.device)
            emb = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
            for p, e in zip(missing, emb):
                self._text_cache[p] = e
            while len(self._text_cache) > _TEXT_CACHE_SIZE:
                self._text_cache.popitem(last=False)
        return torch.stack([self._text_cache[p] for p in prompts])

    def _warn_truncation(self, prompts: List[str]) -> None:
        encode = getattr(self.tokenizer, "encode", None)
        ctx = getattr(self.tokenizer, "context_length", None)
        if encode is None or ctx is None:
            return
        for p in prompts:
            n = len(encode(p)) + 2  # start and end tokens
            if n > ctx:
                warnings.warn(f"Prompt {p[:40]!r}... has {n} tokens, more than the model's context of {ctx}; "
                              "it is truncated.", stacklevel=4)


def _describe_tower(visual: torch.nn.Module) -> Tuple[str, List[str], str]:
    """Which layers of an image tower can be tapped, and the default (see docs/method.md)."""
    if hasattr(visual, "layer4") and hasattr(visual, "attnpool"):
        layers = [f"visual.layer{i}" for i in range(1, 5)]
        return "resnet", layers, "visual.layer4"
    transformer = getattr(visual, "transformer", None)
    blocks = getattr(transformer, "resblocks", None)
    if blocks is not None and hasattr(visual, "conv1"):
        n = len(blocks)
        layers = ["visual.ln_pre"] + [f"visual.transformer.resblocks.{i}" for i in range(n)]
        # The last block's patch tokens get no gradient: tap its input, i.e. the previous block's output.
        default = f"visual.transformer.resblocks.{n - 2}" if n >= 2 else "visual.ln_pre"
        return "vit", layers, default
    raise ModelLoadError(
        f"decomviz can explain CLIP ResNet (ModifiedResNet) and ViT image towers; this model's tower is a "
        f"{type(visual).__name__}. Use an open_clip model with a native RN or ViT tower.")
