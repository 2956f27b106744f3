"""Capture activations (and their gradients) at one layer of an image tower.

The hook replaces the layer's output by a detached leaf that requires grad, so the backward pass runs
only from the score down to the tap, never into the layers below or into any weight.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional, Tuple

import torch

from .wrapper import CLIPModel


class Tap:
    """What one forward pass left at the tapped layer.

    `raw` is the layer output as the tower lays it out: (B, C, h, w), (B, h, w, C), or (B, N, D) / (N, B, D)
    tokens; `grid` converts it (or a gradient of the same layout) to (B, C, h, w). The tower's adapter
    (`models.towers`) knows the layout.
    """

    def __init__(self, model: CLIPModel, layer: str, requires_grad: bool):
        self.model = model
        self.layer = layer
        self.requires_grad = requires_grad
        self.raw: Optional[torch.Tensor] = None
        self.patch_grid: Optional[Tuple[int, int]] = model.tower.patch_grid()  # token layers: the patch grid

    def _capture(self, module, inputs, output):
        rest = None
        if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
            output, rest = output[0], output  # e.g. a Hugging Face layer's (hidden_states, ...)
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"Layer {self.layer} returns a {type(output).__name__}; only tensor outputs can be tapped.")
        if not bool(torch.isfinite(output).all()):
            raise ValueError(self.model._nonfinite(f"activations at {self.layer}"))
        leaf = output.detach()
        if self.requires_grad:
            leaf.requires_grad_(True)
        self.raw = leaf
        return leaf if rest is None else type(rest)([leaf, *rest[1:]])

    def grid(self, tensor: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Layer output (or a gradient w.r.t. it, with any extra leading dims) as (..., B, C, h, w) in fp32."""
        return self.model.tower.grid(self.layer, self.raw, self.raw if tensor is None else tensor, self.patch_grid)

    def blend(self, index: torch.Tensor, other: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """In the tower's layout: M * raw[index] + (1 - M) * other[index] at the grid cells, for masks
        (N, h, w) in [0, 1]; `other` is another raw output of the same layer (e.g. of the blurred reference).
        Class/register tokens are kept from `raw`."""
        return self.model.tower.blend(self.layer, self.raw, index, other, masks)


@contextmanager
def tap(model: CLIPModel, layer, requires_grad: bool = True) -> Iterator[Tap]:
    """Hook `layer` for the duration of the block; hooks are removed on exit, also after an exception.

    Holds ``model.lock`` meanwhile: a hook sees every pass through its module, so no other thread may run the
    model while it is set."""
    layer = model.resolve_layer(layer)
    t = Tap(model, layer, requires_grad)
    with model.lock:
        handles = [model.module(layer).register_forward_hook(t._capture)]
        try:
            handles.extend(model.tower.hooks(t))
            yield t
        finally:
            for h in handles:
                h.remove()


def hook_count(module: torch.nn.Module) -> int:
    """Number of forward hooks left anywhere in `module` (tests use this to prove nothing leaks)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in module.modules())
