"""Attention maps of transformer image towers, recorded inside the graph, for the methods that read them (LeGrad,
Grad-ECLIP, Chefer et al., attention rollout; docs/method.md).

`record_attention(model)` hooks every attention the tower's adapter names (`Tower.attention_spec`) and every block.
Each attention's output is recomputed from the module's own weights, with the same math as the module but without
the fused kernel, and returned in place of the module's: the attention probabilities are then a tensor of the
graph, and the gradient of a score with respect to them is the gradient through them. Hooks are removed on exit,
also after an exception; the model's lock is held meanwhile (a hook sees every pass through its module).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Set, Tuple

import torch
import torch.nn.functional as F

from .taps import Tap
from .towers.base import AttentionSpec
from .wrapper import CLIPModel


class NoAttentionError(ValueError):
    """The model's image tower has no attention maps decomviz can read (a convolutional tower)."""


@dataclass
class AttentionCall:
    """One pass through one attention module. B images, H heads, Nq queries, Nk keys, d per head, D out.

    probs : (B, H, Nq, Nk) the attention probabilities, a tensor of the graph.
    q, k, v : (B, H, N, d) queries (after any query norm, before the 1/sqrt(d) scale), keys, values; None for
        kind "probs".
    out : (B, Nq, D) the attention's output (after its output projection), a tensor of the graph; None for "probs".
    proj : (D, H*d) the output projection's weight (None: no projection).
    """

    probs: torch.Tensor
    q: Optional[torch.Tensor] = None
    k: Optional[torch.Tensor] = None
    v: Optional[torch.Tensor] = None
    out: Optional[torch.Tensor] = None
    proj: Optional[torch.Tensor] = None


class AttentionRecord:
    """What the passes inside `record_attention` left: per attention module its calls, per block its outputs
    (B, N, D), and the patch grid (h, w). `paused()` stops recording, except for the modules named."""

    def __init__(self, model: CLIPModel, spec: AttentionSpec):
        self.model, self.spec = model, spec
        self.calls: Dict[str, List[AttentionCall]] = {}
        self.outputs: Dict[str, List[torch.Tensor]] = {}
        self._grid = Tap(model, spec.blocks[0], requires_grad=False)  # the tower's hooks set its patch grid
        self._only: Optional[Set[str]] = None

    @property
    def patch_grid(self) -> Tuple[int, int]:
        return self._grid.patch_grid

    def on(self, name: str) -> bool:
        return self._only is None or name in self._only

    @contextmanager
    def paused(self, *keep: str) -> Iterator[None]:
        """Record nothing inside the block except the modules ``keep`` (e.g. an attention pool run on another
        layer's tokens)."""
        before, self._only = self._only, set(keep)
        try:
            yield
        finally:
            self._only = before

    def attention(self, name: str, call: int = -1) -> AttentionCall:
        return self.calls[name][call]

    def block_output(self, index: int, call: int = 0) -> torch.Tensor:
        return self.outputs[self.spec.blocks[index]][call]

    def prefix_tokens(self, n_tokens: int) -> int:
        h, w = self.patch_grid
        return n_tokens - h * w


def attention_spec(model: CLIPModel, method: str = "this method") -> AttentionSpec:
    """The tower's `AttentionSpec`; `NoAttentionError` with the methods that do apply when it has none."""
    spec = model.tower.attention_spec()
    if spec is None:
        raise NoAttentionError(f"{method} reads the attention maps of a transformer image tower; {model.name} has a "
                               f"{model.kind} tower ({type(model.visual).__name__}) whose attention decomviz cannot "
                               "read.")
    return spec


