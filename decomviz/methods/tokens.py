"""Which words of a prompt drive the match: integrated gradients over the prompt's token embeddings.

Each word token i gets a share

    share_i = (e_i - b_i) . mean_k  d s(x, b + alpha_k (e - b)) / d e_i,    alpha_k = (k + 1/2) / steps,

of the score s(x, t) (cosine or logit) of image x against the prompt, where e holds the prompt's token embeddings
and b the same with every word token's embedding set to zero (start, end and padding tokens, and the position
embeddings, stay as they are). Completeness: the shares sum to s(x, prompt) - s(x, baseline) up to the error of
the midpoint rule (checked in tests/test_token_attribution.py). The baseline is not the empty prompt, whose end
token sits elsewhere; its score is given beside (`empty_score`) for reference. See docs/method.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..models import CLIPModel

SCORES = ("cosine", "logit")


@dataclass
class TokenAttribution:
    """Each prompt token's share of the score, for every (image, prompt) pair.

    prompts : the T prompts.
    tokens : per prompt, the text of its word tokens (sub-words as the tokenizer splits them), in order.
    shares : Tensor of shape (B, T, L), token i's share of s(x, t) - s(x, baseline); NaN past a prompt's tokens.
    score, baseline_score, empty_score : Tensors of shape (B, T): s(x, prompt), s(x, baseline) (the word
        embeddings zeroed) and s(x, "") (the empty prompt, for reference).
    params : the protocol record (score, steps, baseline).
    """

    prompts: List[str]
    tokens: List[List[str]]
    shares: torch.Tensor
    score: torch.Tensor
    baseline_score: torch.Tensor
    empty_score: torch.Tensor
    params: Dict[str, Any] = field(default_factory=dict)

    def pairs(self, image: int = 0, prompt: int = 0) -> List[tuple]:
        """[(token, share), ...] of one (image, prompt) pair."""
        return [(tok, float(self.shares[image, prompt, i])) for i, tok in enumerate(self.tokens[prompt])]

    def completeness_gap(self) -> torch.Tensor:
        """(B, T): |sum of shares - (score - baseline_score)| / |score - baseline_score|."""
        total = torch.nan_to_num(self.shares).sum(-1)
        change = self.score - self.baseline_score
        return (total - change).abs() / change.abs().clamp_min(1e-12)


def _token_embedding(model: CLIPModel) -> torch.nn.Embedding:
    module = model.tower.token_embedding()
    if module is None:
        raise ValueError(f"token_attribution needs an open_clip or Hugging Face text tower with a token embedding; "
                         f"{model.name}'s text tower ({type(model.model).__name__}) has none decomviz knows.")
    return module


def _word_positions(model: CLIPModel, ids: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """(L,) bool: the positions of word tokens (not start, end, padding or other special tokens)."""
    tok = getattr(model.tokenizer, "tokenizer", model.tokenizer)
    valid = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
    special = set(getattr(tok, "all_special_ids", []) or [])
    for name in ("sot_token_id", "eot_token_id", "pad_token_id", "bos_token_id", "eos_token_id"):
        value = getattr(tok, name, None)
        if isinstance(value, int):
            special.add(value)
    if hasattr(tok, "sot_token_id"):  # open_clip: words lie between the start token and the end token
        end = int((ids == tok.eot_token_id).nonzero()[0]) if bool((ids == tok.eot_token_id).any()) else len(ids)
        valid &= torch.arange(len(ids)) < end
    elif mask is None:
        valid &= ids != 0
    return valid & ~torch.isin(ids, torch.tensor(sorted(special), dtype=ids.dtype))


def _token_text(model: CLIPModel, token_id: int) -> str:
    tok = getattr(model.tokenizer, "tokenizer", model.tokenizer)
    if hasattr(tok, "convert_ids_to_tokens"):
        text = str(tok.convert_ids_to_tokens(int(token_id)))
    elif hasattr(tok, "decode"):
        text = tok.decode([int(token_id)])
    else:
        return f"#{int(token_id)}"
    return text.replace("</w>", "").replace("Ġ", "").replace("▁", "").strip() or text


#: (prompt, path point) sequences per text forward and backward, at least one prompt's path: it bounds the memory
#: of one pass (a large text tower holds every layer's activations of each sequence for the backward)
PATH_BATCH = 64


def token_attribution(model: CLIPModel, images: Any, prompts: Union[str, Sequence[str]], steps: int = 50,
                      score: str = "cosine") -> TokenAttribution:
    """Each word's share of the score of every (image, prompt) pair, by integrated gradients over the token
    embeddings (see the module's docstring). ``steps``: points of the midpoint rule along the path. The prompts'
    paths and their two ends go through the text tower together, ``PATH_BATCH`` sequences a pass."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}; got {score!r} (a softmax over prompts has no "
                         "per-prompt path to integrate).")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    prompts = model.check_prompts(prompts)
    embedding = _token_embedding(model)
    with model.lock:
        image = model.encode_image(images)  # (B, D), normalised
        B, T = len(image), len(prompts)
        scale = model.logit_scale if score == "logit" else torch.ones((), device=image.device)
        tokens = {k: v.to(model.device) for k, v in model._tokenize(prompts).items()}
        empty = _path_scores(model, embedding, model._tokenize([" "]), None, torch.zeros(1), image, scale)[0][:, 0, 0]
        mask = tokens.get("attention_mask")
        keep = torch.stack([_word_positions(model, tokens["input_ids"][t].cpu(), None if mask is None else mask[t].cpu())
                            for t in range(T)]).to(model.device)  # (T, L)
        alphas = torch.cat([(torch.arange(steps, dtype=torch.float32) + 0.5) / steps, torch.tensor([0.0, 1.0])])
        shares = torch.full((B, T, tokens["input_ids"].shape[1]), float("nan"))
        base, full, words = torch.zeros(B, T), torch.zeros(B, T), []
        per = max(1, PATH_BATCH // len(alphas))
        for start in range(0, T, per):
            chunk = slice(start, min(start + per, T))
            scores, grads, delta = _path_scores(model, embedding, {k: v[chunk] for k, v in tokens.items()},
                                                keep[chunk], alphas, image, scale, grad=True)
            share = (delta[None] * grads[:, :, :steps].mean(2)).sum(-1).cpu()  # (B, t, L)
            base[:, chunk], full[:, chunk] = scores[:, :, steps].cpu(), scores[:, :, steps + 1].cpu()
            for j, t in enumerate(range(chunk.start, chunk.stop)):
                idx = keep[t].nonzero()[:, 0].cpu()
                shares[:, t, :len(idx)] = share[:, j, idx]
                words.append([_token_text(model, i) for i in tokens["input_ids"][t, idx].tolist()])
    return TokenAttribution(list(prompts), words, shares, full, base, empty.cpu()[:, None].expand(B, T).clone(),
                            {"method": "integrated-gradients", "score": score, "steps": steps,
                             "baseline": "word token embeddings set to zero", "model": model.name})


def _path_scores(model, embedding, tokens, keep, alphas, image, scale, grad: bool = False):
    """The t prompts of ``tokens`` with their word embeddings (keep: (t, L) word positions; None: no change)
    scaled by each alpha: their scores (B, t, n); with ``grad``, also the gradients (B, t, n, L, D) of each score
    with respect to its embeddings and the differences e - b (t, L, D)."""
    t, n = tokens["input_ids"].shape[0], len(alphas)
    batch = {k: v.to(model.device).repeat_interleave(n, 0) for k, v in tokens.items()}  # (t * n, L)
    alphas = alphas.to(model.device)
    state = {}

    def hook(module, inputs, output):
        if keep is None:
            return output
        e = output.detach().float().unflatten(0, (t, n))  # (t, n, L, D)
        b = e * (~keep)[:, None, :, None]
        path = (b + alphas[None, :, None, None] * (e - b)).flatten(0, 1).requires_grad_(grad)
        state["path"], state["delta"] = path, (e - b)[:, 0]
        return path.to(output.dtype)

    handle = embedding.register_forward_hook(hook)
    try:
        with torch.set_grad_enabled(grad):
            text = F.normalize(model.tower.encode_text(batch).float(), dim=-1)  # (t * n, D)
            scores = (text @ image.T) * scale  # (t * n, B)
            out = scores.detach().T.unflatten(1, (t, n))  # (B, t, n)
            if not grad:
                return (out,)
            B = image.shape[0]
            if B == 1:
                (g,) = torch.autograd.grad(scores.sum(), [state["path"]])
                g = g[None]
            else:
                sel = torch.eye(B, device=scores.device)[:, None, :].expand(B, t * n, B)
                (g,) = torch.autograd.grad(scores, [state["path"]], grad_outputs=sel, is_grads_batched=True)
            return out, g.unflatten(1, (t, n)), state["delta"]
    finally:
        handle.remove()


def as_numpy_shares(att: TokenAttribution, image: int, prompt: int) -> np.ndarray:
    """The shares of one pair's tokens as a float array (for figures and reports)."""
    return att.shares[image, prompt, :len(att.tokens[prompt])].numpy().astype(float)
