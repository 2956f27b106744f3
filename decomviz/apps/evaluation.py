"""Localisation on PartsWorld: explain each object of each scene by name and score the maps on its mask."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List

import numpy as np
import torch

from ..metrics import energy_pointing_game, pointing_game
from ..ops import resize_masks

OBJECT_TEMPLATE = "a photo of a {}"
PART_TEMPLATE = "the {part} of a {label}"


@dataclass
class LocalisationResult:
    """Per method: pointing-game hits and energy shares for every (scene, object), and time per pair."""

    method: str
    hits: List[float] = field(default_factory=list)
    energy: List[float] = field(default_factory=list)
    seconds: float = 0.0
    pairs: int = 0

    @property
    def pointing(self) -> float:
        return float(np.mean(self.hits)) if self.hits else float("nan")

    @property
    def mean_energy(self) -> float:
        return float(np.mean(self.energy)) if self.energy else float("nan")

    @property
    def seconds_per_pair(self) -> float:
        return self.seconds / max(self.pairs, 1)

    def row(self) -> Dict[str, float]:
        return {"method": self.method, "pointing_game": self.pointing, "energy_pointing_game": self.mean_energy,
                "n": len(self.hits), "seconds_per_pair": self.seconds_per_pair}


def two_object_scenes(n: int, seed: int) -> List:
    """The first ``n`` two-object PartsWorld scenes of ``seed`` whose objects differ in class (so that
    "a photo of a {class}" names one object)."""
    from ..data import PartsWorld
    world = PartsWorld(n * 2, seed=seed, n_objects=2)
    out = []
    for scene in world:
        labels = [o.label for o in scene.objects]
        if len(set(labels)) == len(labels):
            out.append(scene)
        if len(out) == n:
            break
    return out


def object_masks(scene, size) -> torch.Tensor:
    """The scene's object masks (N, H, W) at the explained size."""
    return resize_masks(np.stack([o.mask for o in scene.objects]), size)


def object_prompts(scene, template: str = OBJECT_TEMPLATE) -> List[str]:
    return [template.format(o.label) for o in scene.objects]


def localise(cams: Dict[str, object], scenes: Iterable, template: str = OBJECT_TEMPLATE,
             tolerance: int = 15, on_scene=None) -> Dict[str, LocalisationResult]:
    """Explain every object of every scene ("a photo of a {class}") with each method; score on its mask.

    Scenes whose objects share a class are skipped (the prompt would name both). `on_scene(i, scene, exps)`
    is called after each scene with the explanations of every method (for reports and progress).
    """
    results = {name: LocalisationResult(name) for name in cams}
    for i, scene in enumerate(scenes):
        labels = [o.label for o in scene.objects]
        if len(set(labels)) != len(labels):
            continue
        prompts = object_prompts(scene, template)
        exps = {}
        for name, cam in cams.items():
            t0 = time.perf_counter()
            exp = cam(scene.image, prompts)
            results[name].seconds += time.perf_counter() - t0
            results[name].pairs += len(prompts)
            sal = exp.saliency[0]  # (T, H, W), one prompt per object
            m = object_masks(scene, sal.shape[-2:])
            results[name].hits += pointing_game(sal, m, tolerance).values.tolist()
            results[name].energy += energy_pointing_game(sal, m).values.tolist()
            exps[name] = exp
        if on_scene is not None:
            on_scene(i, scene, exps)
    return results


def format_table(results: Dict[str, LocalisationResult]) -> str:
    lines = [f"{'method':26s} {'pointing':>9s} {'energy':>8s} {'pairs':>6s} {'s/pair':>8s}"]
    for r in results.values():
        lines.append(f"{r.method:26s} {r.pointing:9.3f} {r.mean_energy:8.3f} {len(r.hits):6d} {r.seconds_per_pair:8.3f}")
    return "\n".join(lines)
