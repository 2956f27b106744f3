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


def token_attribution(model: CLIPModel, images: Any, prompts: Union[str, Sequence[str]], steps: int = 50,
                      score: str = "cosine") -> TokenAttribution:
    """Each word's share of the score of every (image, prompt) pair, by integrated gradients over the token
    embeddings (see the module's docstring). ``steps``: points of the midpoint rule along the path."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}; got {score!r} (a softmax over prompts has no "
                         "per-prompt path to integrate).")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    prompts = model.check_prompts(prompts)
    embedding = _token_embedding(model)
    with model.lock:
        image = model.encode_image(images)  # (B, D), normalised
        B = len(image)
        scale = model.logit_scale if score == "logit" else torch.ones((), device=image.device)
        tokens = {k: v.to(model.device) for k, v in model._tokenize(prompts).items()}
        empty = _path_scores(model, embedding, {k: v for k, v in model._tokenize([" "]).items()}, None,
                             torch.zeros(1), image, scale, grad=False)[0]  # (B,): a prompt with no words
        L = tokens["input_ids"].shape[1]
        shares = torch.full((B, len(prompts), L), float("nan"))
        words, base, full = [], torch.zeros(B, len(prompts)), torch.zeros(B, len(prompts))
        for t in range(len(prompts)):
            one = {k: v[t:t + 1] for k, v in tokens.items()}
            mask = one["attention_mask"][0].cpu() if "attention_mask" in one else None
            keep = _word_positions(model, one["input_ids"][0].cpu(), mask).to(model.device)
            ends = _path_scores(model, embedding, one, keep, torch.tensor([0.0, 1.0]), image, scale, grad=False)
            base[:, t], full[:, t] = ends[0].cpu(), ends[1].cpu()
            alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
            grads, delta = _path_scores(model, embedding, one, keep, alphas, image, scale, grad=True)
            share = (delta[None] * grads.mean(1)).sum(-1)  # (B, L)
            idx = keep.nonzero()[:, 0]
            shares[:, t, :len(idx)] = share[:, idx].cpu()
            words.append([_token_text(model, i) for i in one["input_ids"][0, idx].tolist()])
    return TokenAttribution(list(prompts), words, shares, full, base, empty.cpu().expand(len(prompts), B).T.clone(),
                            {"method": "integrated-gradients", "score": score, "steps": steps,
                             "baseline": "word token embeddings set to zero", "model": model.name})


def _path_scores(model, embedding, tokens, keep, alphas, image, scale, grad: bool):
    """Scores (len(alphas), B) of the prompt with its word embeddings scaled by alpha (keep: (L,) word positions;
    None: no change); with ``grad``, the gradients (B, len(alphas), L, D) with respect to the embeddings along the
    path and the difference e - b (L, D)."""
    n = len(alphas)
    batch = {k: v.to(model.device).expand(n, -1) for k, v in tokens.items()}
    alphas = alphas.to(model.device)
    state = {}

    def hook(module, inputs, output):
        e = output.detach().float()
        if keep is None:
            return output
        base = e * (~keep)[None, :, None]
        path = (base + alphas[:, None, None] * (e - base)).requires_grad_(grad)
        state["path"], state["delta"] = path, (e - base)[0]
        return path.to(output.dtype)

    handle = embedding.register_forward_hook(hook)
    try:
        with torch.set_grad_enabled(grad):
            text = F.normalize(model.tower.encode_text(batch).float(), dim=-1)  # (n, D)
            scores = (text @ image.T) * scale  # (n, B)
            if not grad:
                return scores.detach()
            B = image.shape[0]
            sel = torch.eye(B, device=scores.device)[:, None, :].expand(B, n, B)
            if B == 1:
                (g,) = torch.autograd.grad(scores, [state["path"]], grad_outputs=sel[0])
                g = g[None]
            else:
                (g,) = torch.autograd.grad(scores, [state["path"]], grad_outputs=sel, is_grads_batched=True)
            return g, state["delta"]
    finally:
        handle.remove()


def as_numpy_shares(att: TokenAttribution, image: int, prompt: int) -> np.ndarray:
    """The shares of one pair's tokens as a float array (for figures and reports)."""
    return att.shares[image, prompt, :len(att.tokens[prompt])].numpy().astype(float)
