"""Many prompts in chunks: a call runs as passes of at most `PROMPTS_PER_PASS` prompts each, written into the
result as they finish, so that the memory a call needs besides its result does not grow with the number of
prompts.

With score "cosine" or "logit" each prompt's map depends on that prompt alone, so the chunks give the result of
one pass (up to float rounding). With "softmax" the prompts compete: each chunk is explained with the call's
other prompts (and any ``contrast`` prompts) as contrast, so its softmax is still over all of them.
"""
from __future__ import annotations

import copy
from dataclasses import fields
from typing import Dict, List, Optional

import torch

from ..explanation import Explanation

#: Prompts explained per forward + backward pass of the image tower.
PROMPTS_PER_PASS = 16
_PER_IMAGE = ("images", "reference_images")  # (B, ...) arrays: the same in every chunk


def explain_in_chunks(cam, x: torch.Tensor, text: torch.Tensor, prompts: List[str],
                      step: int = PROMPTS_PER_PASS) -> Explanation:
    """``cam._explain(x, text, prompts)``, in chunks of ``step`` prompts. ``text`` holds the embeddings of the
    prompts and then of ``cam.contrast`` (if any)."""
    T = len(prompts)
    softmax = getattr(cam, "score", None) == "softmax"
    if T <= step or (softmax and not hasattr(cam, "contrast")):
        return cam._explain(x, text, prompts)
    gathered: Optional[_Gathered] = None
    for lo in range(0, T, step):
        hi = min(lo + step, T)
        if softmax:
            part_cam = copy.copy(cam)  # the others compete as contrast prompts; `cam` itself is not changed
            part_cam.contrast = tuple(prompts[:lo]) + tuple(prompts[hi:]) + tuple(cam.contrast)
            order = [*range(lo, hi), *range(lo), *range(hi, len(text))]
            part = part_cam._explain(x, text[order], prompts[lo:hi])
        else:
            part = cam._explain(x, text[lo:hi], prompts[lo:hi])
        if gathered is None:
            gathered = _Gathered(part, prompts)
        gathered.add(lo, part)
        del part
    return gathered.result()


class _Gathered:
    """The full result, allocated once from the first chunk's shapes, filled chunk by chunk along T."""

    def __init__(self, first: Explanation, prompts: List[str]):
        self.first, self.prompts = first, list(prompts)
        T = len(prompts)
        self.arrays: Dict[str, torch.Tensor] = {}
        for f in fields(first):
            val = getattr(first, f.name)
            if isinstance(val, torch.Tensor) and f.name not in _PER_IMAGE:
                self.arrays[f.name] = val.new_empty((val.shape[0], T, *val.shape[2:]))
        self.flags: Dict[str, torch.Tensor] = {}

    def add(self, lo: int, part: Explanation) -> None:
        t = part.saliency.shape[1]
        for name, out in self.arrays.items():
            val = getattr(part, name)
            if val is None or val.shape[2:] != out.shape[2:]:
                raise RuntimeError(f"Prompt chunks disagree on {name}: {None if val is None else tuple(val.shape)} "
                                   f"vs {tuple(out.shape)}.")
            out[:, lo:lo + t] = val
        for name, flag in part.flags.items():
            if name not in self.flags:
                self.flags[name] = torch.zeros((flag.shape[0], len(self.prompts)), dtype=flag.dtype)
            self.flags[name][:, lo:lo + t] = flag

    def result(self) -> Explanation:
        kw = {f.name: getattr(self.first, f.name) for f in fields(self.first)}
        kw.update(self.arrays, prompts=self.prompts, flags=self.flags)
        return Explanation(**kw)
