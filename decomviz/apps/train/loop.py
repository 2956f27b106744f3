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
import json
import os
import shlex
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import torch

from ...data import Scene
from .auxiliary import PartColourHead
from .evaluate import zero_shot_accuracy
from .losses import hard_negative_loss, part_example_loss, sibling_part_loss
from .record import training_record
from .recipes import RECIPES, ZERO_SHOT_TEMPLATE
from .saving import load_local, save_model
from .schedule import FIXED_STEP_PIXELS, lr_at, plan_stages, stage_budget
from .stages import Run, encode_text_trimmed, resize_state_dict, run_stage, tap_shape, training_targets

# the pieces of a run, by idea: schedule.py (stages, learning rate, time limit), stages.py (one stage's network,
# optimiser, data and steps), losses.py (a step's loss), record.py (training.json); named here as before
__all__ = ["train", "default_out", "hard_negative_loss", "sibling_part_loss", "part_example_loss",
           "encode_text_trimmed", "training_targets", "tap_shape", "resize_state_dict", "stage_budget",
           "FIXED_STEP_PIXELS", "plan_stages", "lr_at"]
_lr_at, _plan_stages = lr_at, plan_stages


def default_out(model: str) -> Path:
    """Where a run without ``out`` writes: ``trained/<model>`` under the current folder, never the installed
    package (pass its assets folder as ``out`` to replace a bundled model)."""
    return Path.cwd() / "trained" / model


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
    out = Path(out) if out is not None else default_out(model)
    model_cfg = copy.deepcopy(recipe["model_cfg"])
    size = model_cfg["vision_cfg"]["image_size"]
    if command is None:
        command = (f"decomviz train --model {model} --steps {steps} --batch-size {batch_size} --seed {seed} "
                   f"--lr {lr:g} --out {shlex.quote(str(out))}")
    stages = plan_stages(recipe, steps, size)
    if any(st["dense_weight"] > 0 for st in stages) and not recipe.get("dense_layer"):
        raise ValueError(f"recipe {model!r} has a dense_weight but no dense_layer to put the target on")

    t_start = time.time()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    run = Run(recipe=recipe, model_cfg=model_cfg, seed=seed, steps=steps, batch_size=batch_size, lr=lr,
              device=device, tokenizer=open_clip.tokenizer.SimpleTokenizer(context_length=model_cfg["text_cfg"][
                  "context_length"]), clip_loss=open_clip.ClipLoss(), caption_fn=caption_fn, workers=workers,
              eval_every=eval_every, eval_n=eval_n, max_seconds=max_seconds, t_start=t_start)
    if any(st["aux_weight"] > 0 for st in stages):
        run.head = PartColourHead(model_cfg["embed_dim"]).to(device)
    bar = tqdm(total=steps, desc=f"train {model}", disable=not progress, dynamic_ncols=True)
    for k in range(len(stages)):
        run_stage(run, stages, k, bar)
    bar.close()

    record = training_record(run, model, command, stages, time.time() - t_start, threads, deterministic)
    net = run.net
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