@contextmanager
def record_attention(model: CLIPModel, spec: Optional[AttentionSpec] = None) -> Iterator[AttentionRecord]:
    """Hook the tower's attentions and blocks for the duration of the block (see the module's docstring)."""
    spec = spec or attention_spec(model)
    rec = AttentionRecord(model, spec)
    batch_first = getattr(model.tower, "batch_first", True)
    handles, restore = [], []
    with model.lock:
        try:
            handles.extend(model.tower.hooks(rec._grid))
            for name in spec.blocks:
                handles.append(model.model.get_submodule(name).register_forward_hook(
                    _block_hook(rec, name, batch_first)))
            named = list(spec.attentions) + ([spec.pool_attention] if spec.pool_attention else [])
            for name, kind in named:
                module = model.model.get_submodule(name)
                if kind == "probs":
                    restore.append((module, module.fused_attn))
                    module.fused_attn = False  # the module's own unfused path, read at the probabilities' dropout
                    handles.append(module.attn_drop.register_forward_hook(_probs_hook(rec, name)))
                else:
                    handles.append(module.register_forward_hook(_RECOMPUTE[kind](rec, name), with_kwargs=True))
            yield rec
        finally:
            for h in handles:
                h.remove()
            for module, fused in restore:
                module.fused_attn = fused


# ------------------------------------------------------------------------------------------------ hooks
def _block_hook(rec: AttentionRecord, name: str, batch_first: bool):
    def hook(module, inputs, output):
        if rec.on(name):
            z = output[0] if isinstance(output, (tuple, list)) else output
            rec.outputs.setdefault(name, []).append(z if batch_first else z.transpose(0, 1))
    return hook


def _probs_hook(rec: AttentionRecord, name: str):
    def hook(module, inputs, output):
        if rec.on(name):
            rec.calls.setdefault(name, []).append(AttentionCall(output))
    return hook


def _arg(args, kwargs, i: int, key: str, default=None):
    return args[i] if len(args) > i else kwargs.get(key, default)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, mask=None):
    """softmax(q k^T * scale + mask) and its product with v; q, k, v (B, H, N, d)."""
    logits = (q * scale) @ k.transpose(-2, -1)
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else logits + mask
    probs = logits.softmax(dim=-1)
    return probs, probs @ v


def _heads(t: torch.Tensor, h: int) -> torch.Tensor:
    """(B, N, H*d) -> (B, H, N, d)."""
    return t.unflatten(-1, (h, -1)).transpose(1, 2)


def _merge(t: torch.Tensor) -> torch.Tensor:
    """(B, H, N, d) -> (B, N, H*d)."""
    return t.transpose(1, 2).flatten(2)


def _mha(rec: AttentionRecord, name: str):
    """torch's nn.MultiheadAttention (open_clip's blocks and CoCa pooler, Hugging Face SigLIP's head)."""
    def hook(m, args, kwargs, output):
        if not rec.on(name):
            return None
        if m.bias_k is not None or m.add_zero_attn:
            raise NotImplementedError(f"{name}: attention with bias_k / add_zero_attn cannot be recorded.")
        query = _arg(args, kwargs, 0, "query")
        key = _arg(args, kwargs, 1, "key", query)
        value = _arg(args, kwargs, 2, "value", key)
        if not m.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        if m._qkv_same_embed_dim:
            wq, wk, wv = m.in_proj_weight.chunk(3)
        else:
            wq, wk, wv = m.q_proj_weight, m.k_proj_weight, m.v_proj_weight
        bq, bk, bv = m.in_proj_bias.chunk(3) if m.in_proj_bias is not None else (None, None, None)
        H = m.num_heads
        q, k, v = (_heads(F.linear(t, w, b), H) for t, w, b in ((query, wq, bq), (key, wk, bk), (value, wv, bv)))
        mask = kwargs.get("attn_mask")
        if mask is not None and mask.dim() == 3:
            mask = mask.unflatten(0, (-1, H))
        pad = kwargs.get("key_padding_mask")
        if pad is not None:
            pad = pad[:, None, None, :].bool() if pad.dtype != torch.bool else pad[:, None, None, :]
            if mask is not None:
                pad = mask | pad if mask.dtype == torch.bool else mask.masked_fill(pad, float("-inf"))
            mask = pad
        probs, ctx = _attend(q, k, v, q.shape[-1] ** -0.5, mask)
        out = m.out_proj(_merge(ctx))
        rec.calls.setdefault(name, []).append(AttentionCall(probs, q, k, v, out, m.out_proj.weight))
        if not m.batch_first:
            out = out.transpose(0, 1)
        weights = probs.mean(1) if kwargs.get("need_weights", True) else None
        return out, weights
    return hook


