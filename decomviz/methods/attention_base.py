"""What the methods made for transformer towers share (LeGrad, Grad-ECLIP, Chefer et al., attention rollout): the
tower's attention, recorded in the graph (`models.attention`), per-prompt gradients with respect to it in one
batched backward, the row through which the embedding reads the last tokens, and the refusal of towers without
attention. The equations are in docs/method.md.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch

from ..explanation import Explanation
from ..knobs import Knob
from ..models import CLIPModel
from ..models.attention import AttentionRecord, NoAttentionError, record_attention
from .base import CAM, Method, Tapped


def per_prompt_gradients(scores: torch.Tensor, inputs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """d scores[b, t] / d inputs[i][b], for every prompt t, in one batched backward: each input (B, ...) gives a
    (B, T, ...) tensor (zeros where the score does not depend on it). The graph is kept for further calls."""
    B, T = scores.shape
    sel = torch.eye(T, dtype=scores.dtype, device=scores.device)[:, None, :].expand(T, B, T)
    if T == 1:
        grads = torch.autograd.grad(scores, list(inputs), grad_outputs=sel[0], retain_graph=True, allow_unused=True)
        grads = [None if g is None else g[None] for g in grads]
    else:
        grads = torch.autograd.grad(scores, list(inputs), grad_outputs=sel, retain_graph=True, allow_unused=True,
                                    is_grads_batched=True)
    return [(torch.zeros((T, *t.shape), device=t.device, dtype=t.dtype) if g is None else g).transpose(0, 1).float()
            for g, t in zip(grads, inputs)]


def pad_keys(row: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """A row over the last keys of the sequence (an attention pool that skips prefix tokens) on all n tokens."""
    missing = n_tokens - row.shape[-1]
    return row if missing == 0 else torch.cat([row.new_zeros((*row.shape[:-1], missing)), row], dim=-1)


class AttentionMethod(Method):
    """Base of the methods that read a transformer tower's attention maps.

    The tower's adapter says where the attention lies (`Tower.attention_spec`); a tower without (ResNet, ConvNeXt,
    Swin, FastViT) is refused at construction with the methods that do apply.

    Parameters
    ----------
    model : CLIPModel from `dv.load_model` with a transformer image tower.
    blocks : how many of the last transformer blocks enter the map (0: all of them).
    score, batch_size, autocast, contrast : as for `Method`.
    """

    method = "attention"
    uses_gradients = True
    #: the registered methods that apply to a model (set by the registry, which imports this module)
    methods_for: Optional[Callable[[CLIPModel], List[str]]] = None
    _knobs = (Knob("blocks", "int", "how many of the last transformer blocks enter the map (0: all)", low=0,
                   widget=(0, 48, 1)),)

    def __init__(self, model: CLIPModel, blocks: int = 0, score: str = "cosine", batch_size: Optional[int] = None,
                 autocast: Optional[str] = None, contrast: Sequence[str] = ()):
        super().__init__(model, score=score, batch_size=batch_size, autocast=autocast, contrast=contrast)
        self._set_knobs(blocks=blocks)
        reason = self.refusal(model)
        if reason is not None:
            raise NoAttentionError(reason)
        self.spec = model.tower.attention_spec()

    # ------------------------------------------------------------------ which models
    @classmethod
    def cannot_explain(cls, model: CLIPModel) -> Optional[str]:
        """Why this method cannot explain ``model``, in one sentence (None when it can)."""
        if model.tower.attention_spec() is not None:
            return None
        return (f"{cls.method} reads the attention maps of a transformer image tower; {model.name} has a {model.kind} "
                f"tower ({type(model.visual).__name__}) without attention maps decomviz can read.")

    @classmethod
    def refusal(cls, model: CLIPModel) -> Optional[str]:
        """`cannot_explain`, with the registered methods that do apply to ``model``."""
        reason = cls.cannot_explain(model)
        if reason is None or cls.methods_for is None:
            return reason
        return f"{reason} Methods that apply: {', '.join(cls.methods_for(model))}."

    # ------------------------------------------------------------------ shared steps
    def _used(self) -> range:
        """Indices of the blocks that enter the map."""
        n = len(self.spec.blocks)
        return range(0 if self.blocks == 0 else max(0, n - self.blocks), n)

    def _record(self):
        return record_attention(self.model, self.spec)

    def _pool_row(self, rec: AttentionRecord, n_tokens: int, pool_weights: Optional[torch.Tensor] = None,
                  batch: int = 1) -> torch.Tensor:
        """The row (B, T or 1, N) through which the embedding reads the last block's tokens: the class token, the
        mean of the patch tokens, or an attention pool's first query (``pool_weights``: (B, T, Nk) or (B, 1, Nk),
        e.g. its gradient-weighted attention; default its attention averaged over heads)."""
        device = rec.block_output(len(self.spec.blocks) - 1).device
        if self.spec.pool == "cls":
            row = torch.zeros(batch, 1, n_tokens, device=device)
            row[..., 0] = 1
            return row
        if self.spec.pool == "avg":
            prefix = rec.prefix_tokens(n_tokens)
            row = torch.zeros(batch, 1, n_tokens, device=device)
            row[..., prefix:] = 1.0 / (n_tokens - prefix)
            return row
        if pool_weights is None:
            pool_weights = rec.attention(self.spec.pool_attention[0], 0).probs.detach().float().mean(1)[:, None, 0]
        return pad_keys(pool_weights, n_tokens)

    def _finish_map(self, patches: torch.Tensor, x: torch.Tensor, prompts: List[str], rec: AttentionRecord,
                    scores: torch.Tensor) -> Explanation:
        """A map over the patch tokens (B, T, h*w) (or (B, 1, h*w), the same for every prompt) -> Explanation."""
        h, w = rec.patch_grid
        B = patches.shape[0]
        lowres = patches[..., -h * w:].reshape(B, -1, h, w).expand(B, len(prompts), h, w).float()
        exp = CAM._finish(self, lowres.detach(), x, prompts, Tapped(None, None, scores.detach()))
        exp.params["grid"] = [h, w]
        exp.params["attention_pool"] = self.spec.pool
        return exp
