"""Occlusion (Zeiler & Fergus, 2014): the model-agnostic reference. No gradients, no layer: a square window
slides over the image, and each pixel gets the mean drop of the score when the windows covering it are hidden.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..explanation import Explanation
from ..knobs import Knob
from ..models import CLIPModel
from ..ops import blurred_reference, embed_masked, minmax, scaled_pixels, to_host
from .base import Method
from .decomcam import DecomCAM

FILLS = ("blur", "gray")


def window_starts(size: int, window: int, stride: int) -> List[int]:
    """Start offsets of windows of ``window`` pixels along an axis of ``size`` pixels, ``stride`` apart from 0,
    with the last one flush with the border: together they cover every pixel when ``stride <= window``.
    A window at least as long as the axis gives the single start 0 (the window is clipped to the axis)."""
    if window >= size:
        return [0]
    return list(range(0, size - window, stride)) + [size - window]


def window_indicators(size: int, window: int, stride: int, device=None) -> torch.Tensor:
    """(n, size) float: row i is 1 on the pixels the i-th window of `window_starts` covers."""
    starts = torch.tensor(window_starts(size, window, stride), device=device)
    pixels = torch.arange(size, device=device)
    return ((pixels >= starts[:, None]) & (pixels < starts[:, None] + min(window, size))).float()


class Occlusion(Method):
    """Occlusion: the score lost when a square window of the image is hidden, averaged over the windows.

    For each window position (a square of ``window`` pixels at 224 px, scaled with the input width as every
    pixel knob is; placed every ``stride`` pixels from the top-left corner, the last window in each direction
    flush with the border, so that every pixel is covered), the pixels under the window are replaced by the
    fill and the image's score drops by d_w(t) = s(x, t) - s(x_w, t). The map is

        S(p, t) = minmax(ReLU(sum_{w covers p} d_w(t) / #{w covers p}))

    i.e. the mean drop over the windows that cover the pixel, ReLU'd, min-max normalised per (image, prompt).

    It taps no layer and takes no gradient, so it derives from `Method` (not `CAM`) and has no ``layer`` knob.

    Parameters
    ----------
    model : CLIPModel from `dv.load_model`.
    window : side of the square window, in pixels at 224 px (scaled with the input width, clipped to the image).
    stride : step between window positions, in pixels at 224 px; at most ``window`` so that no pixel is missed.
    fill : "blur" (the blurred reference of `ops.blurred_reference`, as DecomCAM's) or "gray" (the mean colour,
        i.e. zero in normalised space).
    blur_sigma : Gaussian sigma of the blurred reference, in pixels at 224 px (used by fill="blur").
    score : "cosine", "logit" or "softmax" (over the prompts of the call and ``contrast``).
    contrast : prompts the softmax score also competes with, without being explained (as for `CAM`).
    batch_size : occluded images per forward pass (None: 8 on a CPU, 32 on a GPU).
    autocast : None (fp32), "bf16" or "fp16" for the image tower.

    Returns an `Explanation` with ``saliency`` (B, T, H, W), ``base_score`` (B, T) = s(x, t), the flag
    ``empty_map`` (no window lowers the score) and ``saliency_lowres`` (B, T, ny, nx): the raw drop d_w(t) of
    each window, laid out on the grid of window positions (row i, column j: the window at
    ``window_starts(H, ...)[i]``, ``window_starts(W, ...)[j]``), before averaging, ReLU and normalisation.
    ``params`` records ``window_px``, ``stride_px``, ``grid`` (ny, nx), ``windows`` and ``forwards_per_image``
    (the windows plus the image itself): each occluded image goes through the tower once, for all prompts.
    """

    method = "occlusion"
    uses_gradients = False
    _knobs = (
        Knob("window", "int", "side of the occluding square, in pixels at 224 px (scaled with the input)",
             low=1, high=224, widget=(4, 224, 1)),
        Knob("stride", "int", "step between window positions, in pixels at 224 px; at most the window",
             low=1, high=224, widget=(1, 112, 1)),
        Knob("fill", "choice", "what hides the window: the blurred image (blur) or the mean colour (gray)",
             choices=FILLS),
        DecomCAM.knobs()["blur_sigma"],
    )

    def __init__(self, model: CLIPModel, window: int = 32, stride: int = 16, fill: str = "blur",
                 blur_sigma: float = 10.0, score: str = "cosine", batch_size: Optional[int] = None,
                 autocast: Optional[str] = None, contrast: Sequence[str] = ()):
        super().__init__(model, score=score, batch_size=batch_size, autocast=autocast, contrast=contrast)
        self._set_knobs(window=window, stride=stride, fill=fill, blur_sigma=blur_sigma)
        if self.stride > self.window:
            raise ValueError(f"stride ({self.stride}) must be at most window ({self.window}): with a larger step "
                             "some pixels lie under no window and would get no value.")

    # ----------------------------------------------------------------- the method
    def windows(self, size: Tuple[int, int]) -> Tuple[int, int, torch.Tensor, torch.Tensor]:
        """Window side and stride in pixels at an input of ``size`` (H, W), and the row and column indicators
        (ny, H) and (nx, W) of the window positions (see `window_indicators`)."""
        H, W = size
        side = max(1, round(scaled_pixels(self.window, W)))
        step = max(1, min(side, round(scaled_pixels(self.stride, W))))
        device = self.model.device
        return side, step, window_indicators(H, side, step, device), window_indicators(W, side, step, device)

    def _explain(self, x: torch.Tensor, text: torch.Tensor, prompts: List[str]) -> Explanation:
        B, _, H, W = x.shape
        T = len(prompts)
        side, step, rows, cols = self.windows((H, W))
        ny, nx = len(rows), len(cols)
        P = ny * nx
        base = self._scores(self._embed_batched(lambda i, j: x[i:j], B), text)  # (B, T)
        ref = blurred_reference(x, self.blur_sigma) if self.fill == "blur" else torch.zeros_like(x)

        image_of = torch.arange(B, device=x.device).repeat_interleave(P)
        window_of = torch.arange(P, device=x.device).repeat(B)

        def masks(i: int, j: int) -> torch.Tensor:  # 1 keeps the image, 0 under the window
            w = window_of[i:j]
            inside = rows[w // nx][:, :, None] * cols[w % nx][:, None, :]
            return (1 - inside)[:, None]

        emb = embed_masked(self._embed, x, ref, masks, image_of, self.batch_size)  # (B * P, D)
        occluded = self._scores(emb, text).reshape(B, ny, nx, T)  # every prompt from one forward
        drop = base[:, None, None, :] - occluded  # (B, ny, nx, T)
        lowres = drop.permute(0, 3, 1, 2).contiguous()  # (B, T, ny, nx)
        total = torch.einsum("btij,ih,jw->bthw", lowres, rows, cols)
        count = rows.sum(0)[:, None] * cols.sum(0)[None, :]  # windows covering each pixel, >= 1
        mean = (total / count).clamp_min(0)
        flags: Dict[str, torch.Tensor] = {"empty_map": mean.amax(dim=(-2, -1)) <= 0}
        params = {"window_px": side, "stride_px": step, "grid": [ny, nx], "windows": P,
                  "forwards_per_image": P + 1}
        arrays, flags = to_host(dict(saliency=minmax(mean), saliency_lowres=lowres, base_score=base), flags)
        return Explanation(method=self.method, prompts=prompts, images=None, flags=flags, params=params, **arrays)
