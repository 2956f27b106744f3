"""Train the small bundled CLIP models on PartsWorld scenes (CPU is enough).

    decomviz train --model parts-rn --steps 900 --batch-size 64 --seed 0 --out decomviz/assets/parts-rn
    python -m decomviz.apps.train.cli --model parts-vit ...

The model is open_clip's own ``open_clip.CLIP`` built from a config dict, trained with ``open_clip.ClipLoss``
on PartsWorld scenes (1-3 objects) and captions that mix object-level ("a photo of a house and a car") and
part-level ("a house with a red roof", "the wheels of a car", "a red roof") phrasing. Everything is fixed by
the seed: model initialisation (``torch.manual_seed``), the training scenes (``PartsWorld(seed=seed)``), the
caption choices (``default_rng([seed, index, 1])``) and the order of batches.

The output folder is an open_clip "local-dir" model::

    out/open_clip_config.json         {"model_cfg": {...}, "preprocess_cfg": {...}}
    out/open_clip_model.safetensors   weights (fp16 to keep the package small; they load into fp32 models)
    out/training.json                 command, seed, steps, losses, zero-shot accuracies, time taken

and loads with ``open_clip.create_model_and_transforms("local-dir:" + out)`` and
``open_clip.get_tokenizer("local-dir:" + out)``, offline.
"""
from __future__ import annotations

import copy
import functools
import json
import math
import os
import shlex
import sys
import platform
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from ...data import PartsWorld, Scene
from .auxiliary import DensePartHead, PartColourHead, part_area_target, part_colour_target
from .captions import ATTRIBUTE, PART, PART_EXAMPLE_LAYOUT, PART_NEGATIVE, part_examples, training_captions
from .evaluate import CaptionedScenes, colour_probe, zero_shot_accuracy
from .recipes import RECIPES, ZERO_SHOT_TEMPLATE
from .saving import load_local, save_model


def default_out(model: str) -> Path:
    """Where a run without ``out`` writes: ``trained/<model>`` under the current folder, never the installed
    package (pass its assets folder as ``out`` to replace a bundled model)."""
    return Path.cwd() / "trained" / model


def hard_negative_loss(image: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                       scale: torch.Tensor) -> torch.Tensor:
    """Contrastive loss in which each image also competes against its own hard-negative captions.

    image, positive : (B, D) normalised embeddings; image i matches positive i. negatives : (B, M, D), or (B, D)
    for one each: image i's own negatives. Image to text: a softmax over the B positives and image i's M
    negatives; text to image: over the B images.
    """
    import torch.nn.functional as F
    if negatives.ndim == 2:
        negatives = negatives[:, None]
    labels = torch.arange(len(image), device=image.device)
    to_text = scale * torch.cat([image @ positive.T, torch.einsum("bd,bmd->bm", image, negatives)], 1)
    to_image = scale * positive @ image.T
    return (F.cross_entropy(to_text, labels) + F.cross_entropy(to_image, labels)) / 2


