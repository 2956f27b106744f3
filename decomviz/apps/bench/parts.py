"""The "parts" section of `decomviz bench`: does the model use parts, and do the maps show the parts it uses?

Model side (no saliency involved): attribute binding (the true colour of a part ranks first among prompts that
differ only in that colour) and part use (removing the named part lowers "the {part} of a {class}" more than
removing any other part of the object). Map side, for every registered method: pointing inside the named part,
single-deletion rank correlation between a map's mass on each part and the parts' importances, mass on parts
the model does not use, and target sensitivity on two-object scenes.
"""
from __future__ import annotations

import time
import warnings
from typing import Dict, List

import numpy as np
import torch

from ... import metrics
from ...data import PALETTE, PartsWorld, object_phrase
from ...ops import resize_masks
from ..evaluation import object_masks, object_prompts
from .sections import COSTLY_METHODS, make_methods

PART_TEMPLATE = "the {part} of a {label}"


def single_object_scenes(n: int, seed: int) -> list:
    """``n`` single-object scenes (a different seed stream from the two-object ones)."""
    return list(PartsWorld(n, seed=seed + 100, n_objects=1))


def _own_parts(scene, j: int = 0):
    return [(i, p) for i, p in enumerate(scene.parts) if p.object == j and p.mask.any()]


@torch.no_grad()
def attribute_binding(model, scenes) -> Dict[str, float]:
    """Share of (scene, part) pairs where "a {class} with a {true colour} {part}" outscores the same prompt with
    every other palette colour. Chance is 1 / len(PALETTE). Also the same share for each object's largest and
    smallest drawn part (by pixels): where binding fails by part size."""
    hits, largest, smallest = [], [], []
    colors = list(PALETTE)
    for scene in scenes:
        emb = model.encode_image([scene.image])
        label = scene.objects[0].label
        own = []
        for _, part in _own_parts(scene):
            text = model.encode_text([object_phrase(label, {part.name: c}) for c in colors])
            own.append((int(part.mask.sum()), colors[int((emb @ text.T).argmax())] == part.color))
        hits += [hit for _, hit in own]
        if len(own) > 1:
            own.sort()
            smallest.append(own[0][1])
            largest.append(own[-1][1])
    return {"attribute_binding": float(np.mean(hits)), "pairs": len(hits), "chance": 1 / len(colors),
            "binding_largest_part": float(np.mean(largest)) if largest else float("nan"),
            "binding_smallest_part": float(np.mean(smallest)) if smallest else float("nan")}


