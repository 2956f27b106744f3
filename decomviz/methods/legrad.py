"""LeGrad (Bousselham et al., 2024): the sensitivity of the score read at each block to that block's attention, as
in docs/method.md and the authors' `legrad-torch` package."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..explanation import Explanation
from ..models import CLIPModel
from .attention_base import AttentionMethod, per_prompt_gradients


class LeGrad(AttentionMethod):
    """LeGrad: for each of the last ``blocks`` blocks l, the embedding is read off that block's tokens z^l (the
    tower's head on the mean token, or, for an attention-pool head, the pool on z^l), scored, and differentiated
    with respect to the attention that mixes z^l (the block's own, or the pool's); the positive gradient averaged
    over heads and queries is the block's map over the patch tokens, and the maps are summed over the blocks.

    Parameters
    ----------
    model : CLIPModel with a transformer image tower.
    blocks : how many of the last blocks enter the map (0: all); 2 as in `legrad-torch` (``layer_index=-2``).
    score, batch_size, autocast, contrast : as for `Method`.
    """

    method = "legrad"

    def __init__(self, model: CLIPModel, blocks: int = 2, score: str = "cosine", batch_size: int = 32,
                 autocast: Optional[str] = None, contrast: Sequence[str] = ()):
        super().__init__(model, blocks=blocks, score=score, batch_size=batch_size, autocast=autocast,
                         contrast=contrast)

    def _explain(self, x, text, prompts) -> Explanation:
        spec, last = self.spec, self.spec.blocks[-1]
        batch_first = getattr(self.model.tower, "batch_first", True)
        total = 0.0
        with self._record() as rec, torch.enable_grad(), self._autocast():
            scores = self._scores(self.model.embed(x.detach().requires_grad_()), text)  # a graph to differentiate
            for i in self._used():
                z = rec.block_output(i)  # (B, N, D)
                if spec.pool == "map":  # the pool itself mixes z^l: differentiate its attention
                    name = spec.pool_attention[0]
                    read = z
                else:  # the head on the mean token (every position holds it, so any pooling reads it)
                    name = spec.attentions[i][0]
                    read = z.mean(1, keepdim=True).expand_as(z)
                with rec.paused(*([name] if spec.pool == "map" else [])):
                    emb = self.model.forward_from(last, read if batch_first else read.transpose(0, 1))
                A = rec.attention(name, -1 if spec.pool == "map" else 0).probs
                s = self._scores(F.normalize(emb.float(), dim=-1), text)
                (G,) = per_prompt_gradients(s, [A])  # (B, T, H, Nq, Nk)
                G = G.clamp_min(0).mean(2)
                total = total + (G[..., 0, :] if spec.pool == "map" else G.mean(-2))  # (B, T, Nk)
        return self._finish_map(total, x, prompts, rec, scores)
