"""Gradient-weighted attention relevance (Chefer, Gur & Wolf, ICCV 2021), as in docs/method.md."""
from __future__ import annotations

import torch

from ..explanation import Explanation
from .attention_base import AttentionMethod, pad_keys, per_prompt_gradients


class Chefer(AttentionMethod):
    """Chefer et al.: R = I; for every block, R <- R + mean_h[(dS/dA^l * A^l)^+] R; the map is the pooled row of R
    (the class token's, the patch tokens' mean, or an attention pool's gradient-weighted attention times R) over
    the patch tokens. One forward and one batched backward for all prompts."""

    method = "chefer"

    def _explain(self, x, text, prompts) -> Explanation:
        with self._record() as rec, torch.enable_grad(), self._autocast():
            scores = self._scores(self.model.embed(x.detach().requires_grad_()), text)  # (B, T), differentiable
            probs = [rec.attention(self.spec.attentions[i][0], 0).probs for i in self._used()]
            pool = [rec.attention(self.spec.pool_attention[0], 0).probs] if self.spec.pool == "map" else []
            grads = per_prompt_gradients(scores, probs + pool)
        B, T = scores.shape
        N = probs[0].shape[-1]
        R = torch.eye(N, device=scores.device).expand(B, T, N, N)
        for A, G in zip(probs, grads):
            R = R + (G * A.detach().float()[:, None]).clamp_min(0).mean(2) @ R
        weights = None
        if pool:
            weights = (grads[-1] * pool[0].detach().float()[:, None]).clamp_min(0).mean(2)[..., 0, :]  # (B, T, Nk)
            weights = pad_keys(weights, N)
        row = self._pool_row(rec, N, weights, batch=B)  # (B, T or 1, N)
        return self._finish_map((row[..., None, :] @ R)[..., 0, :], x, prompts, rec, scores.detach())