def sibling_part_loss(image: torch.Tensor, removed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Image-side part contrast: rows 2m and 2m + 1 of ``image`` (B, D) are one scene with two different parts
    removed, and ``removed`` (B, D) embeds "the {removed part} of a {class}" of each row. That text must match the
    sibling, which still shows the part, better than its own image (a two-way softmax over the pair)."""
    import torch.nn.functional as F
    if len(image) % 2:
        raise ValueError("sibling_part_loss needs pairs of rows; the batch size must be even")
    sibling = image.reshape(-1, 2, image.shape[-1]).flip(1).reshape(image.shape)
    logits = scale * torch.stack([(sibling * removed).sum(-1), (image * removed).sum(-1)], 1)
    return F.cross_entropy(logits, torch.zeros(len(image), dtype=torch.long, device=image.device))


def part_example_loss(image: torch.Tensor, texts: torch.Tensor, scale: torch.Tensor, clip_loss,
                      object_weight: float = 1.0) -> torch.Tensor:
    """The loss of a batch of `part_examples` pairs: texts (len(PART_EXAMPLE_LAYOUT), B, D). The weighted mean of
    the CLIP loss on the object captions (weight ``object_weight``), the attribute's colour choice, the part
    against the removed part, and the image-side contrast of the removed part between siblings (weight 1 each)."""
    return (object_weight * clip_loss(image, texts[0], scale)
            + hard_negative_loss(image, texts[ATTRIBUTE.start], texts[ATTRIBUTE.start + 1:ATTRIBUTE.stop].transpose(0, 1),
                                 scale)
            + hard_negative_loss(image, texts[PART], texts[PART_NEGATIVE], scale)
            + sibling_part_loss(image, texts[PART_NEGATIVE], scale)) / (object_weight + 3)


def encode_text_trimmed(net, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """``net.encode_text(tokens)`` of an open_clip ``CLIP`` computed on the first L positions only, L the longest
    caption's length: the mask is causal and the pooled position is the end token, so the result is the same,
    and training captions of about 10 tokens cost a third of the 32-token context."""
    from open_clip.transformer import text_global_pool
    length = int((tokens != 0).any(0).nonzero().max()) + 1
    tokens = tokens[:, :length]
    cast_dtype = net.transformer.get_cast_dtype()
    x = net.token_embedding(tokens).to(cast_dtype) + net.positional_embedding[:length].to(cast_dtype)
    x = net.transformer(x, attn_mask=net.attn_mask[:length, :length])
    x = text_global_pool(net.ln_final(x), tokens, net.text_pool_type, eos_token_id=getattr(net, "text_eos_id", None))
    if net.text_projection is not None:
        x = net.text_projection(x) if isinstance(net.text_projection, torch.nn.Linear) else x @ net.text_projection
    return torch.nn.functional.normalize(x, dim=-1) if normalize else x


def training_targets(scene: Scene, colours: bool = True, grid: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """The auxiliary targets of a scene as drawn: each part's colour (``colours``) and, when ``grid`` is given,
    where each (slot, colour) lies on a ``grid x grid`` feature map (`auxiliary.part_area_target`)."""
    out = {"colours": part_colour_target(scene)} if colours else {}
    if grid is not None:
        out.update(part_area_target(scene, grid))
    return out


def tap_shape(net, layer: str, image_size: int):
    """(channels, grid) of ``layer``'s output for one ``image_size`` image: the size the dense target needs."""
    seen = {}
    hook = net.get_submodule(layer).register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))
    try:
        with torch.no_grad():
            net.encode_image(torch.zeros(1, 3, image_size, image_size, device=net.logit_scale.device))
    finally:
        hook.remove()
    c, h, w = seen["shape"][1:]
    if h != w:
        raise ValueError(f"{layer} gives a {h} x {w} map; the dense target needs a square one")
    return int(c), int(h)


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def _plan_stages(recipe: Dict[str, Any], steps: int, size: int) -> List[Dict[str, Any]]:
    """Split ``steps`` over the recipe's stages (image size, fraction of the steps, lr scale, warmup).

    Stages before the last may train at a lower resolution (much cheaper on CPU); the last stage trains at
    the model's own ``size``. Scenes of stage k come from ``PartsWorld(seed=seed + 10000 * k)``. A stage's
    ``examples`` ("captions": `training_captions`, or "parts": `part_examples`) defaults to the recipe's, so a
    recipe can ground class words first and teach parts after.
    """
    plan = recipe.get("stages") or [{"image_size": size, "fraction": 1.0}]
    if plan[-1]["image_size"] != size:
        raise ValueError("the last training stage must use the model's image size")
    total = sum(st["fraction"] for st in plan)
    out, used = [], 0
    for k, st in enumerate(plan):
        n = steps - used if k == len(plan) - 1 else int(round(steps * st["fraction"] / total))
        n = max(n, 0)
        used += n
        out.append({"image_size": int(st["image_size"]), "steps": n,
                    "examples": st.get("examples", recipe.get("examples", "captions")),
                    "lr_scale": float(st.get("lr_scale", 1.0)),
                    "aux_weight": float(st.get("aux_weight", recipe.get("aux_weight", 0.0))),
                    "dense_weight": float(st.get("dense_weight", recipe.get("dense_weight", 0.0))),
                    "warmup": int(min(st.get("warmup", recipe["warmup"]), max(n // 5, 0))),
                    "scene_seed_offset": 10000 * k})
    return [st for st in out if st["steps"] > 0]


#: A training step costs a fixed part (text tower, optimiser, data) plus a part in proportion to its pixels; on 2
#: CPU cores parts-rn took 0.82 s a step at 112 px and 2.05 s at 224 px, so the fixed part is that of 112 x 112 px.
FIXED_STEP_PIXELS = 112 * 112


def stage_budget(seconds_left: float, stages: List[Dict[str, Any]]) -> float:
    """The share of the time left that goes to ``stages[0]`` under a time limit: proportional to its cost among
    the stages still to run (`FIXED_STEP_PIXELS`). Time an earlier stage did not use passes on to the later ones."""
    cost = [st["steps"] * (FIXED_STEP_PIXELS + st["image_size"] ** 2) for st in stages]
    return max(0.0, seconds_left) * cost[0] / max(1, sum(cost))


def resize_state_dict(state: Dict[str, torch.Tensor], model) -> Dict[str, torch.Tensor]:
    """Adapt a CLIP state dict to ``model``'s input size: the grid part of the image tower's positional
    embedding (ModifiedResNet ``attnpool.positional_embedding`` or ViT ``positional_embedding``) is
    resized bicubically; the class-token row and every other weight are kept."""
    import torch.nn.functional as F
    state = dict(state)
    target = model.state_dict()
    for key in ("visual.attnpool.positional_embedding", "visual.positional_embedding"):
        if key not in state or key not in target or state[key].shape == target[key].shape:
            continue
        src, dst = state[key], target[key]
        g0, g1 = int(round(math.sqrt(src.shape[0] - 1))), int(round(math.sqrt(dst.shape[0] - 1)))
        cls, grid = src[:1], src[1:].reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=(g1, g1), mode="bicubic", align_corners=False)
        state[key] = torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(g1 * g1, -1).to(src.dtype)], 0)
    return state


