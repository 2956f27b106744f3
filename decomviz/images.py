"""Turn whatever a user hands us (paths, bytes, PIL images, arrays) into RGB PIL images, with clear errors.

This is the one place images are opened and their pixel values interpreted. The conventions (README, "Input"):

- files and bytes: any format PIL reads; turned upright by their EXIF orientation, as a photo viewer shows them;
  more than ``MAX_PIXELS`` pixels (a decompression bomb) is refused before decoding;
- PIL images: turned upright by an EXIF orientation tag they still carry (as ``ImageOps.exif_transpose``);
- arrays: uint8 is 0-255, uint16 is 0-65535 (a 16-bit image, whatever its values), bool is black/white;
  other integer types must hold 0-255; float arrays hold values in [0, 1]. Anything else is refused with the
  cast that says what is meant, never guessed from the values.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 16_000 * 16_000  # larger than any photo; guards against decompression bombs
_FLOAT_SLACK = 1e-3  # float pixel values may overshoot [0, 1] by rounding this much (clipped)
_ORIENTATION = 0x0112


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
    """One image (PIL, path, or array) as an upright RGB PIL image.

    Grayscale, RGBA (composited on white), palette, 16-bit and float images are converted (see the module's
    conventions).
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
    if not path.is_file():  # reading a pipe would wait forever, a device would never end
        raise ImageInputError(f"'{path}' is not a regular file (a pipe, a device or a socket); it is not opened. "
                              "Pass the path of an image file.")
    return _decode(path, f"'{path}'")


def from_bytes(data: bytes, name: str = "upload") -> Image.Image:
    """The bytes of an image file (an upload) as an upright RGB PIL image; ImageInputError if unusable."""
    if not data:
        raise ImageInputError(f"'{name}' is empty.")
    return _decode(io.BytesIO(bytes(data)), f"'{name}'")


