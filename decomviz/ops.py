"""Math and file helpers that several parts of decomviz share: each is written here once.

Scores of embeddings against prompts, the blurred reference and masked blends over it, scoring masked
images in batches, resizing maps and masks, min-max normalisation, and writing a file atomically. Nothing
here imports another decomviz module; a ``model`` argument is anything with ``embed(x) -> (N, D)``
and ``logit_scale`` (a `decomviz.models.CLIPModel`).
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

#: Input size at which pixel knobs (blur sigma, pointing-game tolerance) are given; they scale with the input.
REFERENCE_SIZE = 224


# ---------------------------------------------------------------------------------------------- scores
def clip_score(image_emb: torch.Tensor, text_emb: torch.Tensor, kind: str, logit_scale: torch.Tensor) -> torch.Tensor:
    """Scores of normalised image embeddings against every prompt.

    Parameters
    ----------
    image_emb : Tensor of shape (..., D), L2-normalised.
    text_emb : Tensor of shape (T, D): L2-normalised prompt embeddings, or any target direction
        (`decomviz.methods.targets.Target`), whose "cosine" is then the dot product; or a
        `decomviz.methods.targets.TargetRows` when some targets are functions of the embedding.
    kind : "cosine", "logit" (``logit_scale * cosine``) or "softmax" (over the T prompts).
    logit_scale : scalar Tensor, ``exp`` of the model's learned temperature.

    Returns
    -------
    Tensor of shape (..., T).
    """
    cos = text_emb.cosines(image_emb) if hasattr(text_emb, "cosines") else image_emb @ text_emb.T  # TargetRows
    if kind == "cosine":
        return cos
    logits = logit_scale * cos
    return logits if kind == "logit" else logits.softmax(dim=-1)


def pair_score(image_emb: torch.Tensor, text_emb: torch.Tensor, prompt_index: torch.Tensor, kind: str,
               logit_scale: torch.Tensor) -> torch.Tensor:
    """Score of each embedding (N, D) against its own prompt ``prompt_index`` (N,); a softmax is still
    taken over all T prompts. Returns (N,)."""
    return clip_score(image_emb, text_emb, kind, logit_scale).gather(-1, prompt_index[:, None])[:, 0]


@torch.no_grad()
def embed_batched(embed: Callable[[torch.Tensor], torch.Tensor], make_batch: Callable[[int, int], torch.Tensor],
                  n: int, batch_size: int) -> torch.Tensor:
    """Embeddings of ``n`` inputs, made chunk by chunk by ``make_batch(start, stop)`` and passed to ``embed``,
    so that at most ``batch_size`` inputs exist at a time. Returns (n, D)."""
    return torch.cat([embed(make_batch(i, min(i + batch_size, n))) for i in range(0, n, batch_size)])


def embed_masked(embed: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, reference: torch.Tensor, masks,
                 image_of: torch.Tensor, batch_size: int = 32, how: str = "convex") -> torch.Tensor:
    """Embeddings of the masked inputs ``M * x + (1 - M) * r``, made and embedded ``batch_size`` at a time.

    Parameters
    ----------
    embed : the image tower, a batch (n, 3, H, W) -> normalised embeddings (n, D).
    x, reference : Tensors of shape (B, 3, H, W), normalised images and their references.
    masks : Tensor of shape (N, 1, H, W), values in [0, 1] (1 keeps the image), or a callable
        ``masks(start, stop)`` that makes the masks of items start..stop-1 (so that they need not all exist at once).
    image_of : Tensor of shape (N,): the image of each item.
    how : "convex" (`blend`, the default) or "max" (`max_blend`).

    Returns
    -------
    Tensor of shape (N, D).
    """
    mask_of = masks if callable(masks) else (lambda i, j: masks[i:j])
    mix = BLENDS[how]
    return embed_batched(embed, lambda i, j: mix(mask_of(i, j), x[image_of[i:j]], reference[image_of[i:j]]),
                         len(image_of), batch_size)


def score_masked(model, x: torch.Tensor, reference: torch.Tensor, masks, image_of: torch.Tensor,
                 text: torch.Tensor, prompt_of: torch.Tensor, score: str, batch_size: int = 32) -> torch.Tensor:
    """s(M * x + (1 - M) * r, t) for many (mask, image, prompt) items, in batches (see `embed_masked`).

    ``model`` gives ``embed`` and ``logit_scale``; ``text`` (T, D) holds the normalised prompt embeddings,
    ``prompt_of`` (N,) the prompt of each item, ``score`` the kind of `clip_score`. Returns (N,).
    """
    emb = embed_masked(model.embed, x, reference, masks, image_of, batch_size)
    return pair_score(emb, text, prompt_of, score, model.logit_scale)


# ---------------------------------------------------------------------------------------------- references
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


def blurred_reference(x: torch.Tensor, blur_sigma: float) -> torch.Tensor:
    """The reference image r: ``x`` (B, 3, H, W) blurred with sigma given in pixels at `REFERENCE_SIZE`
    and scaled to the input width."""
    return gaussian_blur(x, scaled_pixels(blur_sigma, x.shape[-1]))


def scaled_pixels(pixels_at_reference: float, size: int) -> float:
    """A length given in pixels at `REFERENCE_SIZE`, at an input of ``size`` pixels."""
    return pixels_at_reference * size / REFERENCE_SIZE


def blend(mask: torch.Tensor, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The convex blend ``M * x + (1 - M) * r`` (the same in pixel and in normalised space)."""
    return mask * x + (1 - mask) * reference


