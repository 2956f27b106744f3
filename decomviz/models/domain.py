"""When a map cannot mean anything: a model with random weights, or a PartsWorld model shown an image that is not a
PartsWorld scene. `caveat_flags` gives the (B, T) flags every method adds to its Explanation
(``exp.flags["random_weights"]``, ``exp.flags["off_domain"]``); `caveat_warnings` says each once, with the fix.

The scene check is image statistics, not the model's opinion: the bundled models are confident (softmax ~1.0 over
their 12 classes) on any photo, so their confidence cannot tell. A PartsWorld scene is flat parts in the 12 palette
colours on a background with a fine per-pixel noise texture, and it has no flat region of any other colour. A photo
or a drawing has smooth or flat regions of other colours (sky, walls, paper) and little of that texture. The check
costs a few milliseconds per 224-px image and runs only for models trained on PartsWorld.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Dict

import numpy as np
import torch

from ..viz.caveats import caveat_messages

# thresholds, from PartsWorld scenes (seeds 3, 5, 7; sizes 224-448; PNG and JPEG 75-85) against scikit-learn's
# sample photos and drawn images: see tests/test_domain_warning.py
_PALETTE_TOL = 16      # max RGB distance of a pixel "in a palette colour"
_TEXTURE_MIN = 0.30    # PartsWorld scenes: 0.35-0.93 of pixels in the background's noise texture; photos <= 0.32
_COVER_MIN = 0.50      # palette colour or texture: scenes 0.55-1.0
_FLAT_OTHER_MAX = 0.03  # flat regions of non-palette colour: scenes 0.00-0.01 (JPEG); photos and drawings 0.19+


def random_weights(model) -> bool:
    """True for an open_clip architecture loaded without weights (``pretrained=None``, no checkpoint)."""
    return str(getattr(model, "source", "")).endswith(":random-init")


def trained_on_partsworld(model) -> bool:
    """True for the bundled models and any checkpoint folder whose training record (training.json) names
    PartsWorld. Cached on the model."""
    cached = getattr(model, "_partsworld_trained", None)
    if cached is not None:
        return cached
    from .loading import BUNDLED
    found = getattr(model, "name", None) in BUNDLED and not str(getattr(model, "source", "")).startswith("open_clip:")
    record = Path(str(getattr(model, "source", ""))) / "training.json"
    if not found and record.is_file():
        try:
            found = "PartsWorld" in json.dumps(json.loads(record.read_text(encoding="utf-8")).get("train_scenes", {}))
        except (OSError, ValueError, AttributeError):
            found = False
    try:
        model._partsworld_trained = bool(found)
    except AttributeError:
        pass
    return bool(found)


def _box(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1) square window (edges: the window shrinks), for (H, W, ...) arrays."""
    pad = np.pad(a, [(r + 1, r), (r + 1, r)] + [(0, 0)] * (a.ndim - 2), mode="edge").astype(np.float32)
    c = pad.cumsum(0).cumsum(1)
    n = 2 * r + 1
    return (c[n:, n:] - c[:-n, n:] - c[n:, :-n] + c[:-n, :-n]) / (n * n)


def scene_statistics(pixels: np.ndarray) -> Dict[str, float]:
    """Statistics of one (H, W, 3) uint8 image as the model sees it: the share of pixels in a palette colour
    (``palette``), in a fine noise texture like PartsWorld's backgrounds (``texture``), either (``cover``), and in
    flat regions of another colour (``flat_other``)."""
    from ..data import PALETTE
    a = np.asarray(pixels, dtype=np.float32)
    a16 = np.asarray(pixels, dtype=np.int16)
    in_palette = np.zeros(a.shape[:2], bool)
    for rgb in PALETTE.values():  # within the tolerance of a palette colour in every channel
        in_palette |= (np.abs(a16 - np.asarray(rgb, np.int16)) <= _PALETTE_TOL).all(-1)
    high = a - _box(a, 1)
    energy = np.sqrt(np.maximum(_box(high * high, 2), 0))  # local high-pass energy per channel
    texture = (energy.min(-1) > 1.5) & (energy.max(-1) < 16)
    flat_other = (energy.max(-1) < 1.0) & ~in_palette
    return {"palette": float(in_palette.mean()), "texture": float(texture.mean()),
            "cover": float((in_palette | texture).mean()), "flat_other": float(flat_other.mean())}


def looks_like_partsworld(pixels: np.ndarray) -> bool:
    """Whether one (H, W, 3) uint8 image looks like a PartsWorld scene (see the module's docstring)."""
    s = scene_statistics(pixels)
    return s["texture"] >= _TEXTURE_MIN and s["cover"] >= _COVER_MIN and s["flat_other"] <= _FLAT_OTHER_MAX


def caveat_flags(model, pixels, n_prompts: int) -> Dict[str, torch.Tensor]:
    """The (B, T) flags of maps that cannot mean anything: ``random_weights`` (always there; every pair True when
    the model has random weights) and, for models trained on PartsWorld, ``off_domain`` (the images such a model
    cannot read)."""
    images = np.asarray(pixels.numpy() if isinstance(pixels, torch.Tensor) else pixels)
    B = images.shape[0]
    flags: Dict[str, torch.Tensor] = {}
    flags["random_weights"] = torch.full((B, n_prompts), random_weights(model), dtype=torch.bool)
    if trained_on_partsworld(model) and images.ndim == 4 and images.shape[-1] == 3:
        off = torch.tensor([not looks_like_partsworld(im) for im in images], dtype=torch.bool)
        flags["off_domain"] = off[:, None].expand(B, n_prompts).clone()
    return flags


def caveat_warnings(model, flags: Dict[str, torch.Tensor]) -> None:
    """Warn (UserWarning) about the raised caveat flags, with the fix; random weights once per model."""
    name = getattr(model, "name", "the model")
    if "random_weights" in flags and bool(flags["random_weights"].any()) and not getattr(model, "_warned_random", False):
        for msg in caveat_messages(name, {"random_weights": flags["random_weights"]}):
            warnings.warn(msg, UserWarning, stacklevel=3)
        try:
            model._warned_random = True
        except AttributeError:
            pass
    if "off_domain" in flags:
        for msg in caveat_messages(name, {"off_domain": flags["off_domain"]}):
            warnings.warn(msg, UserWarning, stacklevel=3)
