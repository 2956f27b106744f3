"""Attention rollout (Abnar & Zuidema, 2020): the attention of every block, averaged over heads, with the residual
as an identity, multiplied through the blocks (docs/method.md). Class-agnostic: the same map for every prompt."""
from __future__ import annotations

import torch

from ..explanation import Explanation
from .attention_base import AttentionMethod


class Rollout(AttentionMethod):
    """Attention rollout: R = prod_l (0.5 * mean_h A^l + 0.5 * I) (rows renormalised), read through the pooled row
    (class token, patch mean, or the attention pool's mean attention). It takes no gradient: the map does not
    depend on the prompt."""

    method = "rollout"
    uses_gradients = False

    def _explain(self, x, text, prompts) -> Explanation:
        with self._record() as rec, torch.no_grad(), self._autocast():
            scores = self._scores(self.model.embed(x), text)
            R = None
            for i in self._used():
                A = rec.attention(self.spec.attentions[i][0], 0).probs.float().mean(1)  # (B, N, N)
                eye = torch.eye(A.shape[-1], device=A.device)
                A = 0.5 * A + 0.5 * eye
                A = A / A.sum(-1, keepdim=True)
                R = A if R is None else A @ R
            row = self._pool_row(rec, R.shape[-1], batch=R.shape[0])  # (B, 1, N)
            return self._finish_map(row @ R, x, prompts, rec, scores)
