"""One stage of a training run: its network (the weights carried over to the stage's input size), optimiser,
data and steps."""
from __future__ import annotations

import copy
import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from ...data import PartsWorld, Scene
from .auxiliary import DensePartHead, PartColourHead, part_area_target, part_colour_target
from .captions import part_examples, training_captions
from .evaluate import CaptionedScenes, colour_probe, zero_shot_accuracy
from .losses import step_loss
from .schedule import lr_at, stage_budget


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


@dataclass
class Run:
    """What a training run sets once (``recipe`` ... ``t_start``) and what it carries from stage to stage: the
    network, the auxiliary heads, the logs (one value per step) and the step count."""

    recipe: Dict[str, Any]
    model_cfg: Dict[str, Any]
    seed: int
    steps: int
    batch_size: int
    lr: float
    device: torch.device
    tokenizer: Any
    clip_loss: Any
    caption_fn: Optional[Callable[[Scene, int], Sequence[str]]] = None
    workers: int = 1
    eval_every: int = 100
    eval_n: int = 200
    max_seconds: Optional[float] = None
    t_start: float = 0.0
    net: Any = None
    head: Optional[PartColourHead] = None
    dense_head: Optional[DensePartHead] = None
    log: Dict[str, List[float]] = field(default_factory=lambda: {"losses": [], "aux_losses": [], "dense_losses": [],
                                                                  "lrs": []})
    evals: List[Dict[str, float]] = field(default_factory=list)
    step: int = 0
    stopped_early: bool = False

    @property
    def is_resnet(self) -> bool:
        return isinstance(self.model_cfg["vision_cfg"]["layers"], (list, tuple))


def stage_network(run: Run, image_size: int):
    """The network of a stage at ``image_size``: a new open_clip CLIP with the previous stage's weights."""
    import open_clip
    cfg = copy.deepcopy(run.model_cfg)
    cfg["vision_cfg"]["image_size"] = image_size
    new = open_clip.CLIP(**cfg)
    if run.net is not None:   # carry the weights over to the new input size
        new.load_state_dict(resize_state_dict(run.net.state_dict(), new))
    net = (new.to(memory_format=torch.channels_last) if run.is_resnet else new).to(run.device)
    net.train()
    return net


