"""What the cosine Grad-CAM of parts-vit shows at its default tap: token norms, and where the class token looks.

For two-object PartsWorld scenes and the prompt of each object, at the default layer (the input of the last
block):
- r(Grad-CAM, token norm): Pearson correlation, over the patch grid, of Grad-CAM's low-resolution map (before
  ReLU it is clamped; we use the map as returned) with the L2 norm of each patch token;
- Grad-CAM peak among the 5 highest-norm tokens: share of pairs;
- norm of the 5 highest-norm tokens against the mean norm of tokens on objects, and the share of those tokens
  that lie on the background;
- class-token attention peak on an object: the last block's attention from the class token (heads averaged),
  its arg-max patch inside an object's mask (15 px tolerance).
Then pointing of Grad-CAM and DecomCAM with the cosine and with the softmax over the scene's prompts.

    python benchmarks/bench_vit_tokens.py --model parts-vit --scenes 40 --seed 7
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

import decomviz as dv
from decomviz.apps.evaluation import object_masks, object_prompts, two_object_scenes
from decomviz.models.taps import tap


@torch.no_grad()
def class_token_attention(model, raw: torch.Tensor, grid) -> torch.Tensor:
    """Attention of the class token to each patch token in the last block (heads averaged), (B, h, w)."""
    block = model.visual.transformer.resblocks[-1]
    x = raw if getattr(model.visual.transformer, "batch_first", True) else raw.transpose(0, 1)
    y = block.ln_1(x)
    attn = block.attn
    q, k, _ = torch.nn.functional.linear(y, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    B, N, D = q.shape
    heads = attn.num_heads
    q = q.reshape(B, N, heads, D // heads).transpose(1, 2)
    k = k.reshape(B, N, heads, D // heads).transpose(1, 2)
    w = ((q @ k.transpose(-1, -2)) / (D // heads) ** 0.5).softmax(-1).mean(1)   # (B, N, N)
    h, wd = grid
    return w[:, 0, N - h * wd:].reshape(B, h, wd)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="parts-vit")
    ap.add_argument("--scenes", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    model = dv.load_model(args.model)
    scenes = two_object_scenes(args.scenes, args.seed)
    stats = {k: [] for k in ("r_norm", "peak_in_top5", "top5_on_background", "norm_ratio", "cls_attention_on_object")}
    cams = {"gradcam cosine": dv.GradCAM(model), "gradcam softmax": dv.GradCAM(model, score="softmax"),
            "decomcam cosine": dv.DecomCAM(model), "decomcam softmax": dv.DecomCAM(model, score="softmax")}
    hits = {k: [] for k in cams}
    for scene in scenes:
        prompts = object_prompts(scene)
        x = model.prepare(scene.image).tensor
        with tap(model, model.default_layer, requires_grad=False) as t, torch.no_grad():
            model.embed(x)
        tokens = t.grid()[0]                                     # (D, h, w)
        norm = tokens.norm(dim=0)                                # (h, w)
        h, w = norm.shape
        on_object = object_masks(scene, (h, w)).any(0)           # patch-level, nearest
        top5 = norm.flatten().topk(5).indices
        stats["top5_on_background"].append(float((~on_object.flatten()[top5]).float().mean()))
        if on_object.any():
            stats["norm_ratio"].append(float(norm.flatten()[top5].mean() / norm[on_object].mean()))
        att = class_token_attention(model, t.raw, (h, w))[0]
        full = object_masks(scene, model.image_size).any(0)
        up = torch.nn.functional.interpolate(att[None, None], size=model.image_size, mode="nearest")[0, 0]
        stats["cls_attention_on_object"].append(float(dv.metrics.pointing_game(up, full).values))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exps = {k: cam(scene.image, prompts) for k, cam in cams.items()}
        g = exps["gradcam cosine"].saliency_lowres[0]            # (T, h, w)
        for ti in range(len(prompts)):
            if g[ti].std() > 0:
                stats["r_norm"].append(float(torch.corrcoef(torch.stack([g[ti].flatten(), norm.flatten()]))[0, 1]))
            stats["peak_in_top5"].append(float(int(g[ti].flatten().argmax()) in top5.tolist()))
        masks = object_masks(scene, model.image_size)
        for k, e in exps.items():
            hits[k] += dv.metrics.pointing_game(e.saliency[0], masks).values.tolist()
    print(f"{args.model}, layer {model.default_layer}, {len(scenes)} two-object scenes (seed {args.seed})")
    for k, v in stats.items():
        print(f"  {k:26s} {np.mean(v):.3f}  (n={len(v)})")
    for k, v in hits.items():
        print(f"  pointing, {k:18s} {np.mean(v):.3f}  (n={len(v)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
