"""Tokenizers: an open_clip tokenizer, a Hugging Face tokenizer or processor, or any callable from a list of
strings to token ids, all turned into one function ``prompts -> {"input_ids": (T, L) tensor, ...}``."""
from __future__ import annotations

from typing import Callable, Dict, List

import torch

Tokens = Dict[str, torch.Tensor]


def _is_hf_tokenizer(tok) -> bool:
    return hasattr(tok, "model_input_names") and hasattr(tok, "pad_token_id")


def make_tokenize(tokenizer, context_length: int, pad_to_max: bool) -> Callable[[List[str]], Tokens]:
    """`context_length`: the text tower's; `pad_to_max`: pad every prompt to it (SigLIP's text towers pool the
    last position), else to the longest prompt with an attention mask."""
    inner = getattr(tokenizer, "tokenizer", None)
    if inner is not None and hasattr(tokenizer, "image_processor") and _is_hf_tokenizer(inner):
        tokenizer = inner  # a processor: its tokenizer
    if _is_hf_tokenizer(tokenizer):
        def tokenize(prompts: List[str]) -> Tokens:
            out = tokenizer(list(prompts), padding="max_length" if pad_to_max else True, truncation=True,
                            max_length=context_length, return_tensors="pt")
            return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}
        return tokenize
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be callable (a list of strings -> token ids), got {type(tokenizer).__name__}.")

    def tokenize(prompts: List[str]) -> Tokens:
        return as_tokens(tokenizer(list(prompts)), len(prompts))
    return tokenize


def as_tokens(out, n: int) -> Tokens:
    """A tokenizer's output (a (T, L) tensor, a dict with input_ids, or lists of ids) as a dict of tensors."""
    try:
        tokens = _as_tokens(out)
    except (TypeError, ValueError, RuntimeError):
        tokens = {}
    ids = tokens.get("input_ids")
    if ids is None or ids.ndim != 2 or len(ids) != n:
        raise ValueError(f"The tokenizer must return token ids for each of the {n} prompts (a (T, L) tensor or "
                         f"T lists of ids); it returned {type(out).__name__}"
                         f"{'' if ids is None else ' of shape ' + str(tuple(ids.shape))}.")
    return {k: v.long() for k, v in tokens.items()}


def _as_tokens(out) -> Tokens:
    if isinstance(out, (str, bytes)):
        return {}
    if isinstance(out, dict) or hasattr(out, "keys"):
        tokens = {k: torch.as_tensor(out[k]) for k in out.keys() if k in ("input_ids", "attention_mask")}
    elif isinstance(out, torch.Tensor):
        tokens = {"input_ids": out}
    else:
        rows = [list(r) for r in out]
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.as_tensor(r, dtype=torch.long)
            mask[i, :len(r)] = 1
        tokens = {"input_ids": ids, "attention_mask": mask}
    return tokens
