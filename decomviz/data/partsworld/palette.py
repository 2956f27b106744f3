"""The PartsWorld palette: the colour names parts and distractors are drawn in, with their RGB values."""
from __future__ import annotations

from typing import Dict, Tuple

__all__ = ["PALETTE"]

#: colour name -> RGB (uint8 values); every pixel of a part has exactly the RGB of its colour
PALETTE: Dict[str, Tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 220, 40),
    "orange": (245, 140, 30),
    "purple": (140, 60, 190),
    "pink": (245, 130, 190),
    "brown": (130, 80, 40),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "cyan": (40, 210, 220),
}
