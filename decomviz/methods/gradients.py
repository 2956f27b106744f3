"""A layer's activations and per-prompt gradients, as every CAM sees them: the raw material of a decomposition.

`tap_gradients` is the public door to the pass that `CAM._tapped` runs (one forward, one batched backward for all
prompts), for researchers who split the gradient-weighted maps their own way; `tap_activations` is the forward
alone (what dataset-level concepts are fitted on).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import numpy as np
import torch

from ..models import CLIPModel
from ..models.taps import tap
from .base import CAM
from .targets import Targets, target_matrix


@dataclass
class LayerGradients:
    """What one tapped pass gives, on the CPU.

    activations : Tensor of shape (B, C, h, w), the layer's output on its grid (ViT tokens laid out as cells).
    gradients : Tensor of shape (B, T, C, h, w), d score(x_b, prompt_t) / d activations_b.
    scores : Tensor of shape (B, T), the scores differentiated.
    layer, prompts, score : what was tapped and explained.
    pixels : uint8 array of shape (B, H, W, 3), the images as the model saw them.
    """

    activations: torch.Tensor
    gradients: torch.Tensor
    scores: torch.Tensor
    layer: str
    prompts: List[str]
    score: str
    pixels: np.ndarray


def tap_gradients(model: CLIPModel, images: Any, prompts: Targets, layer: Optional[str] = None,
                  score: str = "cosine", contrast: Sequence[str] = ()) -> LayerGradients:
    """Activations of ``layer`` (default ``model.default_layer``) and the gradient of each prompt's score with
    respect to them: the pass every CAM runs, one forward and one batched backward for all prompts.

    ``DecomCAM(model).decompose(g.activations, g.gradients)`` splits them as DecomCAM does; any other split can
    start from the same tensors.
    """
    cam = CAM(model, layer=layer, score=score, contrast=contrast)
    with model.lock:
        names, text = target_matrix(model, prompts, cam.contrast)
        if score == "softmax" and len(text) < 2:
            raise ValueError("score='softmax' over a single prompt is always 1 and has no gradient: give several "
                             "prompts or contrast=[...] prompts, or use score='cosine'.")
        prepared = model.prepare(images)
        tapped = cam._tapped(prepared.tensor, text)
    return LayerGradients(tapped.activations.cpu(), tapped.gradients.cpu(), tapped.base_score.cpu(), cam.layer,
                          list(names), score, prepared.pixels)


def tap_activations(model: CLIPModel, images: Any, layer: Optional[str] = None) -> torch.Tensor:
    """The activations of ``layer`` for a batch of images, (B, C, h, w) fp32 on the model's device, from one
    forward pass without gradients."""
    prepared = model.prepare(images)
    with tap(model, layer, requires_grad=False) as t, torch.no_grad():
        model.embed(prepared.tensor)
        return t.grid().float()
