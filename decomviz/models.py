"""Loading CLIP models and the wrapper every other module talks to.

`load_model` is the only place that knows where weights come from (bundled folders, open_clip names and
tags, local checkpoint files). Everything else takes a `CLIPModel`.
"""
from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .images import ImageInputError, load_images

ASSETS = Path(__file__).resolve().parent / "assets"
BUNDLED = ("parts-rn", "parts-vit")
# recipes of decomviz.train that are not shipped, with the reason a user gets when asking for them
NOT_BUNDLED = {"tiny-rn": "it is a 64-px recipe for tests and smoke runs"}
DEFAULT_MODEL = "parts-rn"
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
                 source: str, preprocess_cfg: Dict[str, Any], device: Union[str, torch.device]):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.pretrained = pretrained
        self.source = source
        self.device = torch.device(device)
        size = preprocess_cfg.get("size", getattr(model.visual, "image_size", 224))
        self.image_size: Tuple[int, int] = (size, size) if isinstance(size, int) else tuple(size)
        mean = preprocess_cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))
        std = preprocess_cfg.get("std", (0.26862954, 0.26130258, 0.27577711))
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.interpolation = preprocess_cfg.get("interpolation", "bicubic")
        self.kind, self.layers, self.default_layer = _describe_tower(model.visual)
        self._text_cache: "OrderedDict[str, torch.Tensor]" = OrderedDict()

    def __repr__(self) -> str:
        tag = f", pretrained={self.pretrained!r}" if self.pretrained else ""
        return (f"CLIPModel({self.name!r}{tag}, kind={self.kind!r}, image_size={self.image_size}, "
                f"default_layer={self.default_layer!r}, device={str(self.device)!r})")

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
        pixels = np.stack([_resize_center_crop(im, (H, W), resample) for im in pils])
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


def _resize_center_crop(im: Image.Image, size: Tuple[int, int], resample) -> np.ndarray:
    H, W = size
    w, h = im.size
    scale = max(H / h, W / w)
    nw, nh = max(W, round(w * scale)), max(H, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), resample, reducing_gap=3.0 if scale < 0.5 else None)
    left, top = (nw - W) // 2, (nh - H) // 2
    return np.asarray(im.crop((left, top, left + W, top + H)), dtype=np.uint8)


def _describe_tower(visual: torch.nn.Module) -> Tuple[str, List[str], str]:
    """Which layers of an image tower can be tapped, and the default (see ALGORITHM.md)."""
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


# ---------------------------------------------------------------------- loading
def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def list_models() -> List[str]:
    """Bundled model names, then every open_clip architecture name."""
    import open_clip
    return list(BUNDLED) + open_clip.list_models()