@torch.no_grad()
def colour_sensitivity(model, scenes) -> Dict[str, float]:
    """Does the model see colour at all? Median cosine between the image embeddings of a scene and of the same
    scene with one part recoloured (`Scene.with_part_color`), and median over (scene, part) of the smallest
    cosine among the 12 text embeddings "a {class} with a {colour} {part}". Both near 1: colour-blind, so
    attribute binding cannot rise above chance."""
    colors = list(PALETTE)
    image_cos, text_cos = [], []
    for scene in scenes:
        label = scene.objects[0].label
        for i, part in _own_parts(scene):
            other = colors[(colors.index(part.color) + len(colors) // 2) % len(colors)]
            emb = model.encode_image([scene.image, scene.with_part_color(i, other).image])
            image_cos.append(float(emb[0] @ emb[1]))
            text = model.encode_text([object_phrase(label, {part.name: c}) for c in colors])
            text_cos.append(float((text @ text.T).min()))
    return {"recoloured_image_cosine": float(np.median(image_cos)), "colour_prompt_cosine": float(np.median(text_cos)),
            "pairs": len(image_cos)}


def part_use(model, scenes) -> Dict[str, float]:
    """Share of (scene, part) pairs where removing the named part lowers "the {part} of a {class}" more than
    removing any other part of the object."""
    hits = []
    for scene in scenes:
        label = scene.objects[0].label
        parts = _own_parts(scene)
        if len(parts) < 2:
            continue
        for i, part in parts:
            imp = metrics.part_importance(model, scene, PART_TEMPLATE.format(part=part.name, label=label)).values
            hits.append(int(imp.argmax()) == i)
    return {"part_use": float(np.mean(hits)) if hits else float("nan"), "pairs": len(hits)}


def part_maps(model, cams, scenes, scorecam_scenes: int, log) -> Dict[str, Dict]:
    """Per method, on part prompts of single-object scenes: pointing inside the named part, deletion rank
    correlation with the part importances, and mass on unused parts."""
    rows = {}
    # importances depend on the model and prompt only: measure once, share between methods
    cases = []
    for scene in scenes:
        label = scene.objects[0].label
        parts = _own_parts(scene)
        masks = np.stack([p.mask for _, p in parts])
        for k, (i, part) in enumerate(parts):
            prompt = PART_TEMPLATE.format(part=part.name, label=label)
            imp = metrics.part_importance(model, scene, prompt).values[[i for i, _ in parts]]
            cases.append((scene, prompt, masks, k, imp.numpy()))
    for name, cam in cams.items():
        allowed = {id(s) for s in (scenes[:scorecam_scenes] if name in COSTLY_METHODS else scenes)}
        acc = {"part_pointing": [], "deletion_rank_correlation": [], "background_mass": []}
        seconds = 0.0
        for scene, prompt, masks, k, imp in cases:
            if id(scene) not in allowed:
                continue
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sal = cam(scene.image, prompt).saliency[0, 0]
            seconds += time.perf_counter() - t0
            m = resize_masks(masks, sal.shape[-2:])
            acc["part_pointing"].append(float(metrics.pointing_game(sal, m[k]).values))
            shares = metrics.part_mass(sal, m).numpy()
            acc["deletion_rank_correlation"].append(metrics.deletion_rank_correlation(shares, imp))
            acc["background_mass"].append(metrics.background_mass(shares, imp))
        rows[name] = {k: float(np.nanmean(v)) if v else float("nan") for k, v in acc.items()}
        rows[name].update(pairs=len(acc["part_pointing"]), seconds_per_pair=seconds / max(len(acc["part_pointing"]), 1))
        log(f"  {name:26s} part pointing {rows[name]['part_pointing']:.3f}  rank corr "
            f"{rows[name]['deletion_rank_correlation']:.3f}  unused-part mass {rows[name]['background_mass']:.3f}"
            f"  (n={rows[name]['pairs']})")
    return rows


def target_sensitivity(cams, scenes, scorecam_scenes: int) -> Dict[str, float]:
    """Per method, on two-object scenes: share of (scene, object) where the map for A puts more mass on A than
    the map for B does."""
    out = {}
    for name, cam in cams.items():
        use = scenes[:scorecam_scenes] if name in COSTLY_METHODS else scenes
        hits: List[bool] = []
        for scene in use:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sal = cam(scene.image, object_prompts(scene)).saliency[0]
            masks = object_masks(scene, sal.shape[-2:])
            hits += [metrics.target_sensitivity(sal[0], sal[1], masks[0]),
                     metrics.target_sensitivity(sal[1], sal[0], masks[1])]
        out[name] = float(np.mean(hits)) if hits else float("nan")
    return out


def parts_section(model, two_object, cfg: Dict, seed: int, log) -> Dict:
    """The whole section; ``cfg["part_scenes"]`` single-object scenes, the first ``cfg["ablation_scenes"]``
    two-object scenes for target sensitivity."""
    singles = single_object_scenes(cfg["part_scenes"], seed)
    binding, use = attribute_binding(model, singles), part_use(model, singles)
    # both count their prompts as "pairs": keep each count under its own name
    out = {"model": {**binding, **use, "binding_pairs": binding["pairs"], "part_use_pairs": use["pairs"]}}
    log(f"  attribute binding {out['model']['attribute_binding']:.3f} (chance {out['model']['chance']:.3f}), "
        f"part use {out['model']['part_use']:.3f}")
    cams = make_methods(model)
    out["maps"] = part_maps(model, cams, singles, cfg["scorecam_scenes"], log)
    sens = target_sensitivity(cams, two_object[:cfg["ablation_scenes"]], cfg["scorecam_scenes"])
    for name, v in sens.items():
        out["maps"][name]["target_sensitivity"] = v
    return out


def parts_markdown(entry: Dict) -> List[str]:
    m = entry["model"]
    lines = ["", f"Attribute binding {m['attribute_binding']:.3f} ({m['binding_pairs']} part prompts; chance "
                 f"{m['chance']:.3f}; on each object's largest part {m['binding_largest_part']:.3f}, on its smallest "
                 f"{m['binding_smallest_part']:.3f}), part use {m['part_use']:.3f} ({m['part_use_pairs']} prompts).", "",
             "| method (part prompts) | pointing in the named part | deletion rank correlation | mass on unused parts "
             "| target sensitivity | pairs |", "|---|---|---|---|---|---|"]
    for name, r in entry["maps"].items():
        lines.append(f"| {name} | {r['part_pointing']:.3f} | {r['deletion_rank_correlation']:.3f} | "
                     f"{r['background_mass']:.3f} | {r.get('target_sensitivity', float('nan')):.3f} | {r['pairs']} |")
    return lines
