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

    `raw` is the layer output as the tower lays it out (B, C, h, w) for ResNets, (B, N, D) or (N, B, D)
    tokens for ViTs; `grid` converts it (or a gradient of the same layout) to (B, C, h, w).
    """

    def __init__(self, model: CLIPModel, layer: str, requires_grad: bool):
        self.model = model
        self.layer = layer
        self.requires_grad = requires_grad
        self.raw: Optional[torch.Tensor] = None
        self.patch_grid: Optional[Tuple[int, int]] = None  # from the patch embedding (ViT)

    def _capture(self, module, inputs, output):
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"Layer {self.layer} returns a {type(output).__name__}; only tensor outputs can be tapped.")
        if not bool(torch.isfinite(output).all()):
            raise ValueError(self.model._nonfinite(f"activations at {self.layer}"))
        leaf = output.detach()
        if self.requires_grad:
            leaf.requires_grad_(True)
        self.raw = leaf
        return leaf

    def _capture_patch_grid(self, module, inputs, output):
        self.patch_grid = tuple(output.shape[-2:])

    def grid(self, tensor: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Layer output (or a gradient w.r.t. it, with any extra leading dims) as (..., B, C, h, w) in fp32."""
        t = self.raw if tensor is None else tensor
        lead = t.shape[: t.ndim - self.raw.ndim]
        t = t.float()
        if self.raw.ndim == 4:
            return t
        if self.raw.ndim != 3 or self.patch_grid is None:
            raise RuntimeError(f"Cannot lay out the output of {self.layer} (shape {tuple(self.raw.shape)}) on a grid.")
        h, w = self.patch_grid
        if not _batch_first(self.model):
            t = t.transpose(-3, -2)  # (N, B, D) -> (B, N, D)
        n_tokens = t.shape[-2]
        if n_tokens < h * w:
            raise RuntimeError(f"{self.layer} has {n_tokens} tokens, fewer than the {h}x{w} patch grid.")
        patches = t[..., n_tokens - h * w:, :]  # class and register tokens come first
        return patches.transpose(-1, -2).reshape(*lead, t.shape[-3], t.shape[-1], h, w)


    def blend(self, index: torch.Tensor, other: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """In the tower's layout: M * raw[index] + (1 - M) * other[index] at the grid cells, for masks
        (N, h, w) in [0, 1]; `other` is another raw output of the same layer (e.g. of the blurred reference).
        ViT class/register tokens are kept from `raw`."""
        if self.raw.ndim == 4:
            m = masks[:, None].to(self.raw.dtype)
            return m * self.raw[index] + (1 - m) * other[index]
        bf = _batch_first(self.model)
        a = self.raw[index] if bf else self.raw[:, index].transpose(0, 1)
        o = other[index] if bf else other[:, index].transpose(0, 1)
        n = masks.shape[-2] * masks.shape[-1]
        m = masks.reshape(len(index), n, 1).to(a.dtype)
        out = torch.cat([a[:, :-n], m * a[:, -n:] + (1 - m) * o[:, -n:]], dim=1)
        return out if bf else out.transpose(0, 1)


def _batch_first(model: CLIPModel) -> bool:
    transformer = getattr(model.visual, "transformer", None)
    return bool(getattr(transformer, "batch_first", True))


@contextmanager
def tap(model: CLIPModel, layer: str, requires_grad: bool = True) -> Iterator[Tap]:
    """Hook `layer` for the duration of the block; hooks are removed on exit, also after an exception.

    Holds ``model.lock`` meanwhile: a hook sees every pass through its module, so no other thread may run the
    model while it is set."""
    layer = model.resolve_layer(layer)
    t = Tap(model, layer, requires_grad)
    with model.lock:
        handles = [model.module(layer).register_forward_hook(t._capture)]
        try:
            if model.kind == "vit":
                handles.append(model.visual.conv1.register_forward_hook(t._capture_patch_grid))
            yield t
        finally:
            for h in handles:
                h.remove()


def hook_count(module: torch.nn.Module) -> int:
    """Number of forward hooks left anywhere in `module` (tests use this to prove nothing leaks)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in module.modules())