def _timm(rec: AttentionRecord, name: str):
    """timm's `Attention` (ViT, SigLIP, ViTamin blocks)."""
    def hook(m, args, kwargs, output):
        if not rec.on(name):
            return None
        x = _arg(args, kwargs, 0, "x")
        mask = _arg(args, kwargs, 1, "attn_mask")
        B, N, _ = x.shape
        q, k, v = m.qkv(x).reshape(B, N, 3, m.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = m.q_norm(q), m.k_norm(k)
        probs, ctx = _attend(q, k, v, m.scale, mask)
        y = m.norm(_merge(ctx))
        if getattr(m, "gate", None) is not None:
            y = y * m.gate(x).sigmoid()
        out = m.proj_drop(m.proj(y))
        proj = m.proj.weight if isinstance(m.proj, torch.nn.Linear) and isinstance(m.norm, torch.nn.Identity) \
            and getattr(m, "gate", None) is None else None
        rec.calls.setdefault(name, []).append(AttentionCall(probs, q, k, v, out, proj))
        return out
    return hook


def _timm_pool(rec: AttentionRecord, name: str):
    """timm's `AttentionPoolLatent` (SigLIP's and PE-Core's MAP head), recomputed whole."""
    def hook(m, args, kwargs, output):
        if not rec.on(name):
            return None
        x = _arg(args, kwargs, 0, "x")
        mask = _arg(args, kwargs, 1, "attn_mask")
        B, N, C = x.shape
        if m.pos_embed is not None:
            x = x + m.pos_embed.unsqueeze(0).to(x.dtype)
        q = _heads(m.q(m.latent.expand(B, -1, -1)), m.num_heads)
        k, v = m.kv(x).reshape(B, N, 2, m.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = m.q_norm(q), m.k_norm(k)
        probs, ctx = _attend(q, k, v, m.scale, mask)
        out = m.proj_drop(m.proj(_merge(ctx)))
        proj = m.proj.weight if isinstance(m.proj, torch.nn.Linear) else None
        rec.calls.setdefault(name, []).append(AttentionCall(probs, q, k, v, out, proj))
        y = out + m.mlp(m.norm(out)) if m.mlp is not None else out
        return y[:, 0] if m.pool == "token" else y.mean(1) if m.pool == "avg" else y
    return hook


def _hf(rec: AttentionRecord, name: str):
    """A Hugging Face CLIP / SigLIP attention (q_proj, k_proj, v_proj, out_proj)."""
    def hook(m, args, kwargs, output):
        if not rec.on(name):
            return None
        x = _arg(args, kwargs, 0, "hidden_states")
        mask = kwargs.get("attention_mask")
        causal = kwargs.get("causal_attention_mask")
        if causal is not None:
            mask = causal if mask is None else mask + causal
        H = getattr(m, "num_heads", None) or m.config.num_attention_heads
        q, k, v = _heads(m.q_proj(x), H), _heads(m.k_proj(x), H), _heads(m.v_proj(x), H)
        probs, ctx = _attend(q, k, v, m.scale, mask)
        out = m.out_proj(_merge(ctx))
        rec.calls.setdefault(name, []).append(AttentionCall(probs, q, k, v, out, m.out_proj.weight))
        return (out, probs) if isinstance(output, tuple) else out
    return hook


_RECOMPUTE = {"mha": _mha, "timm": _timm, "timm-pool": _timm_pool, "hf": _hf}
