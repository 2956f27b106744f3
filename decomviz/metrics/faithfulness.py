"""Faithfulness: how the explanation's own score changes when pixels are kept or removed in saliency order."""
from __future__ import annotations

from typing import Any, Dict

import torch

from ..ops import blurred_reference, score_masked
from .result import MetricResult


def _explanation_inputs(model, exp):
    x = model.prepare(list(exp.images.numpy())).tensor  # the very pixels that were explained
    text = model.encode_text(list(exp.prompts) + list(exp.params.get("contrast", ())))
    score = exp.params.get("score", "cosine")
    return x, text, score


def insertion_deletion(model, exp, steps: int = 16, blur_sigma: float = 10.0, batch_size: int = 32) -> Dict[str, MetricResult]:
    """Insertion and deletion AUC of every (image, prompt) map of an Explanation.

    Pixels are taken in order of saliency. Insertion starts from the blurred image and puts back the top
    fraction f of pixels; deletion starts from the image and blurs the top fraction f away; f runs over
    `steps` + 1 equal steps from 0 to 1. The curve is the explanation's own score (exp.params["score"]) for the
    pair's prompt; the AUC is its trapezoid mean. Higher insertion and lower deletion are better.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    x, text, score = _explanation_inputs(model, exp)
    ref = blurred_reference(x, blur_sigma)
    B, T, H, W = exp.saliency.shape
    sal = exp.saliency.to(x.device).reshape(B, T, H * W)
    # rank of each pixel (0 = most salient); ties broken by index, deterministic
    order = sal.argsort(dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(H * W, device=x.device).expand_as(order))
    fractions = torch.linspace(0, 1, steps + 1, device=x.device)
    curves = {}
    for name in ("insertion", "deletion"):
        b_of = torch.arange(B, device=x.device).repeat_interleave(T * (steps + 1))
        t_of = torch.arange(T, device=x.device).repeat_interleave(steps + 1).repeat(B)
        s_of = torch.arange(steps + 1, device=x.device).repeat(B * T)

        def masks(i, j, name=name):  # insertion keeps the top fraction of the image, deletion blurs it away
            b, t, s = b_of[i:j], t_of[i:j], s_of[i:j]
            keep = (rank[b, t] < (fractions[s] * H * W).round()[:, None]).float().reshape(-1, 1, H, W)
            return keep if name == "insertion" else 1 - keep

        scores = score_masked(model, x, ref, masks, b_of, text, t_of, score, batch_size)
        curve = scores.reshape(B, T, steps + 1)
        auc = torch.trapezoid(curve, dx=1.0 / steps, dim=-1)
        curves[name] = MetricResult(f"{name}_auc", auc.cpu(), {"steps": steps, "baseline": f"gaussian blur sigma {blur_sigma} px at 224",
                                                             "score": score, **_record(exp)})
        curves[name].curves = curve.cpu()
    return curves


def confidence_change(model, exp, batch_size: int = 32) -> Dict[str, MetricResult]:
    """Average drop and increase in confidence (Chattopadhay et al., 2018): the image multiplied by the map
    (black elsewhere) against the full image, with the explanation's score. Drop = max(0, Y - O) / |Y| per
    pair (lower is better); increase = 1 where O > Y (higher is better)."""
    x, text, score = _explanation_inputs(model, exp)
    B, T, H, W = exp.saliency.shape
    b_of = torch.arange(B, device=x.device).repeat_interleave(T)
    t_of = torch.arange(T, device=x.device).repeat(B)
    black = ((0 - model.mean) / model.std).expand_as(x)   # image x map == blend(map, image, black)
    sal = exp.saliency.to(x.device).reshape(B * T, 1, H, W)
    full = score_masked(model, x, black, torch.ones_like(sal), b_of, text, t_of, score, batch_size)
    kept = score_masked(model, x, black, sal, b_of, text, t_of, score, batch_size)
    drop = (full - kept).clamp_min(0) / full.abs().clamp_min(1e-12)
    record = {"baseline": "black (image x map)", "score": score, **_record(exp)}
    return {"average_drop": MetricResult("average_drop", drop.reshape(B, T).cpu(), record),
            "increase_in_confidence": MetricResult("increase_in_confidence", (kept > full).float().reshape(B, T).cpu(), record)}


def _record(exp) -> Dict[str, Any]:
    p = exp.params
    keep = ("method", "model", "layer", "score", "n_components", "top_channels", "center", "sign", "blur_sigma",
            "integration", "weight_norm", "weight_threshold")
    return {k: p[k] for k in keep if k in p}
