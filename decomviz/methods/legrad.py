"""LeGrad (Bousselham et al., 2024): the sensitivity of the score read at each block to that block's attention, as
in docs/method.md and the authors' `legrad-torch` package."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..explanation import Explanation
from ..knobs import Knob
from ..models import CLIPModel
from ..ops import minmax
from .attention_base import AttentionMethod, per_prompt_gradients

#: legrad-torch's "empty" prompt and threshold for its correction of attention-pool towers
EMPTY_PROMPT, EMPTY_THRESHOLD = "a photo of a", 0.8


class LeGrad(AttentionMethod):
    """LeGrad: for each of the last ``blocks`` blocks l, the embedding is read off that block's tokens z^l (the
    tower's head on the mean token, or, for an attention-pool head, the pool on z^l), scored, and differentiated
    with respect to the attention that mixes z^l (the block's own, or the pool's); the positive gradient averaged
    over heads and queries is the block's map over the patch tokens, and the maps are summed over the blocks.

    Parameters
    ----------
    model : CLIPModel with a transformer image tower.
    blocks : how many of the last blocks enter the map (0: all); 2 as in `legrad-torch` (``layer_index=-2``).
    empty_correction : for an attention-pool tower (SigLIP), legrad-torch's correction: cells where the map of the
        prompt "a photo of a" exceeds 0.8 of its range are set to 0 (no effect on other towers).
    score, batch_size, autocast, contrast : as for `Method`.
    """

    method = "legrad"
    _knobs = (Knob("empty_correction", "bool", "attention-pool towers (SigLIP): zero the cells where the map of "
                   "'a photo of a' exceeds 0.8 of its range, as legrad-torch does"),)

    def __init__(self, model: CLIPModel, blocks: int = 2, empty_correction: bool = False, score: str = "cosine",
                 batch_size: Optional[int] = None, autocast: Optional[str] = None, contrast: Sequence[str] = ()):
        super().__init__(model, blocks=blocks, score=score, batch_size=batch_size, autocast=autocast,
                         contrast=contrast)
        self._set_knobs(empty_correction=empty_correction)

    def _explain(self, x, text, prompts) -> Explanation:
        spec, last = self.spec, self.spec.blocks[-1]
        batch_first = getattr(self.model.tower, "batch_first", True)
        correct = self.empty_correction and spec.pool == "map"
        empty = self.model.encode_text([EMPTY_PROMPT]) if correct else None
        total, total_empty = 0.0, 0.0
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
                emb = F.normalize(emb.float(), dim=-1)
                (G,) = per_prompt_gradients(self._scores(emb, text), [A])  # (B, T, H, Nq, Nk)
                G = G.clamp_min(0).mean(2)
                total = total + (G[..., 0, :] if spec.pool == "map" else G.mean(-2))  # (B, T, Nk)
                if correct:  # the map of the empty prompt, on the cosine as legrad-torch
                    (Ge,) = per_prompt_gradients(emb @ empty.T, [A])
                    total_empty = total_empty + Ge.clamp_min(0).mean(2)[..., 0, :]  # (B, 1, Nk)
        if correct:  # over the patch cells only
            n = rec.patch_grid[0] * rec.patch_grid[1]
            total = total[..., -n:].masked_fill(minmax(total_empty[..., -n:]) > EMPTY_THRESHOLD, 0.0)
        return self._finish_map(total, x, prompts, rec, scores)
