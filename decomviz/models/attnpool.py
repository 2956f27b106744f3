"""open_clip's ResNet attention pool on blends of two feature maps, without running it once per blend.

Feature-space integration scores, for every mask M, the tower's tail on M * A + (1 - M) * R (A: the image's
layer4 output, R: the blurred reference's). When the tail is only the attention pool, its key, value and query
projections are linear in the tokens, and a blend's weights sum to one at every cell (and so in the mean
token), so each projection of a blend is the same blend of the projections of A and of R. Those are computed
once per image; each mask then costs an element-wise blend and one query's attention. open_clip's pool attends
from every token and keeps token 0; attending from token 0 alone gives the same output.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class BlendedAttentionPool:
    """``pool(M * a[i] + (1 - M) * r[i])`` for many (i, M), for an open_clip ``AttentionPool2d`` ``pool``.

    a, r: (B, C, h, w) layer outputs; a call takes ``index`` (N,) into the batch and ``masks`` (N, h, w) and
    returns the pooled embeddings (N, D), equal to the pool run on each blend (up to float rounding).
    """

    def __init__(self, pool: torch.nn.Module, a: torch.Tensor, r: torch.Tensor):
        self.pool = pool
        self.heads = int(pool.num_heads)
        tokens_a = a.flatten(2).transpose(1, 2)  # (B, n, C)
        tokens_r = r.flatten(2).transpose(1, 2)
        pos = pool.positional_embedding.to(a.dtype)  # (n + 1, C): the mean token first
        self.proj = {}
        for name in ("q", "k", "v"):
            lin = getattr(pool, f"{name}_proj")
            # the constant part of each token's projection: its positional embedding and the bias
            self.proj[name] = (tokens_a @ lin.weight.T, tokens_r @ lin.weight.T, F.linear(pos, lin.weight, lin.bias))

    def _blend(self, name: str, index: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        pa, pr, const = self.proj[name]
        spatial = m * pa[index] + (1 - m) * pr[index]  # (N, n, C)
        mean = spatial.mean(dim=1, keepdim=True)
        if name == "q":
            return mean + const[:1]  # only the mean token's query is kept
        return torch.cat([mean, spatial], dim=1) + const

    def __call__(self, index: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        N = len(index)
        m = masks.reshape(N, -1, 1).to(self.proj["k"][0].dtype)
        q, k, v = (self._blend(name, index, m) for name in ("q", "k", "v"))
        C = q.shape[-1]
        dh = C // self.heads
        q = q.reshape(N, 1, self.heads, dh).transpose(1, 2)  # (N, H, 1, dh)
        k = k.reshape(N, -1, self.heads, dh).transpose(1, 2)  # (N, H, n + 1, dh)
        v = v.reshape(N, -1, self.heads, dh).transpose(1, 2)
        attn = (q @ k.transpose(-1, -2) / math.sqrt(dh)).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(N, C)
        return self.pool.c_proj(out)


def is_attention_pool(module: torch.nn.Module) -> bool:
    """Whether ``module`` has the parts of open_clip's ``AttentionPool2d`` that the blend relies on."""
    return all(hasattr(module, n) for n in ("q_proj", "k_proj", "v_proj", "c_proj", "positional_embedding",
                                            "num_heads"))
