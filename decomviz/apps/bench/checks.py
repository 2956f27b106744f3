"""Bench sections that check what the maps mean: the class-discriminative (softmax) score beside the cosine, and
the cascading randomisation sanity check, for every registered method."""
from __future__ import annotations

import warnings
from typing import Dict, List

import numpy as np

from ... import metrics
from ...methods.registry import make_method
from ..evaluation import object_masks, object_prompts
from .sections import COSTLY_METHODS, bench_methods


def _knobs(name: str, **extra) -> Dict:
    return {**({"batch_size": 64} if name in COSTLY_METHODS else {}), **extra}


def softmax_localisation(model, scenes, costly_scenes: int, log, methods=None) -> Dict[str, Dict]:
    """Pointing and energy on two-object scenes with ``score="softmax"``: each object's prompt competes with the
    other object's prompt (both are explained in one call), so the map must show what tells them apart."""
    rows = {}
    for name in bench_methods(model, methods):  # the attention methods on ViTs only
        cam = make_method(name, model, **_knobs(name, score="softmax"))
        use = scenes[:costly_scenes] if name in COSTLY_METHODS else scenes
        hits: List[float] = []
        energy: List[float] = []
        for scene in use:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sal = cam(scene.image, object_prompts(scene)).saliency[0]
            m = object_masks(scene, sal.shape[-2:])
            hits += metrics.pointing_game(sal, m).values.tolist()
            energy += metrics.energy_pointing_game(sal, m).values.tolist()
        rows[name] = {"pointing_game": float(np.mean(hits)), "energy_pointing_game": float(np.mean(energy)),
                      "pairs": len(hits)}
        log(f"  {name:26s} softmax: pointing {rows[name]['pointing_game']:.3f}  energy "
            f"{rows[name]['energy_pointing_game']:.3f}  (n={len(hits)})")
    return rows


def sanity(model, scenes, steps: int, log, methods=None) -> Dict[str, Dict]:
    """Cascading randomisation of the top ``steps`` blocks of the image tower, per method: the mean Spearman
    correlation of the maps with the trained model's after each step (a method that passes falls well below 1)."""
    rows = {}
    images = [s.image for s in scenes]
    prompts = object_prompts(scenes[0])[:1]
    for name in bench_methods(model, methods):  # the attention methods on ViTs only
        use = images[:1] if name in COSTLY_METHODS else images
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = metrics.sanity_check(lambda m: make_method(name, m, **_knobs(name)), model, use, prompts,
                                       steps=steps)
        rows[name] = {"blocks": res.protocol["randomised_from_top"], "spearman": [float(v) for v in res.values],
                      "images": len(use)}
        log(f"  {name:26s} sanity: " + "  ".join(f"{b} {v:.3f}" for b, v in zip(rows[name]["blocks"],
                                                                                 rows[name]["spearman"])))
    return rows


def checks_markdown(entry: Dict) -> List[str]:
    lines = []
    if "softmax_localisation" in entry:
        cos = entry.get("localisation", {})
        lines += ["", "| method | pointing, cosine | pointing, softmax over the scene's prompts | energy, softmax "
                      "| pairs |", "|---|---|---|---|---|"]
        for name, r in entry["softmax_localisation"].items():
            c = cos.get(name, {}).get("pointing_game", float("nan"))
            lines.append(f"| {name} | {c:.3f} | {r['pointing_game']:.3f} | {r['energy_pointing_game']:.3f} "
                         f"| {r['pairs']} |")
    if "sanity" in entry:
        first = next(iter(entry["sanity"].values()))
        lines += ["", "| method (Spearman with the trained model's maps) | " + " | ".join(
            f"up to {b}" for b in first["blocks"]) + " |", "|---|" + "---|" * len(first["blocks"])]
        for name, r in entry["sanity"].items():
            lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in r["spearman"]) + " |")
    return lines
