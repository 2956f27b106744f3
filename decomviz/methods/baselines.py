"""The CAM family on the same taps and with the same call signature as DecomCAM.

Each method is a small subclass that turns activations A (B, C, h, w) and gradients G (B, T, C, h, w)
into a low-resolution map (B, T, h, w); `CAM._finish` upsamples and normalises it.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..explanation import Explanation
from ..knobs import Knob
from ..ops import minmax, upsample
from .base import CAM


class GradCAM(CAM):
    """Grad-CAM: ReLU(sum_c alpha_c A_c), alpha_c the spatial mean of the gradient."""

    method = "gradcam"

    def _explain(self, x, text, prompts) -> Explanation:
        t = self._tapped(x, text)
        return self._finish(self._map(t.activations, t.gradients), x, prompts, t)

    def _map(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        alpha = G.mean(dim=(-2, -1), keepdim=True)
        return (alpha * A[:, None]).sum(dim=2).clamp_min(0)


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++ (Chattopadhay et al. 2018), with the usual exponential-score closed form for alpha.

    The denominator carries the same small constant (1e-6) as the reference `grad-cam` package; with the small
    gradients of cosine scores it matters, and keeping it makes the two implementations agree.
    """

    method = "gradcam++"
    eps = 1e-6

    def _map(self, A, G):
        g2, g3 = G ** 2, G ** 3
        sum_a = A.sum(dim=(-2, -1), keepdim=True)[:, None]
        aij = torch.where(G != 0, g2 / (2 * g2 + sum_a * g3 + self.eps), torch.zeros_like(G))
        weights = (G.clamp_min(0) * aij).sum(dim=(-2, -1), keepdim=True)
        return (weights * A[:, None]).sum(dim=2).clamp_min(0)


class LayerCAM(GradCAM):
    """LayerCAM (Jiang et al. 2021): ReLU(sum_c ReLU(G_c) * A_c), element-wise."""

    method = "layercam"

    def _map(self, A, G):
        return (G.clamp_min(0) * A[:, None]).sum(dim=2).clamp_min(0)


class EigenCAM(CAM):
    """EigenCAM: projection of the activations on their first principal component (class-agnostic).

    The component is oriented to correlate positively with the channel-summed activation map.
    """

    method = "eigencam"
    uses_gradients = False

    def _explain(self, x, text, prompts) -> Explanation:
        t = self._tapped(x, text, gradients=False)
        A = t.activations
        B, C, h, w = A.shape
        X = A.reshape(B, C, h * w).transpose(1, 2)  # (B, n, C)
        Xc = X - X.mean(dim=1, keepdim=True)
        _, _, Vh = torch.linalg.svd(Xc, full_matrices=False)
        proj = Xc @ Vh[:, 0, :, None]  # (B, n, 1)
        ref = X.sum(dim=-1, keepdim=True)
        corr = ((proj - proj.mean(1, keepdim=True)) * (ref - ref.mean(1, keepdim=True))).sum(dim=1, keepdim=True)
        proj = torch.where(corr < 0, -proj, proj)
        lowres = proj.reshape(B, 1, h, w).expand(B, len(prompts), h, w).clamp_min(0)
        return self._finish(lowres, x, prompts, t)


class ScoreCAM(CAM):
    """Score-CAM (Wang et al. 2020): every channel, min-max normalised and upsampled, masks the input
    (masked pixels go to the normalised zero, i.e. the mean colour); the channel weights are the softmax over
    channels of the scores of the masked inputs. Masked inputs depend only on the image, so each is forwarded
    once and scored against every prompt.
    """

    method = "scorecam"
    uses_gradients = False

    def _explain(self, x, text, prompts) -> Explanation:
        t = self._tapped(x, text, gradients=False)
        B, C = t.activations.shape[:2]
        keep = torch.arange(C, device=x.device).expand(B, len(prompts), C)
        return self._score_channels(x, text, prompts, t, keep)

    def _score_channels(self, x, text, prompts, t, channels: torch.Tensor) -> Explanation:
        """Weights from masked-input scores for the channels (B, T, k) of each pair; channels are forwarded
        once per image even when several prompts share them."""
        A = t.activations
        B, C, h, w = A.shape
        T = len(prompts)
        used = torch.zeros(B, C, dtype=torch.bool, device=x.device)
        used.scatter_(1, channels.reshape(B, -1), True)
        image_of, channel_of = used.nonzero(as_tuple=True)  # the distinct (image, channel) masks
        masks = minmax(upsample(A, x.shape[-2:]))  # (B, C, H, W)

        def batch(i, j):
            b, c = image_of[i:j], channel_of[i:j]
            return x[b] * masks[b, c][:, None]

        scores = self._scores(self._embed_batched(batch, len(image_of)), text)  # (N, T)
        table = torch.zeros(B, C, T, device=x.device, dtype=scores.dtype)
        table[image_of, channel_of] = scores
        pair_scores = table.permute(0, 2, 1).gather(2, channels)  # (B, T, k)
        weights = pair_scores.softmax(dim=-1)
        A_sel = A.reshape(B, 1, C, h * w).expand(B, T, C, h * w).gather(2, channels[..., None].expand(-1, -1, -1, h * w))
        lowres = (weights[..., None] * A_sel).sum(dim=2).reshape(B, T, h, w).clamp_min(0)
        return self._finish(lowres, x, prompts, t, channels=channels)


class GScoreCAM(ScoreCAM):
    """gScoreCAM (Chen et al. 2022): Score-CAM over the top-k channels by Grad-CAM weight (k = 300)."""

    method = "gscorecam"
    uses_gradients = True
    _knobs = (Knob("top_channels", "int", "channels kept by largest Grad-CAM weight alpha_c (clipped to the layer's "
                   "channel count)", low=1, widget=(1, 2048, 1)),)

    def __init__(self, model, top_channels: int = 300, layer: Optional[str] = None, score: str = "cosine",
                 batch_size: Optional[int] = None, autocast: Optional[str] = None, contrast: Sequence[str] = ()):
        super().__init__(model, layer=layer, score=score, batch_size=batch_size, autocast=autocast,
                         contrast=contrast)
        self._set_knobs(top_channels=top_channels)

    def _explain(self, x, text, prompts) -> Explanation:
        t = self._tapped(x, text)
        alpha = t.gradients.mean(dim=(-2, -1))  # (B, T, C)
        k = min(self.top_channels, alpha.shape[-1])
        channels = alpha.topk(k, dim=-1).indices
        return self._score_channels(x, text, prompts, t, channels)

