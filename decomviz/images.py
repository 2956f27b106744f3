"""Turn whatever a user hands us (paths, PIL images, arrays) into RGB PIL images, with clear errors."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 16_000 * 16_000  # larger than any photo; guards against decompression bombs


class ImageInputError(ValueError):
    """An image argument could not be used; the message says why and what to pass instead."""


def as_image_list(images: Any) -> list:
    """Accept one image or a list/tuple of them; return a list (no conversion yet)."""
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ImageInputError("No images given: pass a PIL image, a path, a uint8 HxWx3 array, or a list of them.")
        return list(images)
    return [images]


def to_rgb(image: Any) -> Image.Image:
    """One image (PIL, path, or array) as an RGB PIL image.

    Grayscale, RGBA (composited on white), palette, 16-bit and float images are converted.
    """
    if isinstance(image, (str, os.PathLike)):
        return _open_path(Path(image))
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    raise ImageInputError(
        f"Cannot use an object of type {type(image).__name__} as an image: pass a PIL image, a file path, "
        "or a uint8 HxWx3 numpy array.")


def load_images(images: Any) -> List[Image.Image]:
    return [to_rgb(im) for im in as_image_list(images)]


def _open_path(path: Path) -> Image.Image:
    if not path.exists():
        raise ImageInputError(f"Image file not found: '{path}'. Check the path (relative paths start at {Path.cwd()}).")
    if path.is_dir():
        raise ImageInputError(f"'{path}' is a folder, not an image file: pass the path of one image.")
    try:
        with Image.open(path) as im:
            _check_size(im.size, str(path))
            im.load()
            return _pil_to_rgb(im)
    except UnidentifiedImageError:
        raise ImageInputError(f"'{path}' is not an image PIL can read (tried every installed format).") from None
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ImageInputError):
            raise
        raise ImageInputError(f"'{path}' could not be decoded ({err}); the file may be truncated or corrupt.") from None


def _check_size(size, what: str) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise ImageInputError(f"Image {what} is empty ({w}x{h} pixels).")
    if w * h > MAX_PIXELS:
        raise ImageInputError(
            f"Image {what} has {w}x{h} pixels, more than the {MAX_PIXELS:,} this toolkit accepts; downscale it first.")


def _pil_to_rgb(im: Image.Image) -> Image.Image:
    _check_size(im.size, f"of mode {im.mode}")
    if im.mode == "RGB":
        return im.copy()
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _array_to_rgb(np.asarray(im))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _array_to_rgb(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ImageInputError(
            f"An image array must be HxW (grayscale), HxWx3 (RGB) or HxWx4 (RGBA); got shape {arr.shape}. "
            "For a CHW array use arr.transpose(1, 2, 0).")
    _check_size((arr.shape[1], arr.shape[0]), f"array {arr.shape}")
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.bool_:
        out = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.integer):
        top = 65535 if arr.max(initial=0) > 255 else 255
        out = (arr.astype(np.float64) * (255.0 / top)).clip(0, 255).round().astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageInputError("The image array contains NaN or infinite values.")
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        out = (arr * scale).clip(0, 255).round().astype(np.uint8)
    else:
        raise ImageInputError(f"Unsupported image array dtype {arr.dtype}; use uint8 (0-255) or float (0-1).")
    if out.ndim == 2:
        return Image.fromarray(out, "L").convert("RGB")
    if out.shape[-1] == 4:
        return _pil_to_rgb(Image.fromarray(np.ascontiguousarray(out), "RGBA"))
    return Image.fromarray(np.ascontiguousarray(out), "RGB")


def resize_center_crop(im: Image.Image, size: Tuple[int, int], resample=Image.BICUBIC) -> np.ndarray:
    """Resize the shorter side to ``size`` (H, W) and centre-crop, as CLIP's preprocessing does; (H, W, 3) uint8."""
    H, W = size
    w, h = im.size
    scale = max(H / h, W / w)
    nw, nh = max(W, round(w * scale)), max(H, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), resample, reducing_gap=3.0 if scale < 0.5 else None)
    left, top = (nw - W) // 2, (nh - H) // 2
    return np.asarray(im.crop((left, top, left + W, top + H)), dtype=np.uint8)