def load_model(name: str = DEFAULT_MODEL, pretrained: Optional[str] = None, *,
               checkpoint: Optional[Union[str, os.PathLike]] = None,
               device: Optional[Union[str, torch.device]] = None) -> CLIPModel:
    """Load a CLIP model for explanation.

    - ``load_model()`` / ``load_model("parts-rn")``: the bundled PartsWorld model (no download).
    - ``load_model("RN50", pretrained="openai")``: an open_clip name and pretrained tag (downloads, cached).
    - ``load_model("ViT-B-16", checkpoint="weights.safetensors")``: local weights for an open_clip name;
      ``checkpoint`` may also be a folder with ``open_clip_config.json`` and weights (then ``name`` may be None).
    - ``load_model("RN50", pretrained=None)``: random weights (tests, offline experiments).
    """
    import open_clip

    device = torch.device(device) if device is not None else _default_device()
    if pretrained is not None and checkpoint is not None:
        raise ModelLoadError("Give either pretrained= (an open_clip tag) or checkpoint= (a local file), not both.")

    if checkpoint is not None and Path(checkpoint).is_dir():
        return _load_local_dir(Path(checkpoint), name or Path(checkpoint).name, device)
    if name in BUNDLED and checkpoint is None and pretrained is None:
        folder = ASSETS / name
        if not (folder / "open_clip_config.json").is_file():
            raise ModelLoadError(f"The bundled model '{name}' is missing from {folder}. Train it with "
                                 f"`decomviz train --model {name} --out {folder}` or reinstall decomviz.")
        return _load_local_dir(folder, name, device)
    if name in NOT_BUNDLED and checkpoint is None and pretrained is None:
        raise ModelLoadError(f"'{name}' is not bundled with this release: {NOT_BUNDLED[name]}. Train it with "
                             f"`decomviz train --model {name} --out DIR` and load it with "
                             f"dv.load_model(checkpoint='DIR'), or use the bundled 'parts-rn'.")
    if not isinstance(name, str) or not name:
        raise ModelLoadError("Name a model: one of the bundled models "
                             f"{', '.join(BUNDLED)} or an open_clip architecture such as 'RN50'.")
    if name not in open_clip.list_models():
        close = [m for m in list_models() if name.lower().replace("/", "-") in m.lower()][:8]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelLoadError(f"Unknown model '{name}'. Bundled: {', '.join(BUNDLED)}; open_clip knows "
                             f"{len(open_clip.list_models())} names (see dv.list_models()).{hint}")

    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise ModelLoadError(f"Checkpoint not found: '{path}'.")
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, device=device)
        _load_state_dict(model, path)
        source = str(path)
    else:
        if pretrained is not None:
            tags = open_clip.list_pretrained_tags_by_model(name)
            if pretrained not in tags:
                raise ModelLoadError(f"Unknown pretrained tag '{pretrained}' for {name}. Known tags: "
                                     f"{', '.join(tags) or 'none'}; or pass checkpoint='path/to/weights'.")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
        except Exception as err:  # download or cache failures: say how to work offline
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
            raise ModelLoadError(
                f"Could not get the '{pretrained}' weights of {name}"
                f"{' (HF_HUB_OFFLINE is set, so nothing can be downloaded)' if offline else ''}: {err}. "
                f"To use local weights: dv.load_model('{name}', checkpoint='path/to/weights.safetensors') "
                "(or a .pt/.bin state dict, or a folder with open_clip_config.json).") from None
        source = f"open_clip:{name}:{pretrained}" if pretrained else f"open_clip:{name}:random-init"
    tokenizer = open_clip.get_tokenizer(name)
    cfg = open_clip.get_model_preprocess_cfg(model)
    return CLIPModel(model, tokenizer, name=name, pretrained=pretrained, source=source,
                     preprocess_cfg=cfg, device=device)


def _load_local_dir(folder: Path, name: str, device: torch.device) -> CLIPModel:
    import open_clip
    if not (folder / "open_clip_config.json").is_file():
        raise ModelLoadError(f"'{folder}' has no open_clip_config.json; a checkpoint folder needs one "
                             "(with 'model_cfg' and 'preprocess_cfg') beside the weights.")
    ident = f"local-dir:{folder}"
    model = open_clip.create_model(ident, device=device)
    tokenizer = open_clip.get_tokenizer(ident)
    cfg = open_clip.get_model_preprocess_cfg(model)
    return CLIPModel(model, tokenizer, name=name, pretrained=None, source=str(folder),
                     preprocess_cfg=cfg, device=device)


def _load_state_dict(model: torch.nn.Module, path: Path) -> None:
    """Weights from safetensors, or from a torch file with weights_only=True (never arbitrary pickles)."""
    import open_clip
    try:
        open_clip.load_checkpoint(model, str(path), weights_only=True)
    except Exception as err:
        raise ModelLoadError(
            f"Could not load weights from '{path}': {err}. decomviz only loads safetensors files or plain "
            "state dicts (torch.load with weights_only=True); a checkpoint that needs arbitrary code to "
            "unpickle is refused.") from None
