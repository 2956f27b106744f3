"""Pictures inside figures: the heat colour scale as a lookup table, heat maps and part masks blended over an
image, and thumbnails sent as JPEG/PNG data URIs (go.Image ``source``) rather than as arrays of numbers, which
keeps figures with many images light enough to redraw in a browser."""
from __future__ import annotations

import base64
import functools
import io
from typing import Optional, Tuple

import numpy as np
import plotly.graph_objects as go

HEAT = "Turbo"
THUMB_SIZE = 112  # thumbnails (OSSM overlays, masked inputs) are encoded at this size
PART_COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
               "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000"]


@functools.lru_cache(maxsize=4)
def heat_lut(colorscale: str = HEAT) -> np.ndarray:
    """A (256, 3) uint8 lookup table of a plotly colour scale."""
    from plotly.colors import sample_colorscale
    rgb = sample_colorscale(colorscale, np.linspace(0, 1, 256).tolist())
    return np.array([[round(float(v)) for v in c[c.index("(") + 1:-1].split(",")] for c in rgb], dtype=np.uint8)


def hex_rgb(color: str) -> Tuple[int, int, int]:
    """"#rrggbb" as an (r, g, b) tuple of ints."""
    color = color.lstrip("#")
    return tuple(int(color[i:i + 2], 16) for i in (0, 2, 4))


# ---------------------------------------------------------------------------------------------- blends
def blend_heat(pixels: np.ndarray, heat: Optional[np.ndarray], opacity: float = 0.5,
               colorscale: str = HEAT) -> np.ndarray:
    """RGB uint8 (H, W, 3): ``heat`` in [0, 1] (H, W) coloured and alpha-blended over ``pixels``."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    if heat is None:
        return pixels
    idx = (np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float64)), 0, 1) * 255).round().astype(np.uint8)
    colour = heat_lut(colorscale)[idx].astype(np.float32)
    return (pixels.astype(np.float32) * (1 - opacity) + colour * opacity).round().clip(0, 255).astype(np.uint8)


def heat_overlay(pixels: np.ndarray, heat: Optional[np.ndarray], opacity: float = 0.7,
                 colorscale: str = HEAT) -> np.ndarray:
    """RGB uint8: `heat` (H, W) in [0, 1] coloured and blended over `pixels` with an opacity that grows with the
    heat (0.15 + opacity * heat), so the image stays visible where the map is cold."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    if heat is None:
        return pixels
    h = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0, 1)
    colour = heat_lut(colorscale)[(h * 255).round().astype(np.uint8)].astype(np.float32)
    a = (0.15 + opacity * h)[..., None]
    return (pixels.astype(np.float32) * (1 - a) + colour * a).round().clip(0, 255).astype(np.uint8)


def part_map(pixels: np.ndarray, parts, opacity: float = 0.65) -> np.ndarray:
    """All ground-truth parts of an image ("name" -> bool (H, W), in order) coloured with PART_COLORS over a
    dimmed copy of it."""
    out = np.asarray(pixels, np.float32) * 0.45 + 255 * 0.55 * 0.3
    for j, mask in enumerate(parts.values()):
        col = np.array(hex_rgb(PART_COLORS[j % len(PART_COLORS)]), np.float32)
        out[mask] = out[mask] * (1 - opacity) + col * opacity
    return out.round().clip(0, 255).astype(np.uint8)


