"""The schedule of a training run: its stages (image size, steps, examples, weights), the learning rate within a
stage, and each stage's share of a time limit."""
from __future__ import annotations

import math
from typing import Any, Dict, List


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warmup over ``warmup`` steps, then a cosine from ``lr`` down to 0 at ``steps``."""
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def plan_stages(recipe: Dict[str, Any], steps: int, size: int) -> List[Dict[str, Any]]:
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
