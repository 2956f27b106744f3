"""`CLIPModel`: the wrapper every other module talks to (preprocessing, tokenizer, encoders, layers)."""
from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..images import ImageInputError, crop_box, load_images, resize_center_crop
from .text import make_tokenize
from .towers import adapter_for

_TEXT_CACHE_SIZE = 4096
_TEXT_BATCH = 256  # prompts per pass of the text tower: memory stays bounded for any number of prompts


class ModelLoadError(RuntimeError):
    """A model could not be built or its weights could not be found; the message says how to fix it."""


class LayerError(ValueError):
    """A layer name that the model cannot tap."""


class Normalized:
    """Marks a float (B, 3, H, W) tensor as already normalised for the model (its mean and std applied), so that
    `CLIPModel.prepare` takes it as it is, whatever its values. ``model.normalize(pixels)`` makes one from pixel
    values in [0, 1]."""

    def __init__(self, tensor: torch.Tensor):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"Normalized wraps a torch tensor, got {type(tensor).__name__}.")
        self.tensor = tensor


@dataclass
class PreparedImages:
    """Images ready for the image tower, and the exact pixels they show (for overlays)."""

    tensor: torch.Tensor  # (B, 3, H, W), normalised, on the model's device
    pixels: np.ndarray  # (B, H, W, 3) uint8: the resized, centre-cropped images the tensor encodes
    #: per image: its size as given (h, w) and the region the model sees, (top, left, height, width) in its pixels
    geometry: Optional[List[Dict[str, List[float]]]] = None