def part_highlight(pixels: np.ndarray, mask: np.ndarray, j: int) -> np.ndarray:
    """One ground-truth part (bool (H, W)) in the j-th PART_COLORS colour over a dimmed copy of the image."""
    pixels = np.asarray(pixels, np.uint8)
    col = hex_rgb(PART_COLORS[j % len(PART_COLORS)])
    rgb = pixels.astype(np.float32) * 0.35 + 255 * 0.65 * 0.25
    rgb[mask] = pixels[mask] * 0.35 + np.array(col, np.float32) * 0.65
    return rgb.round().clip(0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- traces
def image_uri(pixels: np.ndarray, size: Optional[int] = None, fmt: str = "JPEG") -> str:
    """A data URI (JPEG, WEBP or PNG) of an RGB uint8 image, optionally downscaled so its longer side is ``size``."""
    from PIL import Image
    im = Image.fromarray(np.ascontiguousarray(np.asarray(pixels, dtype=np.uint8)))
    if size is not None and max(im.size) > size:
        scale = size / max(im.size)
        im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    if fmt.upper() == "JPEG":
        im.save(buf, format="JPEG", quality=88)
        mime = "jpeg"
    elif fmt.upper() == "WEBP":
        im.save(buf, format="WEBP", quality=85, method=4)
        mime = "webp"
    else:
        im.save(buf, format="PNG", optimize=False)
        mime = "png"
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail_trace(pixels: np.ndarray, heat: Optional[np.ndarray] = None, opacity: float = 0.5,
                    size: Optional[int] = THUMB_SIZE, name: str = "thumbnail", dim: bool = False) -> go.Image:
    """A go.Image showing ``pixels`` (with ``heat`` blended over it), drawn at the full image's coordinates."""
    H, W = np.asarray(pixels).shape[:2]
    rgb = blend_heat(pixels, heat, opacity)
    dx = W / (min(W, size) if size and max(H, W) > size else W)
    dy = H / (min(H, size) if size and max(H, W) > size else H)
    return go.Image(source=image_uri(rgb, size), dx=dx, dy=dy, name=name, hoverinfo="skip",
                    opacity=0.25 if dim else 1.0)


def overlay_traces(pixels: np.ndarray, heat: np.ndarray, opacity: float = 0.5, showscale: bool = False,
                   name: str = "saliency", zmax: float = 1.0, hover_cell: int = 8):
    """An image with a heat map over it, as a compact picture: the blend is one WebP (some 10-20 kB, where the
    map as numbers took about a megabyte), with an invisible coarse heat map above it (one value per
    ``hover_cell`` pixels, averaged) that carries the colour bar and the values shown on hover."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float64))
    scaled = heat / zmax if zmax > 0 else heat
    picture = go.Image(source=image_uri(blend_heat(pixels, scaled, opacity), None, "WEBP"), name="image",
                       hoverinfo="skip")
    H, W = heat.shape
    c = max(1, min(int(hover_cell), H, W))
    coarse = heat[: H - H % c or H, : W - W % c or W]
    coarse = coarse.reshape(coarse.shape[0] // c, c, coarse.shape[1] // c, c).mean(axis=(1, 3)) if c > 1 else coarse
    values = go.Heatmap(z=np.round(coarse, 3), x0=(c - 1) / 2, dx=c, y0=(c - 1) / 2, dy=c, zmin=0, zmax=zmax,
                        colorscale=HEAT, opacity=0.0, showscale=showscale, name=name,
                        hovertemplate="x=%{x:.0f} y=%{y:.0f} value=%{z:.2f}<extra></extra>")
    return [picture, values]


def overlay(image, saliency, opacity: float = 0.5, colorscale: str = HEAT, outside: float = 0.35):
    """A PIL image: ``saliency`` (h, w) in [0, 1] as a heat map over ``image`` (PIL, path or uint8 array, as given).

    The map may come from `Explanation.saliency_on_original` (the photo's geometry, NaN where the model saw
    nothing: that region is dimmed to ``outside`` of its brightness) or be of any other size (it is stretched
    to the image)."""
    import torch
    from PIL import Image

    from ..images import load_images
    (pil,) = load_images(image)
    pixels = np.asarray(pil, dtype=np.uint8)
    heat = saliency.detach().cpu().numpy() if isinstance(saliency, torch.Tensor) else np.asarray(saliency)
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"overlay takes one map (h, w); got an array of shape {heat.shape}. Pick a pair, e.g. "
                         "exp.saliency_on_original(0, 0).")
    if heat.shape != pixels.shape[:2]:
        known = torch.from_numpy(np.nan_to_num(heat))[None, None]
        valid = torch.from_numpy(np.isfinite(heat).astype(np.float32))[None, None]
        size = pixels.shape[:2]
        heat = torch.nn.functional.interpolate(known, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
        seen = torch.nn.functional.interpolate(valid, size=size, mode="nearest")[0, 0].numpy() > 0.5
        heat = np.where(seen, heat, np.nan)
    seen = np.isfinite(heat)
    out = blend_heat(pixels, np.where(seen, heat, 0.0), opacity, colorscale)
    out = np.where(seen[..., None], out, (pixels.astype(np.float32) * outside).astype(np.uint8))
    return Image.fromarray(out)
