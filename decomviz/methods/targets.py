"""What an explanation explains besides a prompt: targets that are directions in the image-embedding space.

A prompt's cosine score is ``e(x) . e(t)`` for the normalised image embedding ``e(x)``; a `Target` generalises
the text embedding ``e(t)`` to any vector ``v``, so its score ``e(x) . v`` is explained by every method exactly
as a prompt's is (cosine, logit = scale x score, or softmax among the call's targets). Two kinds are built in:

- `image_target(model, image)`: how much x looks like a reference image (the cosine of the two embeddings);
- `contrast_target(model, "a dog", "a cat")`: "a dog but not a cat", ``e(x) . (e(a) - e(b))``, which is the
  cosine with A minus the cosine with B.

Any other linear read-out of the embedding (a probe, a class-mean difference) is ``Target(name, vector)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple, Union

import torch


@dataclass(frozen=True)
class Target:
    """A named direction ``vector`` (D,) in the image-embedding space; calling it scores normalised image
    embeddings (N, D) -> (N,)."""

    name: str
    vector: torch.Tensor

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("A Target needs a name (shown where a prompt's text would be).")
        v = torch.as_tensor(self.vector)
        if v.ndim != 1 or not v.is_floating_point() or not bool(torch.isfinite(v).all()):
            raise ValueError(f"Target {self.name!r}: the vector must be one finite float vector (D,); got shape "
                             f"{tuple(v.shape)} {v.dtype}.")
        object.__setattr__(self, "vector", v.detach())

    def __call__(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        return image_embeddings @ self.vector.to(image_embeddings)


def image_target(model, image: Any, name: str = "similarity to the reference image") -> Target:
    """The cosine of x's embedding with a reference image's (PIL, path or array)."""
    return Target(name, model.encode_image(image)[0].float().cpu())


def contrast_target(model, a: str, b: str, name: str = "") -> Target:
    """"a but not b": the cosine with prompt ``a`` minus the cosine with prompt ``b``."""
    e = model.encode_text([a, b]).float().cpu()
    return Target(name or f"{a} but not {b}", e[0] - e[1])


Targets = Union[str, Target, Sequence[Union[str, Target]]]


def target_matrix(model, targets: Targets, contrast: Sequence[str] = ()) -> Tuple[List[str], torch.Tensor]:
    """The names of ``targets`` (prompts or `Target`s, mixed) and the rows to score them with, (T + C, D) on the
    model's device: text embeddings for prompts, the vectors of Targets, then the ``contrast`` prompts."""
    items = [targets] if isinstance(targets, (str, Target)) else list(targets) if isinstance(targets, (list, tuple)) \
        else targets
    if not isinstance(items, list) or not items:
        raise ValueError("Prompts must be a non-empty string or list of strings (or dv Targets), got "
                         f"{type(targets).__name__}.")
    texts = [p for p in items if not isinstance(p, Target)]
    if texts:
        model.check_prompts(texts)
    encoded = iter(model.encode_text(texts + list(contrast))) if texts or contrast else iter(())
    rows, names = [], []
    for p in items:
        if isinstance(p, Target):
            names.append(p.name)
            rows.append(p.vector.to(model.device, torch.float32))
        else:
            names.append(p)
            rows.append(next(encoded))
    rows += list(encoded)  # the contrast prompts, last
    dims = {int(r.shape[0]) for r in rows}
    if len(dims) != 1:
        raise ValueError(f"Target vectors must have the model's embedding size; got sizes {sorted(dims)}.")
    return names, torch.stack(rows)