class CLIPModel:
    """A CLIP-style model with its preprocessing and tokenizer, ready to be explained.

    Attributes: `model` (the open_clip or Hugging Face module, eval mode, no gradients on weights), `name`,
    `pretrained`, `device`, `image_size` (H, W), `layers` (tap-able layer names), `default_layer`, `kind` (the tower
    family: "resnet", "vit", "timm-vit", "timm-stages", "hf-clip", "hf-siglip"), `tower` (its adapter, see
    `models.towers`).

    Threads: hooks are set on the model's modules, so one engine call at a time may use a model. `lock` (a
    re-entrant lock, one per model) is held by every method call (`CAM.__call__`), every tap and every pass
    through the towers; threads sharing a model take turns, each with the result it would get alone. For
    parallel work, give each thread its own `model.clone()`.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, *, name: str, pretrained: Optional[str],
                 source: str, preprocess_cfg: Dict[str, Any], device: Union[str, torch.device],
                 default_layer: Optional[str] = None):
        self.model = model.eval().requires_grad_(False)
        self.tower = adapter_for(model)
        if self.tower is None:
            raise ModelLoadError(f"decomviz has no tower adapter for this model ({type(model).__name__}); it explains "
                                 "open_clip towers (ModifiedResNet, VisionTransformer, timm towers) and Hugging Face "
                                 "CLIPModel / SiglipModel. See docs/extending.md to add a family.")
        self.tokenizer = tokenizer
        self._tokenize = make_tokenize(tokenizer, self.tower.context_length(), self.tower.pad_to_max)
        self.name = name
        self.pretrained = pretrained
        self.source = source
        self.device = torch.device(device)
        preprocess_cfg = {**self.tower.preprocess_defaults(), **{k: v for k, v in dict(preprocess_cfg).items()
                                                                  if v is not None}}
        self.preprocess_cfg = preprocess_cfg
        size = preprocess_cfg["size"]
        self.image_size: Tuple[int, int] = (size, size) if isinstance(size, int) else tuple(size)
        self.tower.input_size = self.image_size
        self.mean, self.std = _normalisation(preprocess_cfg["mean"], preprocess_cfg["std"], name, self.device)
        self.interpolation = preprocess_cfg.get("interpolation", "bicubic")
        self.resize_mode = preprocess_cfg.get("resize_mode", "shortest")
        #: how the centre crop's offset is rounded: "round" (open_clip / torchvision), "floor" (Hugging Face)
        self.crop_offsets = preprocess_cfg.get("crop_offsets", "round")
        self.kind, self.layers, self.default_layer = self.tower.kind, self.tower.layers, self.tower.default_layer
        if default_layer is not None:   # a checkpoint may name its own (e.g. a finer grid than the last stage)
            if default_layer not in self.layers:
                raise ModelLoadError(f"The model's config names default layer {default_layer!r}, which is not one "
                                     f"of its layers: {_some(self.layers)}.")
            self.default_layer = default_layer
        self._text_cache: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self.lock = threading.RLock()

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
        """The image tower."""
        return self.tower.visual

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.tower.logit_scale()

    def resolve_layer(self, layer: Union[None, str, torch.nn.Module]) -> str:
        """A layer's name, from its name or the module itself (None: the default layer)."""
        layer = self.default_layer if layer is None else layer
        if isinstance(layer, torch.nn.Module):
            found = next((n for n, m in self.model.named_modules() if m is layer), None)
            if found is None:  # a module of the object given to load_model, which wraps a copy of it
                found = getattr(self, "source_modules", {}).get(layer)
            if found is None or found not in self.layers:
                what = f"module '{found}'" if found is not None else "module that is not part of this model"
                raise LayerError(f"The {type(layer).__name__} {what} cannot be tapped in {self.name}. Valid layers: "
                                 f"{_some(self.layers)} (default: {self.default_layer}).")
            return found
        if not isinstance(layer, str) or layer not in self.layers:
            shown = repr(layer) if isinstance(layer, (str, int, float)) else f"of type {type(layer).__name__}"
            raise LayerError(f"Unknown layer {shown} for {self.name}. Valid layers: {_some(self.layers)} "
                             f"(default: {self.default_layer}).")
        return layer

    def module(self, layer: str) -> torch.nn.Module:
        return self.model.get_submodule(self.resolve_layer(layer))

    # ------------------------------------------------------------------ images
    def prepare(self, images: Any) -> PreparedImages:
        """Images (PIL, paths, uint8 arrays, or a list of them) -> normalised tensor + displayed pixels.

        Resizes the shorter side to the model's input size and centre-crops, as CLIP's preprocessing does.
        A float tensor (B, 3, H, W) must be normalised for this model: one with every value in [0, 1] (pixels or
        a normalised batch?) or far outside the normalised range is refused; ``model.normalize(pixels)`` or
        ``Normalized(tensor)`` says which it is.
        """
        if isinstance(images, Normalized):
            return self._prepare_tensor(images.tensor, marked=True)
        if isinstance(images, torch.Tensor):
            return self._prepare_tensor(images)
        pils = load_images(images)
        H, W = self.image_size
        resample = Image.BICUBIC if self.interpolation == "bicubic" else Image.BILINEAR
        if self.resize_mode == "squash":  # the whole image, resized to the model's size (SigLIP)
            pixels = np.stack([np.asarray(im.resize((W, H), resample), dtype=np.uint8) for im in pils])
        else:
            pixels = np.stack([resize_center_crop(im, (H, W), resample, self.crop_offsets) for im in pils])
        tensor = torch.from_numpy(pixels).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        mode = "squash" if self.resize_mode == "squash" else "crop"
        geometry = [{"size": [im.height, im.width], "box": list(crop_box(im.size, (H, W), mode, self.crop_offsets))}
                    for im in pils]
        return PreparedImages((tensor - self.mean) / self.std, pixels, geometry)

    def normalize(self, pixels: torch.Tensor) -> Normalized:
        """A float (B, 3, H, W) tensor of pixel values in [0, 1], normalised for this model (marked as such)."""
        if not isinstance(pixels, torch.Tensor) or not pixels.is_floating_point():
            raise ImageInputError("normalize takes a float tensor of pixel values in [0, 1], (B, 3, H, W).")
        x = pixels.to(self.device, torch.float32)
        x = x[None] if x.ndim == 3 else x
        if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
            raise ImageInputError(f"normalize takes pixel values in [0, 1]; these span [{float(x.min()):.3g}, "
                                  f"{float(x.max()):.3g}] (for 0-255 values divide by 255).")
        return Normalized((x - self.mean) / self.std)

    def _prepare_tensor(self, x: torch.Tensor, marked: bool = False) -> PreparedImages:
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
            raise ImageInputError(f"A tensor input must be a normalised float (B, 3, H, W) batch; got "
                                  f"{tuple(x.shape)} {x.dtype}. Pass PIL images or uint8 arrays to have them "
                                  "preprocessed.")
        if tuple(x.shape[-2:]) != tuple(self.image_size):
            H, W = self.image_size
            raise ImageInputError(f"The tensor's images are {x.shape[-2]}x{x.shape[-1]}, but {self.name} takes "
                                  f"{H}x{W} inputs. Pass PIL images or arrays to have them resized and centre-"
                                  f"cropped, or resize the tensor to {H}x{W} first.")
        x = x.to(self.device, torch.float32)
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise ImageInputError(f"The input tensor holds {bad} NaN or infinite value(s); fix the input.")
        if not marked:
            self._check_normalised(x)
        pixels = ((x * self.std + self.mean).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        return PreparedImages(x, pixels)

    def _check_normalised(self, x: torch.Tensor) -> None:
        lo, hi = float(x.min()), float(x.max())
        if lo >= 0 and hi <= 1:
            raise ImageInputError(
                "A float tensor with every value in [0, 1] is ambiguous: pixel values, or an already normalised "
                "batch? For pixel values pass model.normalize(tensor); for a normalised batch pass "
                "decomviz.models.Normalized(tensor) (or PIL images / uint8 arrays to have them preprocessed).")
        low = float(((0 - self.mean) / self.std).min()) - 1.0
        high = float(((1 - self.mean) / self.std).max()) + 1.0
        if lo < low or hi > high:
            raise ImageInputError(
                f"The tensor's values span [{lo:.3g}, {hi:.3g}], far outside a normalised batch for this model "
                f"(about [{low + 1:.2f}, {high - 1:.2f}]): pixel values 0-255? Pass a uint8 (B, H, W, 3) array, or "
                "model.normalize(tensor / 255); if the values are meant, wrap them in decomviz.models.Normalized.")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised image embeddings of a preprocessed batch (keeps whatever autograd context it is in)."""
        with self.lock:
            emb = self.tower.encode_image(x).float()
        if not bool(torch.isfinite(emb).all()):
            raise ValueError(self._nonfinite("image embeddings"))
        return F.normalize(emb, dim=-1)

    def _nonfinite(self, what: str) -> str:
        """Why a pass gave NaN or inf, as far as can be told: the weights, or the input / reduced precision."""
        bad = [n for n, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            return (f"The model {self.name} produced NaN or infinite {what}: {len(bad)} of its weight tensors hold "
                    f"NaN or inf (e.g. {bad[0]!r}). The weights are damaged; load a good checkpoint.")
        return (f"The model {self.name} produced NaN or infinite {what} from finite weights: check the input for "
                "extreme values, or run without autocast (fp16 overflows).")

    def forward_from(self, layer: Union[str, torch.nn.Module], raw: torch.Tensor) -> torch.Tensor:
        """Run the image tower from the output of `layer` (in the tower's own layout) to the embedding
        (not normalised). `forward_from(layer, tap.raw)` equals the full forward."""
        layer = self.resolve_layer(layer)
        with self.lock:
            return self.tower.forward_from(layer, raw)

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
        with self.lock:
            known = {p: self._text_cache[p] for p in dict.fromkeys(prompts) if p in self._text_cache}
            missing = [p for p in dict.fromkeys(prompts) if p not in known]
            if missing:
                self._warn_truncation(missing)
            for i in range(0, len(missing), _TEXT_BATCH):
                chunk = missing[i:i + _TEXT_BATCH]
                tokens = {k: v.to(self.device) for k, v in self._tokenize(chunk).items()}
                emb = self.tower.encode_text(tokens).float()
                if not bool(torch.isfinite(emb).all()):
                    raise ValueError(self._nonfinite("text embeddings"))
                for p, e in zip(chunk, F.normalize(emb, dim=-1)):
                    known[p] = self._text_cache[p] = e
            while len(self._text_cache) > _TEXT_CACHE_SIZE:
                self._text_cache.popitem(last=False)
        return torch.stack([known[p] for p in prompts])

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


def _normalisation(mean, std, name: str, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """The preprocessing's mean and std as (1, 3, 1, 1) tensors, checked: a zero or NaN std would divide every
    input into NaN and end, much later, as a failed SVD."""
    try:
        m = torch.as_tensor(mean, dtype=torch.float32).flatten()
        s = torch.as_tensor(std, dtype=torch.float32).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise ModelLoadError(f"The preprocessing config of {name} has mean={mean!r}, std={std!r}; both must be "
                             "lists of 3 numbers (one per RGB channel).") from None
    if m.numel() == 1:
        m = m.expand(3)
    if s.numel() == 1:
        s = s.expand(3)
    if m.numel() != 3 or s.numel() != 3 or not bool(torch.isfinite(m).all()) or not bool(torch.isfinite(s).all()) \
            or not bool((s > 0).all()):
        raise ModelLoadError(f"The preprocessing config of {name} has mean={mean!r}, std={std!r}: both need 3 finite "
                             "numbers and every std must be > 0 (CLIP's are mean=[0.481, 0.458, 0.408], "
                             "std=[0.269, 0.261, 0.276]). Fix 'preprocess_cfg' in open_clip_config.json.")
    return m.to(device).view(1, 3, 1, 1), s.to(device).view(1, 3, 1, 1)


def _some(names: List[str], n: int = 16) -> str:
    """A list of names, shortened in the middle when long."""
    if len(names) <= n:
        return ", ".join(names)
    return ", ".join(names[: n // 2]) + f", ... ({len(names) - n} more), " + ", ".join(names[-n // 2:])
