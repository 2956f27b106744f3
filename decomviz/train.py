"""Train the small bundled CLIP models on PartsWorld scenes (CPU is enough).

    decomviz train --model parts-rn --steps 900 --batch-size 64 --seed 0 --out decomviz/assets/parts-rn
    python -m decomviz.train --model parts-vit ...

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

import argparse
import copy
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from .data.partsworld import _PLURAL_PARTS, CLASSES, PARTS, PartsWorld, Scene, _article, object_phrase

ASSETS = Path(__file__).resolve().parent / "assets"
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
ZERO_SHOT_TEMPLATE = "a photo of a {}"

_TEXT_CFG = {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3}

#: Training recipes by name. ``model_cfg`` goes to ``open_clip.CLIP(**model_cfg)`` and into the saved config.
RECIPES: Dict[str, Dict[str, Any]] = {
    "parts-rn": {
        "model_cfg": {
            "embed_dim": 128,
            "vision_cfg": {"image_size": 224, "layers": [1, 1, 1, 1], "width": 16, "head_width": 32},
            "text_cfg": dict(_TEXT_CFG),
        },
        "steps": 1400, "batch_size": 64, "lr": 2e-3, "weight_decay": 0.05, "warmup": 50,
        # most steps at 112 px (4x cheaper), then the rest at the model's 224 px
        "stages": [{"image_size": 112, "fraction": 0.78},
                   {"image_size": 224, "fraction": 0.22, "lr_scale": 0.5, "warmup": 20}],
    },
    # far beyond the 2-core CPU budget: trained on a GPU (--device cuda --workers 15), see BENCHMARKS.md
    "parts-vit": {
        "model_cfg": {
            "embed_dim": 128,
            "vision_cfg": {"image_size": 224, "layers": 6, "width": 192, "head_width": 64, "patch_size": 16},
            "text_cfg": dict(_TEXT_CFG),
        },
        "steps": 6000, "batch_size": 256, "lr": 1e-3, "weight_decay": 0.05, "warmup": 300,
    },
    # a very small model on 64 px scenes: for tests and smoke runs only (not bundled)
    "tiny-rn": {
        "model_cfg": {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
        },
        "steps": 40, "batch_size": 16, "lr": 2e-3, "weight_decay": 0.0, "warmup": 0,
    },
}


# ----------------------------------------------------------------------------------------------- captions

def _join(phrases: List[str], rng: np.random.Generator) -> str:
    joins = (" and ", " next to ", ", ")
    text = phrases[0]
    for ph in phrases[1:]:
        text += joins[int(rng.integers(len(joins)))] + ph
    return text


def _part_level_phrase(label: str, colors: Dict[str, str], rng: np.random.Generator) -> str:
    """One object described through its parts, or now and then by its name alone."""
    names = PARTS[label]
    r = rng.random()
    if r < 0.2:                                              # "a house"
        return object_phrase(label, {})
    if r < 0.65:                                             # "a house with a red roof (and a blue door)"
        k = int(rng.integers(1, min(2, len(names)) + 1))
        pick = sorted(rng.choice(len(names), size=k, replace=False).tolist())
        return object_phrase(label, {names[q]: colors[names[q]] for q in pick})
    part = names[int(rng.integers(len(names)))]               # "the (red) roof of a house"
    col = colors[part] + " " if rng.random() < 0.6 else ""
    return f"the {col}{part} of {object_phrase(label, {})}"


def training_captions(scene: Scene, seed: int = 0) -> tuple:
    """Two captions for a training scene, fixed by (seed, scene.index): (object level, part level).

    Object level names every object: "a photo of a house and a car". Part level mixes "a house with a red
    roof", "the wheels of a car", the scene's own PartsWorld caption and, now and then, a bare part
    ("a red roof"). Training pairs each image with both, so class words and part words are both grounded.
    """
    rng = np.random.default_rng([seed, scene.index, 1])
    objs = scene.objects
    order = list(range(len(objs)))
    rng.shuffle(order)
    obj_text = _join([object_phrase(objs[k].label, {}) for k in order], rng)
    if rng.random() < 0.7:
        obj_text = "a photo of " + obj_text
    r = rng.random()
    if r < 0.1:                                              # a bare part of one object: "a red roof"
        o = objs[int(rng.integers(len(objs)))]
        part = PARTS[o.label][int(rng.integers(len(PARTS[o.label])))]
        col = o.colors[part]
        part_text = f"{col} {part}" if part in _PLURAL_PARTS else f"{_article(col)} {col} {part}"
    elif r < 0.25:                                           # the scene's own canonical caption
        part_text = scene.caption
    else:
        if rng.random() < 0.5:
            rng.shuffle(order)
        part_text = _join([_part_level_phrase(objs[k].label, objs[k].colors, rng) for k in order], rng)
    if rng.random() < 0.3:
        part_text = "a photo of " + part_text
    return obj_text, part_text


def training_caption(scene: Scene, seed: int = 0) -> str:
    """The part-level caption of :func:`training_captions`."""
    return training_captions(scene, seed)[1]


# ----------------------------------------------------------------------------------------------- data

def image_to_tensor(image, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> torch.Tensor:
    """An RGB PIL image (already at the model's size) as a normalised float (3, H, W) tensor."""
    arr = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (arr - m) / s


class CaptionedScenes(torch.utils.data.Dataset):
    """PartsWorld scenes as (image tensor (3, H, W), token ids (n_captions, context)) for contrastive training."""

    def __init__(self, world: PartsWorld, tokenizer, caption_seed: int = 0,
                 caption_fn: Callable[[Scene, int], Sequence[str]] = training_captions):
        self.world, self.tokenizer, self.caption_seed, self.caption_fn = world, tokenizer, caption_seed, caption_fn

    def __len__(self) -> int:
        return len(self.world)

    def __getitem__(self, i: int):
        scene = self.world[i]
        texts = list(self.caption_fn(scene, self.caption_seed))
        return image_to_tensor(scene.image), self.tokenizer(texts)


# ----------------------------------------------------------------------------------------------- eval

@torch.no_grad()
def zero_shot_accuracy(model, tokenizer, n: int = 200, seed: int = 12345, classes: Sequence[str] = CLASSES,
                       preprocess: Optional[Callable] = None, size: Optional[int] = None,
                       template: str = ZERO_SHOT_TEMPLATE, batch_size: int = 50,
                       return_predictions: bool = False):
    """Zero-shot accuracy over object classes on ``n`` single-object PartsWorld scenes of ``seed``.

    The prompt of each class is ``template.format(class)``. Images go through ``preprocess`` (an open_clip
    transform of a PIL image) when given, otherwise through :func:`image_to_tensor` at ``size`` (default: the
    model's image size). The model is put in eval mode and restored afterwards.
    """
    was_training = model.training
    model.eval()
    if size is None:
        size = _image_size(model)
    world = PartsWorld(n, seed=seed, size=size, n_objects=1, classes=list(classes))
    device = next(model.parameters()).device
    text = model.encode_text(tokenizer([template.format(c) for c in classes]).to(device), normalize=True)
    correct, preds = 0, []
    for start in range(0, n, batch_size):
        scenes = [world[i] for i in range(start, min(start + batch_size, n))]
        if preprocess is not None:
            x = torch.stack([preprocess(s.image) for s in scenes])
        else:
            x = torch.stack([image_to_tensor(s.image) for s in scenes])
        f = model.encode_image(x.to(device), normalize=True)
        p = (f @ text.T).argmax(1).tolist()
        preds += p
        correct += sum(int(classes[k] == s.objects[0].label) for k, s in zip(p, scenes))
    model.train(was_training)
    acc = correct / n
    return (acc, preds) if return_predictions else acc


def _image_size(model) -> int:
    size = getattr(model.visual, "image_size", 224)
    return size[0] if isinstance(size, (tuple, list)) else int(size)


# ----------------------------------------------------------------------------------------------- saving

def save_model(model, model_cfg: Dict[str, Any], out: Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write ``open_clip_config.json`` and ``open_clip_model.safetensors`` (floats cast to ``dtype``)."""
    from safetensors.torch import save_file
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size = model_cfg["vision_cfg"]["image_size"]
    config = {
        "model_cfg": copy.deepcopy(model_cfg),
        "preprocess_cfg": {"size": size, "mode": "RGB", "mean": list(MEAN), "std": list(STD),
                           "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0},
    }
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous()
             for k, v in model.state_dict().items()}
    path = out / "open_clip_model.safetensors"
    save_file(state, str(path), metadata={"format": "pt", "source": "decomviz.train"})
    os.chmod(path, 0o644)
    return path


def load_local(folder: Path):
    """(model, preprocess, tokenizer) through open_clip's own local-dir path (eval mode, fp32)."""
    import open_clip
    folder = str(Path(folder).resolve())
    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + folder)
    tokenizer = open_clip.get_tokenizer("local-dir:" + folder)
    return model.eval(), preprocess, tokenizer


# ----------------------------------------------------------------------------------------------- training

def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def _plan_stages(recipe: Dict[str, Any], steps: int, size: int) -> List[Dict[str, Any]]:
    """Split ``steps`` over the recipe's stages (image size, fraction of the steps, lr scale, warmup).

    Stages before the last may train at a lower resolution (much cheaper on CPU); the last stage trains at
    the model's own ``size``. Scenes of stage k come from ``PartsWorld(seed=seed + 10000 * k)``.
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
                    "lr_scale": float(st.get("lr_scale", 1.0)),
                    "warmup": int(min(st.get("warmup", recipe["warmup"]), max(n // 5, 0))),
                    "scene_seed_offset": 10000 * k})
    return [st for st in out if st["steps"] > 0]


def _resize_state_dict(state: Dict[str, torch.Tensor], model) -> Dict[str, torch.Tensor]:
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
    each stage gets the share of the time that it has of the steps, and its learning rate anneals on whichever
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
    out = Path(out) if out is not None else ASSETS / model
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
            new.load_state_dict(_resize_state_dict(net.state_dict(), new))
        net = (new.to(memory_format=torch.channels_last) if is_resnet else new).to(device)
        net.train()
        decay, no_decay = [], []
        for name, p in net.named_parameters():
            (decay if p.ndim >= 2 and "embedding" not in name and "logit_scale" not in name else no_decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe["weight_decay"]},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), eps=1e-6)
        world = PartsWorld(stage["steps"] * batch_size, seed=stage["scene_seed_offset"] + seed,
                           size=stage["image_size"], n_objects=(1, 3))
        data = CaptionedScenes(world, tokenizer, caption_seed=seed, caption_fn=caption_fn or training_captions)
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False,
                                             num_workers=workers, drop_last=True,
                                             persistent_workers=False, prefetch_factor=4 if workers else None,
                                             pin_memory=device.type == "cuda")
        peak = lr * stage["lr_scale"]
        t_stage = time.time()
        budget = None if max_seconds is None else max_seconds * stage["steps"] / steps
        for i, (images, tokens) in enumerate(loader):
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
                txt_f = net.encode_text(tokens.transpose(0, 1).reshape(nb * nc, -1), normalize=True).float()
            scale = net.logit_scale.exp()
            # each image against each of its captions (object level, part level), averaged
            loss = sum(loss_fn(img_f, txt_f[j * nb:(j + 1) * nb], scale) for j in range(nc)) / nc
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                net.logit_scale.clamp_(0, math.log(100))
            losses.append(float(loss.detach()))
            step += 1
            post = {"px": stage["image_size"], "loss": f"{np.mean(losses[-20:]):.3f}"}
            if eval_every and (step % eval_every == 0 or step == steps or i + 1 == stage["steps"]):
                acc = zero_shot_accuracy(net, tokenizer, n=eval_n, seed=seed + 1000, size=stage["image_size"])
                evals.append({"step": step, "image_size": stage["image_size"], "accuracy": acc})
                net.train()
            if evals:
                post["zs_acc"] = f"{evals[-1]['accuracy']:.3f}"
            bar.set_postfix(post)
            bar.update(1)
        del loader
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
        "train_scenes": {"class": "PartsWorld", "n": step * batch_size, "seed": "seed + 10000 * stage",
                         "size": "per stage", "n_objects": [1, 3], "captions": "decomviz.train.training_captions(scene, seed): object level + part level, losses averaged"},
        "final_loss": float(np.mean(losses[-20:])),
        "losses": [round(v, 5) for v in losses],
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
        path = save_model(net, model_cfg, out)
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


def build_parser(parser: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="decomviz train",
                                          description="Train a bundled PartsWorld CLIP (open_clip local-dir output).")
    p.add_argument("--model", default="parts-rn", choices=sorted(RECIPES), help="training recipe")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the recipe's)")
    p.add_argument("--batch-size", type=int, default=None, help="scenes per step (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0, help="fixes initialisation, scenes, captions and order")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    p.add_argument("--out", default=None, help="output folder (default: decomviz/assets/<model>)")
    p.add_argument("--eval-every", type=int, default=100, help="steps between zero-shot evaluations (0: off)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes drawing scenes")
    p.add_argument("--device", default="cpu", help="cpu or cuda (scenes are drawn on the CPU either way)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop training after this long, then save and evaluate what was trained")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return run_args(args, argv)


def run_args(args: argparse.Namespace, argv: Optional[Sequence[str]] = None) -> int:
    """Run a parsed ``decomviz train`` command line (for a CLI that adds this parser as a sub-command)."""
    command = "decomviz train " + " ".join(shlex.quote(a) for a in (argv or []))
    rec = train(model=args.model, steps=args.steps, batch_size=args.batch_size, seed=args.seed, out=args.out,
                lr=args.lr, eval_every=args.eval_every, progress=not args.no_progress, threads=args.threads,
                workers=args.workers, command=command.strip(), device=args.device,
                max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes)
    out = args.out or str(ASSETS / args.model)
    acc = rec.get("zero_shot_accuracy")
    print(f"saved {out}: final loss {rec['final_loss']:.4f}, zero-shot accuracy "
          f"{'n/a' if acc is None else f'{acc:.3f}'}, {rec['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