def _decode(source, what: str) -> Image.Image:
    """Open, check the size before decoding, decode, and convert; every failure is an ImageInputError."""
    try:
        with Image.open(source) as im:
            _check_size(im.size, what)
            im.load()
            return _pil_to_rgb(im)
    except ImageInputError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageInputError(f"{what} is too large to decode safely ({err}); it may be a decompression bomb. "
                              "Downscale it first.") from None
    except UnidentifiedImageError:
        raise ImageInputError(f"{what} is not an image PIL can read (tried every installed format).") from None
    except MemoryError:
        raise ImageInputError(f"{what} does not fit in memory when decoded; downscale it first.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageInputError(f"{what} could not be decoded ({err}); the file may be truncated or corrupt.") from None


def _check_size(size, what: str) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise ImageInputError(f"Image {what} is empty ({w}x{h} pixels).")
    if w * h > MAX_PIXELS:
        raise ImageInputError(
            f"Image {what} has {w}x{h} pixels, more than the {MAX_PIXELS:,} this toolkit accepts (a decompression "
            "bomb, or a scan far larger than any model input); downscale it first.")


def _upright(im: Image.Image) -> Image.Image:
    """The image as displayed: rotated / mirrored by its EXIF orientation tag, if it has one."""
    try:
        orientation = im.getexif().get(_ORIENTATION, 1)
    except Exception:  # unreadable EXIF: show the pixels as stored
        return im
    if orientation in (None, 1):
        return im
    return ImageOps.exif_transpose(im)


def _pil_to_rgb(im: Image.Image) -> Image.Image:
    _check_size(im.size, f"of mode {im.mode}")
    im = _upright(im)
    if im.mode == "RGB":
        return im.copy()
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return _array_to_rgb(np.asarray(im).astype(np.uint16))
    if im.mode == "I":  # 32-bit integer images come from >8-bit files (e.g. 16-bit PNGs in older Pillows)
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageInputError(f"A 32-bit integer image with values from {arr.min()} to {arr.max()} has no "
                                  "defined colour scale; convert it to 8 or 16 bits first.")
        return _array_to_rgb(arr.astype(np.uint16))
    if im.mode == "F":
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
    out = _to_uint8(arr)
    if out.ndim == 2:
        return Image.fromarray(out, "L").convert("RGB")
    if out.shape[-1] == 4:
        return _pil_to_rgb(Image.fromarray(np.ascontiguousarray(out), "RGBA"))
    return Image.fromarray(np.ascontiguousarray(out), "RGB")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Pixel values by dtype (never guessed from the values): see the module's conventions."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return (arr.astype(np.float64) * (255.0 / 65535.0)).round().astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min(initial=0)), int(arr.max(initial=0))
        if lo < 0 or hi > 255:
            raise ImageInputError(
                f"An {arr.dtype} image array with values from {lo} to {hi} has no defined scale: pass "
                "arr.astype(np.uint16) for a 16-bit image (0-65535), or uint8 values 0-255.")
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageInputError("The image array contains NaN or infinite values.")
        lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
        if lo < -_FLOAT_SLACK or hi > 1 + _FLOAT_SLACK:
            raise ImageInputError(
                f"A float image array holds pixel values in [0, 1]; this one spans [{lo:g}, {hi:g}]. For values "
                "0-255 pass arr.astype(np.uint8) (or arr / 255); for a normalised model input pass a torch tensor.")
        return (arr.astype(np.float64) * 255.0).clip(0, 255).round().astype(np.uint8)
    raise ImageInputError(f"Unsupported image array dtype {arr.dtype}; use uint8 (0-255), uint16 (0-65535) or "
                          "float (0-1).")


#: The most pixels an image may have once resized for the model (its shorter side at the input size): an image of
#: extreme aspect ratio (100000 x 1) would otherwise be blown up to billions of pixels before the crop.
MAX_RESIZED_PIXELS = 1 << 25


def resized_geometry(image_size: Tuple[int, int], size: Tuple[int, int],
                     offsets: str = "round") -> Tuple[int, int, int, int]:
    """(nw, nh, left, top): the size a (w, h) image is resized to for a model input ``size`` (H, W) with its
    shorter side fitted, and the centre crop's corner. For square inputs this is exactly open_clip's transform
    (torchvision ``Resize(H)``: the longer side truncated; ``CenterCrop``: offsets rounded half to even), so the
    pixels equal the model's own preprocessing. ``offsets="floor"``: the crop offsets rounded down, as Hugging
    Face image processors do. An image whose resized size would exceed `MAX_RESIZED_PIXELS` is refused here,
    before anything is allocated."""
    w, h = image_size
    H, W = size
    if H == W:
        nw, nh = (H, int(H * h / w)) if w <= h else (int(H * w / h), H)
    else:
        scale = max(H / h, W / w)
        nw, nh = max(W, round(w * scale)), max(H, round(h * scale))
    if nw * nh > MAX_RESIZED_PIXELS:
        raise ImageInputError(
            f"An image of {w}x{h} pixels (aspect ratio {max(w, h) / max(min(w, h), 1):,.0f}:1) would be resized to "
            f"{nw:,}x{nh:,} pixels for a {W}x{H} model input, more than the {MAX_RESIZED_PIXELS:,} allowed; crop it "
            "to the region you want explained first.")
    if offsets == "floor":
        return nw, nh, (nw - W) // 2, (nh - H) // 2
    return nw, nh, int(round((nw - W) / 2.0)), int(round((nh - H) / 2.0))


def crop_box(image_size: Tuple[int, int], size: Tuple[int, int], mode: str = "crop",
             offsets: str = "round") -> Tuple[float, float, float, float]:
    """The region of a (w, h) image that the model sees at ``size`` (H, W), as (top, left, height, width) in the
    image's own pixels: the centre crop of `resize_center_crop` ("crop"), or the whole image ("squash")."""
    w, h = image_size
    if mode == "squash":
        return 0.0, 0.0, float(h), float(w)
    H, W = size
    nw, nh, left, top = resized_geometry((w, h), (H, W), offsets)
    sx, sy = w / nw, h / nh
    return top * sy, left * sx, H * sy, W * sx


def resize_center_crop(im: Image.Image, size: Tuple[int, int], resample=Image.BICUBIC,
                       offsets: str = "round") -> np.ndarray:
    """Resize the shorter side to ``size`` (H, W) and centre-crop, as CLIP's preprocessing (open_clip's transform)
    does; (H, W, 3) uint8. See `resized_geometry`."""
    H, W = size
    nw, nh, left, top = resized_geometry(im.size, (H, W), offsets)
    if (nw, nh) != im.size:
        im = im.resize((nw, nh), resample)
    return np.asarray(im.crop((left, top, left + W, top + H)), dtype=np.uint8)


def to_model_view(array: Any, size: Tuple[int, int], mode: str = "crop", resample=Image.BICUBIC,
                  offsets: str = "round") -> np.ndarray:
    """What the model saw of an image, a mask or a map given in the photo's own geometry: the inverse of
    `Explanation.saliency_on_original`. ``size`` is the model's input (H, W); ``mode`` "crop" (resize the shorter
    side, centre-crop: `resize_center_crop`) or "squash" (resize the whole image to (H, W), as SigLIP does);
    ``offsets`` the crop's rounding, as the model's (``model.crop_offsets``: "round", or "floor" for Hugging Face).

    - a uint8 (h, w, 3) image comes back as the model's (H, W, 3) pixels, resampled with ``resample``;
    - a bool (h, w) mask comes back as a bool (H, W) mask: resampled as area shares and kept where at least half
      of a model pixel is covered, so a part keeps its area (up to rounding) in both geometries;
    - a float (h, w) map comes back as a float32 (H, W) map, resampled bilinearly (area-averaged when
      shrinking); a NaN (not seen) spreads to the model pixels it touches.
    """
    if mode not in ("crop", "squash"):
        raise ValueError(f"mode must be 'crop' or 'squash', got {mode!r}")
    arr = np.asarray(array)
    H, W = size
    if arr.ndim == 3 and arr.dtype == np.uint8:
        im = Image.fromarray(arr)
        if mode == "squash":
            return np.asarray(im.resize((W, H), resample), dtype=np.uint8)
        return resize_center_crop(im, (H, W), resample, offsets)
    if arr.ndim != 2:
        raise ValueError(f"to_model_view takes a uint8 (h, w, 3) image or an (h, w) mask or map; got shape "
                         f"{arr.shape} {arr.dtype}.")
    is_mask = arr.dtype == bool
    plane = Image.fromarray(arr.astype(np.float32), mode="F")
    if mode == "squash":
        out = np.asarray(plane.resize((W, H), Image.BILINEAR, reducing_gap=None), dtype=np.float32)
    else:
        out = resize_center_crop_plane(plane, (H, W), offsets)
    return out >= 0.5 if is_mask else out


def resize_center_crop_plane(plane: Image.Image, size: Tuple[int, int], offsets: str = "round") -> np.ndarray:
    """`resize_center_crop` of a float ("F") plane with bilinear resampling (area-averaging when shrinking),
    (H, W) float32; the same box as the image's, so a mask stays aligned with the pixels the model saw."""
    H, W = size
    w, h = plane.size
    nw, nh, left, top = resized_geometry((w, h), (H, W), offsets)
    if (nw, nh) != (w, h):
        plane = plane.resize((nw, nh), Image.BOX if nw < w else Image.BILINEAR)
    return np.asarray(plane.crop((left, top, left + W, top + H)), dtype=np.float32)


def read_label_map(path) -> np.ndarray:
    """A label map (a single-channel PNG of label indices: 8-bit grey, palette or 16-bit) as an (h, w) int64
    array of its indices, read as stored (no EXIF turn, no colour conversion); ImageInputError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise ImageInputError(f"Label map not found: '{path}'.")
    try:
        with Image.open(path) as im:
            _check_size(im.size, f"'{path}'")
            im.load()
            if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N"):
                raise ImageInputError(f"'{path}' is a {im.mode} image; a label map holds one label index per pixel "
                                      "(8-bit grey, palette or 16-bit PNG), not colours.")
            return np.asarray(im).astype(np.int64)
    except ImageInputError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, UnidentifiedImageError) as err:
        raise ImageInputError(f"'{path}' could not be read as a label map ({err}).") from None
