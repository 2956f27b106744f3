"""PartsWorld backgrounds: flat, gradient, striped or checkered base tones plus a fixed noise texture.

A background is drawn from the scene's random generator. :class:`Background` records the generator
state it was drawn from, so the same background can be drawn again later (for an intervention) without
keeping its pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple

import numpy as np
from PIL import Image, ImageChops

__all__ = ["Background", "background"]

_NOISE_BANK: Dict[int, Image.Image] = {}
_NOISE_OFFSET = 20   # bank values lie in [0, 2 * _NOISE_OFFSET]; tones lie in [_TONE_LO, _TONE_HI]
_TONE_LO, _TONE_HI = 40, 210


def _noise_bank(size: int) -> Image.Image:
    """A fixed RGB noise texture of (2 * size, 2 * size) pixels, centred on ``_NOISE_OFFSET``.

    Fine grain plus coarse blotches, from a fixed seed (cached per size). Scenes add random crops of it
    to their base tones (values stay in 0..255).
    """
    bank = _NOISE_BANK.get(size)
    if bank is None:
        r = np.random.default_rng(20240531)
        n2 = 2 * size
        fine = r.integers(-10, 11, size=(n2, n2, 3), dtype=np.int16)
        cell = max(size // 28, 2)
        cs = n2 // cell + 1
        coarse = r.integers(-9, 10, size=(cs, cs, 3), dtype=np.int16)
        coarse = np.repeat(np.repeat(coarse, cell, 0), cell, 1)[:n2, :n2]
        arr = (fine + coarse + _NOISE_OFFSET).clip(0, 2 * _NOISE_OFFSET).astype(np.uint8)
        bank = Image.fromarray(arr, "RGB")
        _NOISE_BANK[size] = bank
    return bank


def background(rng: np.random.Generator, size: int, avoid: np.ndarray) -> Image.Image:
    """A textured background whose base tones keep away from the colours in `avoid`.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random choice (advanced by this call).
    size : int
        The image is ``size x size``.
    avoid : numpy.ndarray
        (K, 3) float RGB colours the base tones keep away from (K may be 0).

    Returns
    -------
    PIL.Image.Image
        RGB image of ``size x size`` pixels.
    """
    def tone() -> np.ndarray:
        for _ in range(30):
            c = rng.integers(_TONE_LO, _TONE_HI + 1, size=3).astype(np.float64)
            c = c * 0.6 + c.mean() * 0.4                        # muted
            if avoid.size == 0 or np.min(np.abs(avoid - c).sum(1)) > 110:
                break
        return c.astype(np.uint8) - np.uint8(_NOISE_OFFSET)  # room for the noise, still in [20, 190]

    kind = int(rng.integers(0, 4))
    a = tone()
    if kind == 0:      # flat
        base = Image.new("RGB", (size, size), tuple(int(v) for v in a))
    else:
        b = tone()
        vertical = rng.random() < 0.5
        if kind == 1:      # linear gradient
            t = np.linspace(0.0, 1.0, size)[:, None]
            line = (a * (1 - t) + b * t).astype(np.uint8)
        elif kind == 2:    # stripes
            period = int(rng.integers(max(size // 16, 4), max(size // 5, 6)))
            band = (np.arange(size) // period) % 2 == 0
            line = np.where(band[:, None], a, b).astype(np.uint8)
        if kind in (1, 2):
            line = line[:, None, :] if vertical else line[None, :, :]
            base = Image.fromarray(np.ascontiguousarray(line), "RGB").resize((size, size), Image.NEAREST)
        else:              # checker
            period = int(rng.integers(max(size // 12, 4), max(size // 4, 6)))
            nc = size // period + 1
            idx = np.arange(nc)
            small = np.where(((idx[:, None] + idx[None, :]) % 2 == 0)[..., None], a, b).astype(np.uint8)
            base = Image.fromarray(small, "RGB").resize((nc * period, nc * period), Image.NEAREST)
            base = base.crop((0, 0, size, size))
    oy, ox = (int(v) for v in rng.integers(0, size, size=2))
    noise = _noise_bank(size).crop((ox, oy, ox + size, oy + size))
    return ImageChops.add(base, noise)


@dataclass(frozen=True)
class Background:
    """How a scene's background was drawn, so that it can be drawn again identically.

    Attributes
    ----------
    state : dict
        The bit generator state (``rng.bit_generator.state``) right before the background was drawn.
    size : int
        The image is ``size x size``.
    avoid : numpy.ndarray
        (K, 3) float64 RGB colours the base tones keep away from (the scene's original part colours).
    """
    state: Dict[str, Any]
    size: int
    avoid: np.ndarray

    @classmethod
    def draw_from(cls, rng: np.random.Generator, size: int, avoid: np.ndarray) -> Tuple["Background", Image.Image]:
        """Draw a background from `rng` (advancing it), and record how.

        Parameters
        ----------
        rng, size, avoid
            As for :func:`background`.

        Returns
        -------
        (Background, PIL.Image.Image)
            The record, and the ``size x size`` RGB background it describes.
        """
        spec = cls(state=rng.bit_generator.state, size=int(size), avoid=np.array(avoid, dtype=np.float64))
        return spec, background(rng, size, avoid)

    def image(self) -> Image.Image:
        """The background again: a new ``size x size`` RGB image, pixel for pixel as first drawn."""
        bit_generator = getattr(np.random, self.state["bit_generator"])()
        bit_generator.state = self.state
        return background(np.random.Generator(bit_generator), self.size, self.avoid)