def train(model: str = "parts-rn", steps: Optional[int] = None, batch_size: Optional[int] = None, seed: int = 0,
          out: Optional[os.PathLike] = None, lr: Optional[float] = None, eval_every: int = 100,
          progress: bool = True, threads: int = 2, workers: int = 1, eval_n: int = 200,
          deterministic: bool = True, save: bool = True, final_eval: bool = True,
          command: Optional[str] = None,
          caption_fn: Callable[[Scene, int], Sequence[str]] = None,
          device: str = "cpu", max_seconds: Optional[float] = None) -> Dict[str, Any]:
    """Train one recipe of :data:`RECIPES` and (``save=True``) write it as an open_clip local-dir folder.

    Returns the training record (also written to ``out/training.json``), with ``losses`` (one per step),
    ``evals`` (step, zero-shot accuracy on held-out single-object scenes of seed ``seed + 1000``) and, when
    ``final_eval``, ``zero_shot_accuracy``: the accuracy of the saved folder reloaded through open_clip's
    local-dir path on ``eval_n`` scenes of seed ``seed + 2000``.

    ``device="cuda"`` trains on the GPU (bf16 autocast for the towers, fp32 weights and loss); scenes are
    still drawn on the CPU by ``workers`` processes. ``max_seconds`` ends training early (the record says
    ``stopped_early``; each stage takes at least one step) and still saves and evaluates what was trained;
    each stage gets its share of the time by cost (`stage_budget`), and its learning rate anneals on whichever
    runs out first, so a time-boxed run still ends at a low learning rate (but is no longer deterministic).
    """
    import open_clip
    from tqdm.auto import tqdm

    if model not in RECIPES:
        raise ValueError(f"unknown model recipe {model!r}; choose from {sorted(RECIPES)}")
    recipe = RECIPES[model]
    steps = int(recipe["steps"] if steps is None else steps)
    batch_size = int(recipe["batch_size"] if batch_size is None else batch_size)
    lr = float(recipe["lr"] if lr is None else lr)
    if steps < 1 or batch_size < 2:
        raise ValueError("steps must be >= 1 and batch_size >= 2")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch sees no CUDA GPU; train with device='cpu'")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    out = Path(out) if out is not None else default_out(model)
    model_cfg = copy.deepcopy(recipe["model_cfg"])
    size = model_cfg["vision_cfg"]["image_size"]
    ctx = model_cfg["text_cfg"]["context_length"]
    if command is None:
        command = (f"decomviz train --model {model} --steps {steps} --batch-size {batch_size} --seed {seed} "
                   f"--lr {lr:g} --out {shlex.quote(str(out))}")

    stages = _plan_stages(recipe, steps, size)

    t_start = time.time()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    is_resnet = isinstance(model_cfg["vision_cfg"]["layers"], (list, tuple))
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=ctx)
    loss_fn = open_clip.ClipLoss()

    aux_weight = float(recipe.get("aux_weight", 0.0))
    head = PartColourHead(model_cfg["embed_dim"]).to(device) if any(st["aux_weight"] > 0 for st in stages) else None
    dense_layer = recipe.get("dense_layer")
    if any(st["dense_weight"] > 0 for st in stages) and not dense_layer:
        raise ValueError(f"recipe {model!r} has a dense_weight but no dense_layer to put the target on")
    dense_head: Optional[DensePartHead] = None
    dense_losses: List[float] = []
    aux_losses: List[float] = []
    losses: List[float] = []
    lrs: List[float] = []
    evals: List[Dict[str, float]] = []
    bar = tqdm(total=steps, desc=f"train {model}", disable=not progress, dynamic_ncols=True)
    step = 0
    net = None
    stopped_early = False
    for k, stage in enumerate(stages):
        cfg_k = copy.deepcopy(model_cfg)
        cfg_k["vision_cfg"]["image_size"] = stage["image_size"]
        new = open_clip.CLIP(**cfg_k)
        if net is not None:   # carry the weights over to the new input size
            new.load_state_dict(resize_state_dict(net.state_dict(), new))
        net = (new.to(memory_format=torch.channels_last) if is_resnet else new).to(device)
        net.train()
        decay, no_decay = [], []
        for name, p in net.named_parameters():
            (decay if p.ndim >= 2 and "embedding" not in name and "logit_scale" not in name else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": recipe["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
        grid, tapped, tap_hook = None, {}, None
        if stage["dense_weight"] > 0:
            channels, grid = tap_shape(net, dense_layer, stage["image_size"])
            if dense_head is None:
                dense_head = DensePartHead(channels).to(device)
            tap_hook = net.get_submodule(dense_layer).register_forward_hook(lambda m, i, o: tapped.update(features=o))
        if head is not None:
            groups.append({"params": list(head.parameters()), "weight_decay": 0.0})
        if dense_head is not None:
            groups.append({"params": list(dense_head.parameters()), "weight_decay": 0.0})
        opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)
        parts = stage["examples"] == "parts" and caption_fn is None
        if parts and batch_size % 2:
            raise ValueError(f"the parts examples come in sibling pairs: batch_size must be even, not {batch_size}")
        world = PartsWorld(stage["steps"] * batch_size // (2 if parts else 1), seed=stage["scene_seed_offset"] + seed,
                           size=stage["image_size"], n_objects=tuple(recipe.get("n_objects", (1, 3))))
        data = CaptionedScenes(world, tokenizer, caption_seed=seed, caption_fn=caption_fn or training_captions,
                               example_fn=part_examples if parts else None, pairs=parts,
                               target_fn=functools.partial(training_targets, colours=head is not None, grid=grid)
                               if head is not None or grid is not None else None)
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False,
                                             num_workers=workers, drop_last=True,
                                             persistent_workers=False, prefetch_factor=4 if workers else None,
                                             pin_memory=device.type == "cuda")
        peak = lr * stage["lr_scale"]
        t_stage = time.time()
        budget = None if max_seconds is None else stage_budget(max_seconds - (time.time() - t_start), stages[k:])
        for i, (images, tokens, *aux_target) in enumerate(loader):
            if i >= stage["steps"]:
                break
            elapsed = time.time() - t_stage
            if budget is not None and i > 0 and elapsed > budget:
                stopped_early = True
                break
            images = images.to(device, non_blocking=True)
            tokens = tokens.to(device, non_blocking=True)
            # a time-boxed stage anneals on whichever runs out first, its steps or its share of the time
            at = i if budget is None else max(i, int(stage["steps"] * elapsed / budget))
            lrs.append(_lr_at(at, stage["steps"], peak, stage["warmup"]))
            for g in opt.param_groups:
                g["lr"] = lrs[-1]
            if is_resnet:
                images = images.contiguous(memory_format=torch.channels_last)
            nb, nc = tokens.shape[:2]
            with autocast:
                img_f = net.encode_image(images, normalize=True).float()
                txt_f = encode_text_trimmed(net, tokens.transpose(0, 1).reshape(nb * nc, -1)).float()
            scale = net.logit_scale.exp()
            texts = txt_f.reshape(nc, nb, -1)
            if parts:
                loss = part_example_loss(img_f, texts, scale, loss_fn, float(recipe.get("object_weight", 1.0)))
            else:       # each image against each of its captions (object level, part level), averaged
                loss = sum(loss_fn(img_f, texts[j], scale) for j in range(nc)) / nc
            losses.append(float(loss.detach()))   # the contrastive loss; the auxiliary one is logged apart
            target = {key: v.to(device) for key, v in aux_target[0].items()} if aux_target else {}
            if head is not None:
                aux = head.loss(img_f, target["colours"])
                aux_losses.append(float(aux.detach()))
                loss = loss + stage["aux_weight"] * aux
            if grid is not None:
                dense = dense_head.loss(tapped.pop("features"), target["classes"], target["areas"])
                dense_losses.append(float(dense.detach()))
                loss = loss + stage["dense_weight"] * dense
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                net.logit_scale.clamp_(0, math.log(100))
            step += 1
            post = {"px": stage["image_size"], "loss": f"{np.mean(losses[-20:]):.3f}"}
            if aux_losses:
                post["aux"] = f"{np.mean(aux_losses[-20:]):.3f}"
            if dense_losses:
                post["dense"] = f"{np.mean(dense_losses[-20:]):.3f}"
            if eval_every and (step % eval_every == 0 or step == steps or i + 1 == stage["steps"]):
                acc = zero_shot_accuracy(net, tokenizer, n=eval_n, seed=seed + 1000, size=stage["image_size"])
                evals.append({"step": step, "image_size": stage["image_size"], "accuracy": acc,
                              **colour_probe(net, tokenizer, size=stage["image_size"])})
                net.train()
            if evals:
                post["zs_acc"] = f"{evals[-1]['accuracy']:.3f}"
                post["colour_cos"] = f"{evals[-1]['recoloured_image_cosine']:.3f}"
            bar.set_postfix(post)
            bar.update(1)
        del loader
        if tap_hook is not None:
            tap_hook.remove()
    bar.close()
    train_time = time.time() - t_start

    record: Dict[str, Any] = {
        "model": model,
        "command": command,
        "argv": list(sys.argv),
        "seed": seed,
        "steps": step,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": recipe["weight_decay"],
        "warmup": recipe["warmup"],
        "stages": stages,
        "train_scenes": {"class": "PartsWorld", "n_images": step * batch_size,
                         "pairs": "a parts stage draws two variants of each scene", "seed": "seed + 10000 * stage",
                         "size": "per stage", "n_objects": list(recipe.get("n_objects", (1, 3))),
                         "captions": {
                             "parts": "decomviz.apps.train.part_examples(scene, seed, variant), two variants of "
                                      "each scene side by side: " + ", ".join(PART_EXAMPLE_LAYOUT)
                                      + "; decomviz.apps.train.loop.part_example_loss",
                             "captions": "decomviz.apps.train.training_captions(scene, seed): object level + part "
                                         "level, losses averaged"},
                         "examples_by_stage": [st["examples"] for st in stages]},
        "final_loss": float(np.mean(losses[-20:])),
        "losses": [round(v, 5) for v in losses],
        "aux_weight": aux_weight,
        "aux_weight_by_stage": [st["aux_weight"] for st in stages],
        "object_weight": float(recipe.get("object_weight", 1.0)),
        "aux_losses": [round(v, 5) for v in aux_losses],
        "dense_layer": dense_layer if dense_head is not None else None,
        "dense_weight_by_stage": [st["dense_weight"] for st in stages],
        "dense_losses": [round(v, 5) for v in dense_losses],
        "auxiliary": ("decomviz.apps.train.auxiliary: a linear head on the normalised image embedding (scaled by "
                      "sqrt(D)) predicts each drawn part's colour among the palette's; cross-entropy, added to "
                      "each step's loss times aux_weight; the head is not saved") if head is not None else None,
        "lrs": [float(f"{v:.4g}") for v in lrs],
        "evals": evals,
        "eval_scenes": {"n": eval_n, "seed": seed + 1000, "n_objects": 1, "template": ZERO_SHOT_TEMPLATE},
        "train_seconds": round(train_time, 1),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "stopped_early": stopped_early,
        "threads": threads,
        "workers": workers,
        "deterministic": deterministic,
        "n_parameters": int(sum(p.numel() for p in net.parameters())),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if save:
        net = net.cpu()
        path = save_model(net, model_cfg, out, default_layer=recipe.get("default_layer"))
        record["weights_bytes"] = path.stat().st_size
        record["weights_dtype"] = "float16"
        if final_eval:
            loaded, preprocess, tok = load_local(out)
            acc = zero_shot_accuracy(loaded, tok, n=eval_n, seed=seed + 2000, preprocess=preprocess)
            record["zero_shot_accuracy"] = acc
            record["zero_shot_eval"] = {"n": eval_n, "seed": seed + 2000, "n_objects": 1,
                                        "template": ZERO_SHOT_TEMPLATE,
                                        "how": "saved folder reloaded via open_clip local-dir, its preprocess"}
        record["total_seconds"] = round(time.time() - t_start, 1)
        (Path(out) / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    else:
        record["total_seconds"] = round(time.time() - t_start, 1)
    record["model_object"] = net
    return record