def max_blend(mask: torch.Tensor, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The element-wise ``max(M * x, (1 - M) * r)`` of normalised images, as the authors' released code blends.

    Unlike `blend` it is not a mixture: where both terms are small the result is darker than either, and since
    it acts in normalised space a dark pixel (negative) loses to 0, i.e. becomes the dataset's mean colour.
    Offered to reproduce the paper's figures, not as the default."""
    return torch.maximum(mask * x, (1 - mask) * reference)


BLENDS = {"convex": blend, "max": max_blend}


# ---------------------------------------------------------------------------------------------- maps
def minmax(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Min-max normalise over the last two dims; a constant map becomes all zeros (never NaN)."""
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    return torch.where(span > eps, (maps - lo) / span.clamp_min(eps), torch.zeros_like(maps))


def minmax_np(m: np.ndarray) -> np.ndarray:
    """`minmax` of one numpy map (H, W), as float32."""
    return minmax(torch.as_tensor(np.asarray(m, dtype=np.float32))).numpy()


def upsample(maps: torch.Tensor, size: Sequence[int], mode: str = "bilinear") -> torch.Tensor:
    """Resize maps (..., h, w) to (..., H, W) with ``mode`` ("bilinear" or "bicubic", align_corners=False)."""
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    out = F.interpolate(flat, size=tuple(size), mode=mode, align_corners=False)
    return out.reshape(*lead, *out.shape[-2:])


def upsample_np(m: np.ndarray, size: Sequence[int], mode: str = "bilinear") -> np.ndarray:
    """`upsample` of one numpy map (h, w) -> (H, W) float32."""
    return upsample(torch.tensor(np.asarray(m, dtype=np.float32)), size, mode).numpy()


def resize_masks(masks: Union[np.ndarray, torch.Tensor], size: Sequence[int]) -> torch.Tensor:
    """Boolean masks (..., H, W) at another size (nearest neighbour), as the explained image is resized."""
    m = torch.as_tensor(np.asarray(masks)) if not isinstance(masks, torch.Tensor) else masks
    if tuple(m.shape[-2:]) == tuple(size):
        return m.bool()
    lead = m.shape[:-2]
    out = F.interpolate(m.reshape(-1, 1, *m.shape[-2:]).float(), size=tuple(size), mode="nearest")
    return out.reshape(*lead, *out.shape[-2:]) > 0.5


def to_host(*groups: dict, pack: Optional[bool] = None) -> tuple:
    """Dicts of tensors, detached and on the CPU, moved in one device-to-host copy (bytes packed, then split
    and viewed back), so that a batch on a GPU pays one transfer, not one per array. Returns one dict per
    dict given. ``pack`` (default: when any tensor is off the CPU) forces or skips the packing."""
    items = [(g, k, t.detach().contiguous()) for g, group in enumerate(groups) for k, t in group.items()]
    out: tuple = tuple({} for _ in groups)
    if pack is None:
        pack = any(t.device.type != "cpu" for _, _, t in items)
    if not pack:
        for g, k, t in items:
            out[g][k] = t
        return out
    # each tensor's bytes start at a multiple of 16, so that every dtype can view its slice back
    flat, offsets, at = [], [], 0
    for _, _, t in items:
        raw = t.reshape(-1).view(torch.uint8)
        pad = -raw.numel() % 16
        flat += [raw, raw.new_zeros(pad)]
        offsets.append(at)
        at += raw.numel() + pad
    host = torch.cat(flat).cpu()
    for (g, k, t), o in zip(items, offsets):
        out[g][k] = host[o:o + t.numel() * t.element_size()].view(t.dtype).reshape(t.shape)
    return out


# ---------------------------------------------------------------------------------------------- files
@contextmanager
def atomic_write(path: Union[str, os.PathLike], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename, on failure it
    is removed, so a reader never sees a half-written file. ``suffix`` is appended to the temporary name
    (e.g. ".npz" for writers that add their own suffix). The temporary name is hidden (a leading '.') and
    unique to the writer (process id and a random part), so two writers never write into one temporary file."""
    import uuid
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
