"""The one registry of methods. The command line, the Explorer, the bench and the docs all read it.

A method is a `Method` (or `CAM`) subclass plus one `MethodSpec` here. ``fixed`` knobs turn one class into a named variant
(DecomCAM with feature-space integration, or without integration); every other knob the class declares can be
set from every entry point.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Type

from ..knobs import Knob, check_declared, defaults_of, knobs_of
from .attention_base import AttentionMethod
from .base import Method
from .baselines import EigenCAM, GradCAM, GradCAMPlusPlus, GScoreCAM, LayerCAM, ScoreCAM
from .chefer import Chefer
from .decomcam import DecomCAM
from .grad_eclip import GradECLIP
from .legrad import LeGrad
from .occlusion import Occlusion
from .rollout import Rollout


@dataclass(frozen=True)
class MethodSpec:
    """A named method: its class, the knobs the name fixes, how it is shown, and one line on what it does."""

    name: str
    cls: Type[Method]
    label: str
    summary: str
    fixed: Mapping[str, Any] = field(default_factory=dict)

    @property
    def knobs(self) -> Dict[str, Knob]:
        """The knobs a user can set for this method (the class's, less the fixed ones)."""
        return {n: k for n, k in knobs_of(self.cls).items() if n not in self.fixed}

    @property
    def defaults(self) -> Dict[str, Any]:
        return {n: v for n, v in defaults_of(self.cls).items() if n not in self.fixed}

    def make(self, model, **knobs) -> Method:
        """The method object with ``knobs``; a knob this method does not take is refused by name."""
        fixed = [n for n in knobs if n in self.fixed]
        if fixed:
            raise ValueError(f"{self.name} fixes {', '.join(f'{n}={self.fixed[n]!r}' for n in fixed)}; "
                             f"use the method {self.cls.method!r} to choose {fixed[0]} yourself.")
        check_declared(self.cls, list(knobs))
        return self.cls(model, **{**knobs, **self.fixed})


METHODS: Dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("decomcam", DecomCAM, "DecomCAM",
               "SVD of the gradient-weighted maps into OSSMs, each weighed by the score its region restores"),
    MethodSpec("decomcam-feature", DecomCAM, "DecomCAM (feature integration)",
               "DecomCAM with OSSMs masking the activations at the tap instead of the pixels (cheaper)",
               fixed={"integration": "feature", "blend": "convex"}),
    MethodSpec("decomcam-nointegration", DecomCAM, "DecomCAM (no integration)",
               "OSSMs weighted by their singular values (the ablation without stage 2)",
               fixed={"integration": "none"}),
    MethodSpec("decomcam-nmf", DecomCAM, "DecomCAM (NMF split)",
               "DecomCAM with a non-negative split of the positive evidence instead of the SVD: parts-like "
               "components, each weighed by the score its region restores",
               fixed={"decomposition": "nmf"}),
    MethodSpec("decomcam-authors", DecomCAM, "DecomCAM (authors' choices)",
               "DecomCAM with the choices of the authors' released code: svd_flip signs, element-wise max blend, "
               "raw masked scores as contributions, bicubic upsampling",
               fixed={"sign": "svd_flip", "blend": "max", "contribution": "raw", "upsample": "bicubic"}),
    MethodSpec("gradcam", GradCAM, "Grad-CAM", "ReLU of the activations weighted by their mean gradient"),
    MethodSpec("gradcam++", GradCAMPlusPlus, "Grad-CAM++", "Grad-CAM with higher-order pixel weights"),
    MethodSpec("layercam", LayerCAM, "LayerCAM", "activations weighted element-wise by their positive gradient"),
    MethodSpec("eigencam", EigenCAM, "EigenCAM", "first principal component of the activations (class-agnostic)"),
    MethodSpec("scorecam", ScoreCAM, "Score-CAM", "every channel as a mask, weighted by the score it keeps"),
    MethodSpec("gscorecam", GScoreCAM, "gScoreCAM", "Score-CAM over the top channels by Grad-CAM weight"),
    MethodSpec("occlusion", Occlusion, "Occlusion",
               "the score lost when a sliding window is hidden, averaged per pixel (no gradient, no layer)"),
    # made for transformer towers: they read the attention maps (a convolutional tower is refused)
    MethodSpec("legrad", LeGrad, "LeGrad",
               "positive gradient of the score read at each of the last blocks with respect to its attention"),
    MethodSpec("grad-eclip", GradECLIP, "Grad-ECLIP",
               "values of the last attention weighted by the output's gradient and the loosened query-key attention"),
    MethodSpec("chefer", Chefer, "Chefer et al.",
               "gradient-weighted attention relevance propagated through every block"),
    MethodSpec("rollout", Rollout, "Attention rollout",
               "head-averaged attention with the residual, multiplied through the blocks (class-agnostic)"),
)}


def applies(name: str, model) -> bool:
    """Whether the method registered as ``name`` can explain ``model`` (the transformer methods need attention)."""
    cannot = getattr(method_spec(name).cls, "cannot_explain", None)
    return cannot is None or cannot(model) is None


def methods_for(model) -> List[str]:
    """The registered methods that can explain ``model``, in registry order."""
    return [name for name in METHODS if applies(name, model)]


AttentionMethod.methods_for = staticmethod(methods_for)  # their refusals name the methods that do apply


def method_spec(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}. Choose from: {', '.join(METHODS)}.")
    return METHODS[name]


def make_method(name: str, model, **knobs) -> Method:
    """The method registered as ``name`` with ``knobs`` (each validated by the method's declaration)."""
    return method_spec(name).make(model, **knobs)


def all_knobs(names: Iterable[str] = None) -> Dict[str, Knob]:
    """Every knob of the named methods (default: all), each once, in registry order."""
    out: Dict[str, Knob] = {}
    for name in (METHODS if names is None else names):
        for k, knob in method_spec(name).knobs.items():
            out.setdefault(k, knob)
    return out


def route_knobs(names: List[str], knobs: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Give each method the knobs it takes. A knob that none of ``names`` takes is an error (it would be
    silently ignored otherwise)."""
    unused = [k for k in knobs if not any(k in method_spec(n).knobs for n in names)]
    if unused:
        raise ValueError(f"{', '.join(unused)} is not a knob of {', '.join(names)}; "
                         f"knobs of these methods: {', '.join(all_knobs(names))}.")
    return {n: {k: v for k, v in knobs.items() if k in method_spec(n).knobs} for n in names}
