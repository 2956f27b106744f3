"""What an explanation explains besides a prompt: targets in the image-embedding space, linear or not.

A prompt's cosine score is ``e(x) . e(t)`` for the normalised image embedding ``e(x)``; a `Target` generalises
the text embedding ``e(t)`` to any vector ``v``, so its score ``e(x) . v`` is explained by every method exactly
as a prompt's is (cosine, logit = scale x score, or softmax among the call's targets). Built in:

- `image_target(model, image)`: how much x looks like a reference image (the cosine of the two embeddings);
- `contrast_target(model, "a dog", "a cat")`: "a dog but not a cat", ``e(x) . (e(a) - e(b))``, which is the
  cosine with A minus the cosine with B;
- `any_target(model, ["a dog", "a cat"])`: "a dog or a cat", a smooth maximum of the cosines (not linear).

Any other linear read-out of the embedding (a probe, a class-mean difference) is ``Target(name, vector)``; any
differentiable function of it is ``Target(name, fn=f)`` with ``f(embeddings (N, D)) -> scores (N,)`` (a bare
callable in the prompt list works too, named after the function). A function's score takes the place of the
cosine: "logit" multiplies it by the model's logit scale, "softmax" runs over every target of the call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import torch


@dataclass(frozen=True)
class Target:
    """A named score of normalised image embeddings: a direction ``vector`` (D,), scored ``e . vector``, or a
    differentiable function ``fn`` from embeddings (N, D) to scores (N,). Calling it scores embeddings (N, D)."""

    name: str
    vector: Optional[torch.Tensor] = None
    fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("A Target needs a name (shown where a prompt's text would be).")
        if (self.vector is None) == (self.fn is None):
            raise ValueError(f"Target {self.name!r}: give either a vector (a direction) or fn= (a function of the "
                             "image embeddings), not both and not neither.")
        if self.fn is not None:
            if not callable(self.fn):
                raise ValueError(f"Target {self.name!r}: fn must be callable (embeddings (N, D) -> scores (N,)); got "
                                 f"{type(self.fn).__name__}.")
            return
        v = torch.as_tensor(self.vector)
        if v.ndim != 1 or not v.is_floating_point() or not bool(torch.isfinite(v).all()):
            raise ValueError(f"Target {self.name!r}: the vector must be one finite float vector (D,); got shape "
                             f"{tuple(v.shape)} {v.dtype}.")
        object.__setattr__(self, "vector", v.detach())

    def __call__(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        if self.fn is not None:
            return _call_function(self.name, self.fn, image_embeddings)
        return image_embeddings @ self.vector.to(image_embeddings)


def _call_function(name: str, fn: Callable, emb: torch.Tensor) -> torch.Tensor:
    """``fn`` on embeddings of any leading shape (..., D) -> (...), with a clear error for a wrong output."""
    flat = emb.reshape(-1, emb.shape[-1])
    out = fn(flat)
    if not torch.is_tensor(out) or out.shape != flat.shape[:1]:
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ValueError(f"Target {name!r}: its function must map image embeddings (N, D) to one score per image "
                         f"(N,) as a torch tensor (for gradients); for N={flat.shape[0]} it returned {got}.")
    return out.to(emb.dtype).reshape(emb.shape[:-1])


class TargetRows:
    """The targets of one call as the engine scores them: for each column a direction (D,) or a `Target` with a
    function. ``cosines(e)`` gives (..., T) in one matrix product for the directions, and one call per function.
    Sliced and indexed like the (T, D) matrix it stands for (for chunking over prompts)."""

    def __init__(self, columns: Sequence[Union[torch.Tensor, Target]]):
        self.columns = list(columns)
        self._linear = [k for k, c in enumerate(self.columns) if torch.is_tensor(c)]
        self._matrix = torch.stack([self.columns[k] for k in self._linear]) if self._linear else None

    def __len__(self) -> int:
        return len(self.columns)

    def __getitem__(self, index) -> "TargetRows":
        cols = self.columns[index] if isinstance(index, slice) else [self.columns[int(i)] for i in index]
        return TargetRows(cols)

    def cosines(self, image_emb: torch.Tensor) -> torch.Tensor:
        linear = image_emb @ self._matrix.T if self._matrix is not None else None
        out: List[Optional[torch.Tensor]] = [None] * len(self.columns)
        for j, k in enumerate(self._linear):
            out[k] = linear[..., j]
        for k, c in enumerate(self.columns):
            if out[k] is None:
                out[k] = c(image_emb)
        return torch.stack(out, dim=-1)


def image_target(model, image: Any, name: str = "similarity to the reference image") -> Target:
    """The cosine of x's embedding with a reference image's (PIL, path or array)."""
    return Target(name, model.encode_image(image)[0].float().cpu())


def contrast_target(model, a: str, b: str, name: str = "") -> Target:
    """"a but not b": the cosine with prompt ``a`` minus the cosine with prompt ``b``."""
    e = model.encode_text([a, b]).float().cpu()
    return Target(name or f"{a} but not {b}", e[0] - e[1])


def any_target(model, prompts: Sequence[str], sharpness: float = 50.0, name: str = "") -> Target:
    """"a or b or ...": a smooth maximum of the cosines with ``prompts``,
    ``logsumexp(sharpness * cos) / sharpness`` (the largest cosine as sharpness grows). Not linear in the
    embedding: its gradient follows whichever prompt matches best."""
    if isinstance(prompts, str) or len(prompts) < 2:
        raise ValueError("any_target takes a list of at least two prompts, e.g. ['a dog', 'a cat'].")
    e = model.encode_text(list(prompts)).float()

    def smooth_max(emb: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(sharpness * emb @ e.to(emb).T, dim=-1) / sharpness

    return Target(name or " or ".join(prompts), fn=smooth_max)


Targets = Union[str, Target, Callable, Sequence[Union[str, Target, Callable]]]


def as_target(item: Any) -> Union[str, Target]:
    """A prompt list item as given, or a bare callable as a function `Target` named after it."""
    if isinstance(item, (str, Target)) or not callable(item):
        return item
    name = getattr(item, "__name__", "") or ""
    return Target(name if name and name != "<lambda>" else "custom target", fn=item)


def target_matrix(model, targets: Targets, contrast: Sequence[str] = ()) -> Tuple[List[str], Any]:
    """The names of ``targets`` (prompts, `Target`s and callables, mixed) and what scores them, on the model's
    device: a (T + C, D) matrix of text embeddings, Target vectors and then the ``contrast`` prompts, or, when a
    target is a function, the same columns as `TargetRows`."""
    items = [targets] if isinstance(targets, (str, Target)) or callable(targets) else list(targets) \
        if isinstance(targets, (list, tuple)) else targets
    if not isinstance(items, list) or not items:
        raise ValueError("Prompts must be a non-empty string or list of strings (or dv Targets), got "
                         f"{type(targets).__name__}.")
    items = [as_target(p) for p in items]
    texts = [p for p in items if not isinstance(p, Target)]
    if texts:
        model.check_prompts(texts)
    encoded = iter(model.encode_text(texts + list(contrast))) if texts or contrast else iter(())
    rows: List[Union[torch.Tensor, Target]] = []
    names = []
    for p in items:
        if isinstance(p, Target):
            names.append(p.name)
            rows.append(p if p.fn is not None else p.vector.to(model.device, torch.float32))
        else:
            names.append(p)
            rows.append(next(encoded))
    rows += list(encoded)  # the contrast prompts, last
    dims = {int(r.shape[0]) for r in rows if torch.is_tensor(r)}
    if len(dims) > 1:
        raise ValueError(f"Target vectors must have the model's embedding size; got sizes {sorted(dims)}.")
    if all(torch.is_tensor(r) for r in rows):
        return names, torch.stack(rows)
    return names, TargetRows(rows)
