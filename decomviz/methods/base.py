"""What every attribution method shares: inputs, scores, the tapped forward + backward, resizing.

A method is a subclass with one call signature, ``method(images, prompts) -> Explanation``.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import time
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from ..explanation import Explanation
from ..knobs import Knob, check_declared, knobs_of
from ..models import CLIPModel
from ..models.domain import caveat_flags, caveat_warnings
from ..models.taps import Tap, tap
from ..ops import clip_score, embed_batched, minmax, to_host, upsample
from .chunking import PROMPTS_PER_PASS, explain_in_chunks
from .targets import Target, Targets, target_matrix

SCORES = ("cosine", "logit", "softmax")
AUTOCAST = (None, "bf16", "fp16")


@dataclass
class Tapped:
    """One forward (+ backward) pass at the tapped layer, for a batch of images and all prompts."""

    activations: torch.Tensor  # (B, C, h, w) fp32
    gradients: Optional[torch.Tensor]  # (B, T, C, h, w) fp32: d s(x_b, t) / d A_b
    base_score: torch.Tensor  # (B, T)
    tap: Optional[Tap] = None  # the raw layer output, in the tower's layout (detached)


def _as_json(value: Any) -> Any:
    """A knob's value as the protocol record keeps it: tuples as lists, a function by its qualified name."""
    if isinstance(value, tuple):
        return list(value)
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}"
    return value


def keyword_only(init):
    """Make every argument of a method's ``__init__`` after ``model`` keyword-only: ``GradCAM(model, layer=...)``,
    ``DecomCAM(model, n_components=...)``. A positional call still works for now, with a DeprecationWarning that
    names the keywords to write. `Method` applies it to the ``__init__`` of every subclass."""
    if getattr(init, "_keyword_only", False):
        return init
    sig = inspect.signature(init)
    params = list(sig.parameters.values())
    names = [p.name for p in params[2:] if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]

    @functools.wraps(init)
    def wrapper(self, model, *args, **kwargs):
        if args:
            cls = type(self).__name__
            if len(args) > len(names):
                raise TypeError(f"{cls}() takes the model and keyword arguments; got {len(args) + 1} positional ones.")
            given = dict(zip(names, args))
            twice = [n for n in given if n in kwargs]
            if twice:
                raise TypeError(f"{cls}() got {twice[0]!r} both by position and by keyword.")
            warnings.warn(f"{cls}(model, {', '.join(map(repr, args))}): arguments after the model by position are "
                          f"deprecated and will stop working; write {cls}(model, "
                          f"{', '.join(f'{n}={v!r}' for n, v in given.items())}).", DeprecationWarning, stacklevel=2)
            kwargs.update(given)
        return init(self, model, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params[:2] + [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD else p
        for p in params[2:]])
    wrapper._keyword_only = True
    return wrapper


@functools.lru_cache(maxsize=None)
def _open_clip_version() -> str:
    """The installed open_clip's version, read from its metadata: importing open_clip costs a kernel 0.2 GB (see
    `models.bundled_clip`)."""
    from importlib import metadata
    try:
        return metadata.version("open_clip_torch")
    except metadata.PackageNotFoundError:  # a source checkout of open_clip, not installed as a distribution
        import open_clip
        return open_clip.__version__


def default_batch_size(device) -> int:
    """Images per forward pass when a method is not told (``batch_size=None``): 8 on a CPU, 32 on a GPU. On 2 CPU
    cores 8 held 0.06-0.24 GB less than 32; RN50 ran faster (DecomCAM 1.31 against 1.70 s per image), the bundled
    parts-rn as fast for occlusion and 13 % slower for DecomCAM (`benchmarks/bench_batch_size.py`, BENCHMARKS.md
    "Notebooks in Voila"). A GPU fills larger batches."""
    return 8 if torch.device(device).type == "cpu" else 32


