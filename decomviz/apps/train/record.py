"""The training record: how a model was trained (command, seed, recipe, stages, losses, evaluations, machine),
written beside the weights as training.json."""
from __future__ import annotations

import os
import platform
import sys
from typing import Any, Dict, List

import numpy as np
import torch

from .captions import PART_EXAMPLE_LAYOUT
from .recipes import ZERO_SHOT_TEMPLATE


def training_record(run, model: str, command: str, stages: List[Dict[str, Any]], train_time: float,
                    threads: int, deterministic: bool) -> Dict[str, Any]:
    """The record of a finished `stages.Run` (before saving: `train` adds the weights and the final evaluation)."""
    import open_clip
    recipe, log, device = run.recipe, run.log, run.device
    return {
        "model": model,
        "command": command,
        "argv": list(sys.argv),
        "seed": run.seed,
        "steps": run.step,
        "batch_size": run.batch_size,
        "lr": run.lr,
        "weight_decay": recipe["weight_decay"],
        "warmup": recipe["warmup"],
        "stages": stages,
        "train_scenes": {"class": "PartsWorld", "n_images": run.step * run.batch_size,
                         "pairs": "a parts stage draws two variants of each scene", "seed": "seed + 10000 * stage",
                         "size": "per stage", "n_objects": list(recipe.get("n_objects", (1, 3))),
                         "captions": {
                             "parts": "decomviz.apps.train.part_examples(scene, seed, variant), two variants of "
                                      "each scene side by side: " + ", ".join(PART_EXAMPLE_LAYOUT)
                                      + "; decomviz.apps.train.loop.part_example_loss",
                             "captions": "decomviz.apps.train.training_captions(scene, seed): object level + part "
                                         "level, losses averaged"},
                         "examples_by_stage": [st["examples"] for st in stages]},
        "final_loss": float(np.mean(log["losses"][-20:])),
        "losses": [round(v, 5) for v in log["losses"]],
        "aux_weight": float(recipe.get("aux_weight", 0.0)),
        "aux_weight_by_stage": [st["aux_weight"] for st in stages],
        "object_weight": float(recipe.get("object_weight", 1.0)),
        "aux_losses": [round(v, 5) for v in log["aux_losses"]],
        "dense_layer": recipe.get("dense_layer") if run.dense_head is not None else None,
        "dense_weight_by_stage": [st["dense_weight"] for st in stages],
        "dense_losses": [round(v, 5) for v in log["dense_losses"]],
        "auxiliary": ("decomviz.apps.train.auxiliary: a linear head on the normalised image embedding (scaled by "
                      "sqrt(D)) predicts each drawn part's colour among the palette's; cross-entropy, added to "
                      "each step's loss times aux_weight; the head is not saved") if run.head is not None else None,
        "lrs": [float(f"{v:.4g}") for v in log["lrs"]],
        "evals": run.evals,
        "eval_scenes": {"n": run.eval_n, "seed": run.seed + 1000, "n_objects": 1, "template": ZERO_SHOT_TEMPLATE},
        "train_seconds": round(train_time, 1),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "stopped_early": run.stopped_early,
        "threads": threads,
        "workers": run.workers,
        "deterministic": deterministic,
        "n_parameters": int(sum(p.numel() for p in run.net.parameters())),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
