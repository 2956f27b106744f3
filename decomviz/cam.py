"""What every attribution method shares: inputs, scores, the tapped forward + backward, resizing.

A method is a subclass with one call signature, ``method(images, prompts) -> Explanation``.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .explanation import Explanation, minmax
from .models import CLIPModel
from .taps import Tap, tap

SCORES = ("cosine", "logit", "softmax")
AUTOCAST = (None, "bf16", "fp16")


def clip_score(image_emb: torch.Tensor, text_emb: torch.Tensor, kind: str, logit_scale: torch.Tensor) -> torch.Tensor:
    """Scores (..., T) of normalised image embeddings (..., D) against every prompt (T, D)."""
    cos = image_emb @ text_emb.T
    if kind == "cosine":
        return cos
    logits = logit_scale * cos
    return logits if kind == "logit" else logits.softmax(dim=-1)


def pair_score(image_emb: torch.Tensor, text_emb: torch.Tensor, prompt_index: torch.Tensor, kind: str,
               logit_scale: torch.Tensor) -> torch.Tensor:
    """Score of each embedding (N, D) against its own prompt (N,), softmax taken over all prompts."""
    return clip_score(image_emb, text_emb, kind, logit_scale).gather(-1, prompt_index[:, None])[:, 0]


@dataclass
class Tapped:
    """One forward (+ backward) pass at the tapped layer, for a batch of images and all prompts."""

    activations: torch.Tensor  # (B, C, h, w) fp32
    gradients: Optional[torch.Tensor]  # (B, T, C, h, w) fp32: d s(x_b, t) / d A_b
    base_score: torch.Tensor  # (B, T)
    tap: Optional[Tap] = None  # the raw layer output, in the tower's layout (detached)


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_choice(name: str, value, choices: Sequence) -> Any:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")
    return value


class CAM:
    """Base class: holds the model and the shared knobs; subclasses implement `_explain`.

    Parameters
    ----------
    model : CLIPModel from `dv.load_model`.
    layer : name of the layer to tap (see ``model.layers``); default ``model.default_layer``.
    score : "cosine" (default), "logit", or "softmax" (over the prompts of the same call).
    batch_size : images per forward pass when scoring masked inputs.
    autocast : None (fp32), "bf16" or "fp16" for the towers; decompositions always run in fp32.
    """

    method = "cam"
    uses_gradients = True

    def __init__(self, model: CLIPModel, layer: Optional[str] = None, score: str = "cosine",
                 batch_size: int = 32, autocast: Optional[str] = None):
        if not isinstance(model, CLIPModel):
            raise TypeError(f"model must be a decomviz CLIPModel (from dv.load_model()), got {type(model).__name__}.")
        self.model = model
        self.layer = model.resolve_layer(layer)
        self.score = _check_choice("score", score, SCORES)
        self.batch_size = _check_int("batch_size", batch_size)
        self.autocast = _check_choice("autocast", autocast, AUTOCAST)

    def __repr__(self) -> str:
        knobs = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({knobs})"

    def get_params(self) -> Dict[str, Any]:
        """The knobs (sklearn style), without the model."""
        import inspect
        names = []
        for cls in type(self).__mro__:
            if "__init__" in cls.__dict__:
                names += [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "model", "kwargs")]
        return {n: getattr(self, n) for n in dict.fromkeys(names) if hasattr(self, n)}

    # ----------------------------------------------------------------- the call
    def __call__(self, images: Any, prompts: Union[str, Sequence[str]]) -> Explanation:
        """Explain every (image, prompt) pair. images: PIL / path / uint8 array / list; prompts: str or list."""
        prompts = self.model.check_prompts(prompts)
        prepared = self.model.prepare(images)
        start = time.perf_counter()
        text = self.model.encode_text(prompts)
        exp = self._explain(prepared.tensor, text, prompts)
        exp.images = torch.from_numpy(prepared.pixels)
        exp.params.update(self.protocol(prepared.tensor, seconds=time.perf_counter() - start))
        return exp

    def _explain(self, x: torch.Tensor, text: torch.Tensor, prompts: List[str]) -> Explanation:
        raise NotImplementedError

    def protocol(self, x: torch.Tensor, seconds: float) -> Dict[str, Any]:
        import open_clip
        from . import __version__
        return {
            "method": self.method, **self.get_params(),
            "model": self.model.name, "pretrained": self.model.pretrained, "model_source": self.model.source,
            "image_size": list(x.shape[-2:]), "device": str(self.model.device),
            "versions": {"decomviz": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
                         "numpy": np.__version__},
            "seconds": seconds,
        }

    # ----------------------------------------------------------------- shared machinery
    def _autocast(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.autocast == "bf16" else torch.float16
        return torch.autocast(self.model.device.type, dtype=dtype)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.model.embed(x)

    @torch.no_grad()
    def _embed_batched(self, make_batch, n: int, embed=None) -> torch.Tensor:
        """Embeddings of n inputs produced chunk by chunk by ``make_batch(start, stop)`` and passed to
        ``embed`` (default: the whole image tower)."""
        embed = embed or self._embed
        return torch.cat([embed(make_batch(i, min(i + self.batch_size, n))) for i in range(0, n, self.batch_size)])

    def _scores(self, emb: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return clip_score(emb, text, self.score, self.model.logit_scale)

    def _tapped(self, x: torch.Tensor, text: torch.Tensor, gradients: bool = True) -> Tapped:
        """ONE forward and (if asked) ONE backward pass for all images and prompts.

        The T per-prompt gradients come from a single batched backward (``is_grads_batched``): row t of
        the batched grad_outputs selects the scores s(x_b, t) of every image b (images do not interact).
        """
        with tap(self.model, self.layer, requires_grad=gradients) as t:
            with torch.set_grad_enabled(gradients):
                scores = self._scores(self._embed(x), text)  # (B, T)
            acts = t.grid()
            grads = None
            if gradients:
                T = scores.shape[1]
                selectors = torch.eye(T, device=scores.device, dtype=scores.dtype)[:, None, :].expand(T, *scores.shape)
                if T == 1:
                    (g,) = torch.autograd.grad(scores, t.raw, grad_outputs=selectors[0])
                    g = g[None]
                else:
                    (g,) = torch.autograd.grad(scores, t.raw, grad_outputs=selectors, is_grads_batched=True)
                grads = t.grid(g).transpose(0, 1)  # (T, B, ...) -> (B, T, C, h, w)
        t.raw = t.raw.detach()
        return Tapped(acts.detach(), None if grads is None else grads.detach(), scores.detach(), t)

    def _upsample(self, maps: torch.Tensor, size, mode: str = "bilinear") -> torch.Tensor:
        """(..., h, w) -> (..., H, W)."""
        lead = maps.shape[:-2]
        flat = maps.reshape(-1, 1, *maps.shape[-2:])
        out = F.interpolate(flat, size=tuple(size), mode=mode, align_corners=False)
        return out.reshape(*lead, *out.shape[-2:])

    def _finish(self, lowres: torch.Tensor, x: torch.Tensor, prompts: List[str], tapped: Tapped,
                **extra) -> Explanation:
        """A low-resolution map (B, T, h, w) -> normalised saliency at input resolution."""
        sal = minmax(self._upsample(lowres, x.shape[-2:]).clamp_min(0))
        flat = (lowres.clamp_min(0).amax(dim=(-2, -1)) <= 0)
        return Explanation(method=self.method, prompts=prompts, saliency=sal.cpu(), images=None,
                           saliency_lowres=lowres.cpu(), base_score=tapped.base_score.cpu(),
                           flags={"empty_map": flat.cpu()}, **extra)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflect padding (radius 3 sigma, clipped to the image)."""
    if sigma <= 0:
        return x.clone()
    H, W = x.shape[-2:]
    radius = max(1, min(int(math.ceil(3 * sigma)), H - 1, W - 1))
    coords = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (coords / sigma) ** 2)
    kernel = kernel / kernel.sum()
    C = x.shape[1]
    out = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)
