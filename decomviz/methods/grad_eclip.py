"""Grad-ECLIP (Zhao et al., ICML 2024): channel weights from the gradient at the last attention's output, spatial
weights from its loosened (cosine, min-max) query-key attention, on the values of the patch tokens; as in
docs/method.md."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..explanation import Explanation
from ..models import CLIPModel
from ..models.attention import _merge
from .attention_base import AttentionMethod, per_prompt_gradients


def loosened_attention(q: torch.Tensor, k: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Grad-ECLIP's spatial weights: cos(q_j, k_i) min-max normalised over the keys i. q (B, Nq, C), k (B, Nk, C)
    -> (B, Nq, Nk)."""
    cos = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2)
    lo, hi = cos.amin(-1, keepdim=True), cos.amax(-1, keepdim=True)
    return (cos - lo) / (hi - lo).clamp_min(eps)


class GradECLIP(AttentionMethod):
    """Grad-ECLIP: the last attention that mixes tokens into the embedding (the last block's, or an attention
    pool's) gives, for each patch token i,

        H_i = ReLU( sum_j lambda_ji * sum_c (dS/do_j)_c (W_O v_i)_c )

    with o_j the attention's output at query j (the class token's for a class-token tower; every query's for a
    patch-mean tower; the pool's query), v_i token i's value, W_O the output projection and lambda_ji the
    loosened attention (`loosened_attention`). The ``blocks`` knob does not apply (one attention enters)."""

    method = "grad-eclip"

    @classmethod
    def cannot_explain(cls, model: CLIPModel) -> Optional[str]:
        reason = super().cannot_explain(model)
        if reason is not None:
            return reason
        spec = model.tower.attention_spec()
        kind = spec.pool_attention[1] if spec.pool == "map" else spec.attentions[-1][1]
        if kind == "probs":
            return (f"grad-eclip needs the queries, keys and values of the last attention of {model.name}; decomviz "
                    f"reads only the probabilities of its rotary attention ({model.kind}: EVA, PE-Core).")
        return None

    def _explain(self, x, text, prompts) -> Explanation:
        spec = self.spec
        name = spec.pool_attention[0] if spec.pool == "map" else spec.attentions[-1][0]
        with self._record() as rec, torch.enable_grad(), self._autocast():
            scores = self._scores(self.model.embed(x.detach().requires_grad_()), text)  # a graph to differentiate
            call = rec.attention(name, 0)
            (g,) = per_prompt_gradients(scores, [call.out])  # (B, T, Nq, D)
        h, w = rec.patch_grid
        n = h * w
        q, k, v = (_merge(t.detach().float()) for t in (call.q, call.k, call.v))
        k, v = k[:, -n:], v[:, -n:]
        if call.proj is None and v.shape[-1] != g.shape[-1]:
            raise NotImplementedError(f"{name}: its output is not a linear map of its values; grad-eclip cannot "
                                      "weigh them.")
        vo = v if call.proj is None else v @ call.proj.detach().float().T  # (B, n, D): W_O v_i
        lam = loosened_attention(q, k)  # (B, Nq, n)
        contrib = torch.einsum("btqd,bkd->btqk", g, vo)  # (B, T, Nq, n)
        patches = (lam[:, None] * contrib).sum(-2).clamp_min(0)
        return self._finish_map(patches, x, prompts, rec, scores)