class Method:
    """Base class of every attribution method: holds the model and the knobs; subclasses implement `_explain`.

    A method declares its knobs in ``_knobs`` (see `decomviz.knobs`); the constructor validates them through
    `_set_knobs`, and `get_params` returns them. `CAM` adds a tapped layer; a method that taps none (occlusion)
    derives from this class directly.

    Parameters
    ----------
    model : CLIPModel from `dv.load_model`.
    score : "cosine" (default), "logit", or "softmax" (over the prompts of the same call and ``contrast``).
    batch_size : images per forward pass when scoring masked inputs; None: `default_batch_size` of the model's
        device (8 on a CPU, 32 on a GPU).
    autocast : None (fp32), "bf16" or "fp16" for the towers; decompositions always run in fp32.
    contrast : prompts the softmax also runs over, without being explained. A contrast prompt that the call also
        explains competes once, not twice: it is dropped from the contrast for that call (``pairwise`` with
        contrast=[every class] explains image i against prompt i over the classes), and
        ``exp.params["contrast_dropped"]`` names it.
    """

    method = "method"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:  # every constructor: keyword-only after the model (see `keyword_only`)
            cls.__init__ = keyword_only(cls.__dict__["__init__"])
    uses_gradients = False
    _knobs = (
        Knob("score", "choice", "what is explained: cosine similarity, the logit, or the softmax over the prompts "
             "given together and the contrast prompts (class-discriminative)", choices=SCORES),
        Knob("contrast", "texts", "prompts the softmax score also competes with, without being explained (e.g. the "
             "other classes); only with score='softmax'"),
        Knob("batch_size", "int", "images per forward pass of the image tower", low=1, widget=(1, 256, 1),
             advanced=True, auto=("8 on a CPU, 32 on a GPU", lambda model: default_batch_size(model.device))),
        Knob("autocast", "choice", "reduced precision for the towers (the decompositions stay fp32)",
             choices=AUTOCAST, advanced=True),
    )

    @keyword_only
    def __init__(self, model: CLIPModel, score: str = "cosine", batch_size: Optional[int] = None,
                 autocast: Optional[str] = None, contrast: Sequence[str] = ()):
        if not isinstance(model, CLIPModel):
            raise TypeError(f"model must be a decomviz CLIPModel (from dv.load_model()), got {type(model).__name__}.")
        self.model = model
        self._set_knobs(score=score, batch_size=batch_size, autocast=autocast, contrast=contrast)
        if self.contrast and self.score != "softmax":
            raise ValueError(f"contrast prompts only change a softmax score; with score={self.score!r} they would be "
                             "ignored. Use score='softmax' with contrast=[...], or drop contrast.")

    def _set_knobs(self, **values) -> None:
        """Validate knob values against their declarations and set them as attributes."""
        check_declared(type(self), list(values))
        declared = knobs_of(type(self))
        chosen = set(getattr(self, "_chosen_knobs", ()))  # knobs left to the method (None), as `given_params` says
        for name, value in values.items():
            setattr(self, name, declared[name].validate(value, self.model))
            if value is None and declared[name].auto is not None:
                chosen.add(name)
            else:
                chosen.discard(name)
        self._chosen_knobs = chosen

    def given_params(self) -> Dict[str, Any]:
        """`get_params` as given: None for the knobs this method chose for its model (a batch size for the
        device), so that the same method built on another device chooses again (e.g. in a Ray actor on a GPU)."""
        chosen, declared = getattr(self, "_chosen_knobs", set()), knobs_of(type(self))
        return {k: (None if k in chosen and v == declared[k].auto[1](self.model) else v)
                for k, v in self.get_params().items()}

    @classmethod
    def knobs(cls) -> Dict[str, Knob]:
        """The knobs this method takes, by name."""
        return knobs_of(cls)

    def __repr__(self) -> str:
        knobs = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({knobs})"

    def get_params(self) -> Dict[str, Any]:
        """The knobs (sklearn style), without the model."""
        return {name: getattr(self, name) for name in knobs_of(type(self))}

    # ----------------------------------------------------------------- the call
    def __call__(self, images: Any, prompts: Targets) -> Explanation:
        """Explain every (image, prompt) pair. images: PIL / path / uint8 array / list; prompts: a str, a
        `Target` (a direction in the embedding space or a function of it, see `decomviz.methods.targets`), a
        callable (embeddings (N, D) -> scores (N,)), or a list of them."""
        n = 1 if isinstance(prompts, (str, Target)) or callable(prompts) else len(prompts) \
            if isinstance(prompts, (list, tuple)) else 0
        given = [prompts] if isinstance(prompts, str) else list(prompts) if isinstance(prompts, (list, tuple)) else []
        explained = {p for p in given if isinstance(p, str)}
        contrast = tuple(dict.fromkeys(c for c in self.contrast if c not in explained))
        if contrast != tuple(self.contrast):
            # a prompt explained and also in the contrast (contrast=[every class], as a labelled dataset gives)
            # would enter the softmax twice; it competes once, and the protocol says which were dropped
            twin = copy.copy(self)
            twin.contrast = contrast
            exp = twin(images, prompts)
            exp.params["contrast_dropped"] = [c for c in dict.fromkeys(self.contrast) if c in explained]
            return exp
        if self.score == "softmax" and n + len(self.contrast) < 2:
            raise ValueError("score='softmax' over a single prompt is always 1 and has no gradient: give several "
                             "prompts (the softmax is over all of them), or contrast=[...] prompts to compete with, "
                             "or use score='cosine'.")
        with self.model.lock:  # one call at a time per model (hooks see every pass): see CLIPModel
            names, text = target_matrix(self.model, prompts, self.contrast)  # contrast rows last, never explained
            prepared = self.model.prepare(images)
            start = time.perf_counter()
            exp = (self._explain(prepared.tensor, text, names) if len(names) <= PROMPTS_PER_PASS
                   else explain_in_chunks(self, prepared.tensor, text, names))  # memory bounded in the prompts
        exp.images = torch.from_numpy(prepared.pixels)
        exp.params.update(self.protocol(prepared.tensor, seconds=time.perf_counter() - start))
        if prepared.geometry is not None:  # where each explained crop lies in the image as given
            exp.params["inputs"] = prepared.geometry
        caveats = caveat_flags(self.model, prepared.pixels, exp.saliency.shape[1])  # maps that cannot mean anything
        exp.flags.update(caveats)
        caveat_warnings(self.model, caveats)
        return exp

    def pairwise(self, images: Sequence[Any], prompts: Sequence[Union[str, Target]]) -> List[Explanation]:
        """Image i with prompt i only (not every image with every prompt): one B=1, T=1 Explanation per pair,
        in order. Images that share a prompt go through the engine together."""
        if not isinstance(images, (list, tuple)) or not isinstance(prompts, (list, tuple)):
            raise TypeError("pairwise takes a list of images and a list of prompts of the same length.")
        if len(images) != len(prompts):
            raise ValueError(f"pairwise pairs image i with prompt i: got {len(images)} images and {len(prompts)} "
                             "prompts. Give one prompt per image, or call the method for every image x prompt.")
        groups: Dict[Any, List[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(p if isinstance(p, str) else id(p), []).append(i)
        out: List[Optional[Explanation]] = [None] * len(images)
        for idx in groups.values():
            exp = self([images[i] for i in idx], [prompts[idx[0]]])
            for j, i in enumerate(idx):
                out[i] = exp.select(j, 0)
        return out

    def _explain(self, x: torch.Tensor, text: torch.Tensor, prompts: List[str]) -> Explanation:
        raise NotImplementedError

    def record(self, image_size: Optional[Sequence[int]] = None) -> Dict[str, Any]:
        """The protocol record: the method, its knobs (as JSON keeps them), the model, the input size (default:
        the model's) and the library versions. The one writer of it: an Explanation's ``params`` (`protocol`)
        and a bank's protocol (`decomviz.analysis.extractor.protocol_of`) both start from this record."""
        from .._version import __version__
        return {
            "method": self.method,
            **{k: _as_json(v) for k, v in self.get_params().items()},
            "model": self.model.name, "pretrained": self.model.pretrained, "model_source": self.model.source,
            "image_size": list(self.model.image_size if image_size is None else image_size),
            "versions": {"decomviz": __version__, "torch": torch.__version__, "open_clip": _open_clip_version(),
                         "numpy": np.__version__},
        }

    def protocol(self, x: torch.Tensor, seconds: float) -> Dict[str, Any]:
        """The record of one call on inputs ``x``: `record`, the device and the seconds it took."""
        return {**self.record(x.shape[-2:]), "device": str(self.model.device), "seconds": seconds}

    # ----------------------------------------------------------------- shared machinery
    def _autocast(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.autocast == "bf16" else torch.float16
        return torch.autocast(self.model.device.type, dtype=dtype)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.model.embed(x)

    def _embed_batched(self, make_batch, n: int, embed=None) -> torch.Tensor:
        """Embeddings of n inputs made chunk by chunk by ``make_batch(start, stop)`` (see `ops.embed_batched`)
        and passed to ``embed`` (default: the whole image tower)."""
        return embed_batched(embed or self._embed, make_batch, n, self.batch_size)

    def _scores(self, emb: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Scores (..., T) against the explained prompts (the contrast prompts at the end of ``text`` only enter
        the softmax)."""
        return clip_score(emb, text, self.score, self.model.logit_scale)[..., :len(text) - len(self.contrast)]



class CAM(Method):
    """A method on the activations (and gradients) of one layer of the image tower.

    Parameters
    ----------
    model : CLIPModel from `dv.load_model`.
    layer : name of the layer to tap (see ``model.layers``); default ``model.default_layer``.
    score, batch_size, autocast, contrast : as for `Method`.
    """

    method = "cam"
    uses_gradients = True
    _knobs = (Knob("layer", "layer", "layer to tap (see model.layers); default: the model's default layer"),)

    def __init__(self, model: CLIPModel, layer: Optional[str] = None, score: str = "cosine",
                 batch_size: Optional[int] = None, autocast: Optional[str] = None, contrast: Sequence[str] = ()):
        super().__init__(model, score=score, batch_size=batch_size, autocast=autocast, contrast=contrast)
        self._set_knobs(layer=layer)

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

    def _finish(self, lowres: torch.Tensor, x: torch.Tensor, prompts: List[str], tapped: Tapped,
                **extra) -> Explanation:
        """A low-resolution map (B, T, h, w) -> normalised saliency at input resolution."""
        sal = minmax(upsample(lowres, x.shape[-2:]).clamp_min(0))
        flat = (lowres.clamp_min(0).amax(dim=(-2, -1)) <= 0)
        arrays, flags = to_host(dict(saliency=sal, saliency_lowres=lowres, base_score=tapped.base_score, **extra),
                                {"empty_map": flat})
        return Explanation(method=self.method, prompts=prompts, images=None, flags=flags, **arrays)