def stage_optimizer(run: Run) -> torch.optim.Optimizer:
    """AdamW over the network (weight decay on matrices, not on embeddings, biases or the logit scale) and the
    auxiliary heads (no decay)."""
    decay, no_decay = [], []
    for name, p in run.net.named_parameters():
        (decay if p.ndim >= 2 and "embedding" not in name and "logit_scale" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": run.recipe["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    for head in (run.head, run.dense_head):
        if head is not None:
            groups.append({"params": list(head.parameters()), "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=run.lr, betas=(0.9, 0.98), eps=1e-6)


def stage_loader(run: Run, stage: Dict[str, Any], parts: bool, grid: Optional[int]):
    """The stage's batches: PartsWorld scenes of seed ``seed + 10000 * k`` with their captions or part examples
    (sibling pairs side by side) and, where the heads need them, their targets."""
    if parts and run.batch_size % 2:
        raise ValueError(f"the parts examples come in sibling pairs: batch_size must be even, not {run.batch_size}")
    world = PartsWorld(stage["steps"] * run.batch_size // (2 if parts else 1), seed=stage["scene_seed_offset"] + run.seed,
                       size=stage["image_size"], n_objects=tuple(run.recipe.get("n_objects", (1, 3))))
    with_targets = run.head is not None or grid is not None
    data = CaptionedScenes(world, run.tokenizer, caption_seed=run.seed, caption_fn=run.caption_fn or training_captions,
                           example_fn=part_examples if parts else None, pairs=parts,
                           target_fn=functools.partial(training_targets, colours=run.head is not None, grid=grid)
                           if with_targets else None)
    return torch.utils.data.DataLoader(data, batch_size=run.batch_size, shuffle=False, num_workers=run.workers,
                                       drop_last=True, persistent_workers=False,
                                       prefetch_factor=4 if run.workers else None,
                                       pin_memory=run.device.type == "cuda")


def run_stage(run: Run, stages: List[Dict[str, Any]], k: int, bar) -> None:
    """Train stage ``k`` of ``stages``: the network at the stage's size, then its steps (or its share of the time
    limit), each with its learning rate, loss, optimiser step and, every ``eval_every`` steps, an evaluation."""
    stage = stages[k]
    run.net = stage_network(run, stage["image_size"])
    grid, tapped, tap_hook = None, {}, None
    if stage["dense_weight"] > 0:
        channels, grid = tap_shape(run.net, run.recipe["dense_layer"], stage["image_size"])
        if run.dense_head is None:
            run.dense_head = DensePartHead(channels).to(run.device)
        tap_hook = run.net.get_submodule(run.recipe["dense_layer"]).register_forward_hook(
            lambda m, i, o: tapped.update(features=o))
    opt = stage_optimizer(run)
    parts = stage["examples"] == "parts" and run.caption_fn is None
    loader = stage_loader(run, stage, parts, grid)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=run.device.type == "cuda")
    peak = run.lr * stage["lr_scale"]
    t_stage = time.time()
    budget = None if run.max_seconds is None else stage_budget(run.max_seconds - (time.time() - run.t_start),
                                                                stages[k:])
    log = run.log
    for i, (images, tokens, *aux_target) in enumerate(loader):
        if i >= stage["steps"]:
            break
        elapsed = time.time() - t_stage
        if budget is not None and i > 0 and elapsed > budget:
            run.stopped_early = True
            break
        images = images.to(run.device, non_blocking=True)
        tokens = tokens.to(run.device, non_blocking=True)
        # a time-boxed stage anneals on whichever runs out first, its steps or its share of the time
        at = i if budget is None else max(i, int(stage["steps"] * elapsed / budget))
        log["lrs"].append(lr_at(at, stage["steps"], peak, stage["warmup"]))
        for g in opt.param_groups:
            g["lr"] = log["lrs"][-1]
        if run.is_resnet:
            images = images.contiguous(memory_format=torch.channels_last)
        nb, nc = tokens.shape[:2]
        with autocast:
            img_f = run.net.encode_image(images, normalize=True).float()
            txt_f = encode_text_trimmed(run.net, tokens.transpose(0, 1).reshape(nb * nc, -1)).float()
        target = {key: v.to(run.device) for key, v in aux_target[0].items()} if aux_target else {}
        loss = step_loss(img_f, txt_f.reshape(nc, nb, -1), run.net.logit_scale.exp(), run.clip_loss, parts=parts,
                         object_weight=float(run.recipe.get("object_weight", 1.0)), stage=stage, target=target,
                         head=run.head, dense_head=run.dense_head,
                         features=tapped.pop("features") if grid is not None else None, log=log)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            run.net.logit_scale.clamp_(0, math.log(100))
        run.step += 1
        _evaluate_and_show(run, stage, i, bar)
    del loader
    if tap_hook is not None:
        tap_hook.remove()


def _evaluate_and_show(run: Run, stage: Dict[str, Any], i: int, bar) -> None:
    log = run.log
    post = {"px": stage["image_size"], "loss": f"{np.mean(log['losses'][-20:]):.3f}"}
    if log["aux_losses"]:
        post["aux"] = f"{np.mean(log['aux_losses'][-20:]):.3f}"
    if log["dense_losses"]:
        post["dense"] = f"{np.mean(log['dense_losses'][-20:]):.3f}"
    if run.eval_every and (run.step % run.eval_every == 0 or run.step == run.steps or i + 1 == stage["steps"]):
        acc = zero_shot_accuracy(run.net, run.tokenizer, n=run.eval_n, seed=run.seed + 1000, size=stage["image_size"])
        run.evals.append({"step": run.step, "image_size": stage["image_size"], "accuracy": acc,
                          **colour_probe(run.net, run.tokenizer, size=stage["image_size"])})
        run.net.train()
    if run.evals:
        post["zs_acc"] = f"{run.evals[-1]['accuracy']:.3f}"
        post["colour_cos"] = f"{run.evals[-1]['recoloured_image_cosine']:.3f}"
    bar.set_postfix(post)
    bar.update(1)
