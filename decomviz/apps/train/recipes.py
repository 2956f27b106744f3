"""Training recipes of the bundled PartsWorld CLIPs, by name: data, one JSON file each in ``recipes/``.

A recipe holds ``model_cfg`` (what ``open_clip.CLIP(**model_cfg)`` takes, saved into the model's config), the
optimiser settings (``steps``, ``batch_size``, ``lr``, ``weight_decay``, ``warmup``), optionally ``stages``
(`schedule.plan_stages`), the examples and auxiliary targets, and ``why``: the reasons for its choices, in a few
sentences (how they were reached is in docs/experiments/). ``extends`` names a recipe whose keys it starts from.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
ZERO_SHOT_TEMPLATE = "a photo of a {}"
FOLDER = Path(__file__).resolve().parent / "recipes"


def load_recipes(folder: Path = FOLDER) -> Dict[str, Dict[str, Any]]:
    """Every ``folder/<name>.json`` as a recipe, with ``extends`` resolved."""
    raw = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}

    def resolve(name, seen=()):
        if name in seen:
            raise ValueError(f"Recipe {name!r} extends itself through {' -> '.join(seen)}.")
        recipe = dict(raw[name])
        base = recipe.pop("extends", None)
        if base is None:
            return recipe
        if base not in raw:
            raise ValueError(f"Recipe {name!r} extends {base!r}, which is not in {folder}.")
        return {**resolve(base, seen + (name,)), **recipe}

    return {name: resolve(name) for name in raw}


#: Training recipes by name. ``model_cfg`` goes to ``open_clip.CLIP(**model_cfg)`` and into the saved config.
RECIPES: Dict[str, Dict[str, Any]] = load_recipes()
