"""Do DecomCAM's components follow object parts? The paper's SVD, the NMF split and dataset-level concepts, on
unseen PartsWorld scenes, against the controls of `decomviz.metrics.part_study`; and do part prompts move the map?

Everything that is chosen (the number of components of each split, the concepts' count and whether they are fitted
per class) is chosen on scenes of ``--choose-seed`` and reported on scenes of ``--seed``, which nothing chose on.

    python benchmarks/bench_part_splits.py --models parts-rn parts-rn-dense parts-vit --scenes 60 \\
        --out benchmarks/results/part-splits.json

Prints one markdown table per question and writes every figure, with the command, date, commit and machine, as JSON.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List

import numpy as np
import torch

import decomviz as dv
from decomviz.analysis.concepts import ConceptBasis
from decomviz.metrics.part_study import PartObject, part_study
from decomviz.ops import resize_masks

CLASS_TEMPLATE = "a photo of a {}"
PART_TEMPLATE = "the {part} of a {label}"
POINTING_METHODS = ("decomcam", "decomcam-nmf", "gradcam", "gradcam++", "layercam", "occlusion",
                    "legrad", "grad-eclip", "chefer", "rollout")


def single_object_scenes(n: int, seed: int) -> list:
    return list(dv.PartsWorld(n, seed=seed, n_objects=1))


def own_parts(scene):
    return [p for p in scene.parts if p.object == 0 and p.mask.any()]


def objects_of(scenes) -> List[PartObject]:
    out = []
    for s in scenes:
        label = s.objects[0].label
        out.append(PartObject.from_masks(label, {f"{label}/{p.name}": p.mask for p in own_parts(s)}))
    return out


def kmeans_cells(k: int):
    """A hard split given to DecomCAM as a function (not a built-in option): the grid cells clustered by k-means on
    their (L2-normalised) positive gradient-weighted channel vectors; component j is cluster j's cells, each
    weighted by its positive evidence. It asks whether cells alike in features make up parts."""
    from sklearn.cluster import KMeans

    def split(X):
        Xp = X.clamp_min(0)
        N, n, _ = Xp.shape
        out = torch.zeros(N, k, n)
        for i in range(N):
            feats = torch.nn.functional.normalize(Xp[i], dim=1).numpy().astype(np.float64)
            lab = KMeans(min(k, n), n_init=3, random_state=0).fit_predict(feats)
            out[i, torch.from_numpy(lab), torch.arange(n)] = Xp[i].sum(1)
        return out
    split.__qualname__ = f"kmeans_cells({k})"
    return split


SPLITS = {"svd": lambda k: "svd", "nmf": lambda k: "nmf", "kmeans-cells": kmeans_cells}


def split_maps(model, scenes, decomposition: str, k: int):
    """The class prompt's low-resolution component maps of every scene, and the layer's grid."""
    cam = dv.DecomCAM(model, decomposition=SPLITS[decomposition](k), n_components=k)
    maps, grid = [], None
    for s in scenes:
        e = cam(s.image, CLASS_TEMPLATE.format(s.objects[0].label))
        maps.append(e.ossms_lowres[0, 0].numpy())
        grid = tuple(e.params["grid"])
    return maps, grid


def one_colour(scene):
    """The scene with every part of its object repainted in the colour of its first part: on PartsWorld each part
    has its own colour, so within one image a split by colour is a split by parts; this control tells them apart."""
    own = [i for i, p in enumerate(scene.parts) if p.object == 0]
    for i in own[1:]:
        scene = scene.with_part_color(i, scene.parts[own[0]].color)
    return scene


def within_image_study(model, scenes, ks: Dict[str, int]):
    """The part study of each split at its own number of components, with the controls at the first split's, and
    each split again on the same objects painted in one colour (row "split, one colour")."""
    objects = objects_of(scenes)
    plain = [one_colour(s) for s in scenes]
    rows = {}
    for split, k in ks.items():
        maps, grid = split_maps(model, scenes, split, k)
        study = part_study(objects, {split: maps}, k, grid)
        rows[split] = study[split]
        rows[f"{split}, one colour"] = part_study(objects, {split: split_maps(model, plain, split, k)[0]}, k,
                                                  grid)[split]
        for name, row in study.items():
            if name.startswith("control:") and "shuffled" not in name:
                rows[f"{name} [k={k}]" if "position" in name else name] = row
    return rows


def choose_components(model, scenes, choices=(4, 6, 8)) -> Dict[str, Dict]:
    """Per split, the number of components with the largest margin over the position partition (same k) in
    within-image part NMI, on the choosing scenes."""
    objects = objects_of(scenes)
    out = {}
    for split in SPLITS:
        margins = {}
        for k in choices:
            maps, grid = split_maps(model, scenes, split, k)
            study = part_study(objects, {split: maps}, k, grid)
            margins[k] = study[split]["within_image_nmi"] - study[f"control: position partition (k={k})"][
                "within_image_nmi"]
        best = max(margins, key=margins.get)
        out[split] = {"k": best, "margins": {str(k): round(v, 4) for k, v in margins.items()}}
    return out


def choose_concepts(model, fit_scenes, eval_scenes, choices=(4, 6, 8)) -> Dict:
    """The concepts' strategy (one NMF over the dataset's cells, or each image's NMF components clustered), count,
    whether they are fitted per class and whether on cell directions (normalize_cells), and how a scored image is
    coded (each cell on the concepts, or the image's own NMF components matched to them), with the largest margin
    over the position partition (same k) in within-class part NMI, on the choosing scenes."""
    best, margins = None, {}
    variants = [("dataset", False, "cells"), ("dataset", True, "cells"),
                ("image-parts", True, "cells"), ("image-parts", True, "image-parts")]  # image-parts: directions
    for strategy, normalize, coding in variants:
        for per_class in (False, True):
            for k in choices:
                basis = ConceptBasis(model, n_concepts=k, per_class=per_class, random_state=0,
                                     normalize_cells=normalize, strategy=strategy, coding=coding).fit(fit_scenes)
                rep = basis.part_report(eval_scenes)
                m = rep["concepts"]["within_class_nmi"] - rep[f"control: position partition (k={k})"][
                    "within_class_nmi"]
                margins[concept_label(per_class, k, normalize, strategy, coding)] = round(m, 4)
                if best is None or m > best[0]:
                    best = (m, per_class, k, normalize, strategy, coding)
    return {"per_class": best[1], "n_concepts": best[2], "normalize_cells": best[3], "strategy": best[4],
            "coding": best[5], "margins": margins}


def concept_label(per_class: bool, k: int, normalize: bool = False, strategy: str = "dataset",
                  coding: str = "cells") -> str:
    coded = "; each scored image's own NMF components matched to them" if coding == "image-parts" else ""
    if strategy == "image-parts":
        return f"{'per class' if per_class else 'shared'}, k={k}, each image's NMF components clustered{coded}"
    return f"{'per class' if per_class else 'shared'}, k={k}" + (", cell directions" if normalize else "") + coded


def concepts_study(model, fit_scenes, report_scenes, per_class: bool, k: int, normalize: bool = False,
                   strategy: str = "dataset", coding: str = "cells") -> Dict:
    """The concepts' part report on the report scenes, and (row "concepts, one colour") the same concepts on the
    same objects with every part in one colour."""
    basis = ConceptBasis(model, n_concepts=k, per_class=per_class, random_state=0, normalize_cells=normalize,
                         strategy=strategy, coding=coding).fit(fit_scenes)
    rows = dict(basis.part_report(report_scenes))
    rows["concepts, one colour"] = basis.part_report([one_colour(s) for s in report_scenes])["concepts"]
    rows["concepts against the parts' colours"] = basis.part_report(colour_items(report_scenes))["concepts"]
    return rows


def colour_items(scenes):
    """The scenes as dataset items whose parts are named by their colour ("house/red"), not their name: a part's
    colour is drawn at random in each scene, so labels that follow colours across images score high against these
    and labels that follow parts score low."""
    out = []
    for s in scenes:
        cls = s.objects[0].label
        parts = {}
        for p in s.parts:
            if p.object == 0 and p.mask.any():
                key = f"{cls}/{p.color}"
                parts[key] = parts[key] | p.mask if key in parts else p.mask
        out.append(SimpleNamespace(image=s.image, labels=[cls], parts=parts, error=None))
    return out


#: How part prompts are scored for their maps: each prompt's cosine alone, or the softmax over the object's prompts
#: (its class prompt and one prompt per part: "why the roof rather than the walls or the house as a whole").
POINTING_SCORES = ("cosine", "softmax")
#: The splits whose part-pointing score is chosen on the choosing scenes (the issue's bar asks for one split).
SPLIT_METHODS = ("decomcam", "decomcam-nmf")


def _pointing_method(name, model, ks, score):
    knobs = {"score": score}
    if name == "decomcam":
        knobs["n_components"] = ks["svd"]
    if name == "decomcam-nmf":
        knobs["n_components"] = ks["nmf"]
    return dv.make_method(name, model, **knobs)


def part_pointing(model, scenes, names, ks: Dict[str, int], log, scores=POINTING_SCORES) -> Dict[str, Dict]:
    """Per method and score: how often the map of "the {part} of a {class}" peaks inside the named part (15 px at
    224 px), and how often the class prompt's map does on the same part. The class prompt's map is always its
    cosine map (the baseline a user starts from); rows are named "method" (cosine) and "method (softmax)"."""
    out = {}
    for name in names:
        if name not in dv.METHODS:
            continue
        try:
            methods = {score: _pointing_method(name, model, ks, score) for score in scores}
            if "cosine" not in methods:
                methods["cosine"] = _pointing_method(name, model, ks, "cosine")
        except (ValueError, TypeError) as err:  # a method that does not apply to this tower
            log(f"  {name}: not run ({str(err).splitlines()[0][:100]})")
            continue
        hits = {score: [] for score in scores}
        class_hits, seconds, pairs = [], {score: 0.0 for score in scores}, 0
        for s in scenes:
            label = s.objects[0].label
            parts = own_parts(s)
            prompts = [CLASS_TEMPLATE.format(label)] + [PART_TEMPLATE.format(part=p.name, label=label) for p in parts]
            sal = {}
            for score, method in methods.items():
                t0 = time.perf_counter()
                sal[score] = method(s.image, prompts).saliency[0]
                if score in seconds:
                    seconds[score] += time.perf_counter() - t0
            pairs += len(prompts)
            masks = resize_masks(np.stack([p.mask for p in parts]), sal["cosine"].shape[-2:])
            for i in range(len(parts)):
                class_hits.append(float(dv.metrics.pointing_game(sal["cosine"][0], masks[i]).values))
                for score in scores:
                    hits[score].append(float(dv.metrics.pointing_game(sal[score][1 + i], masks[i]).values))
        for score in scores:
            row = name if score == "cosine" else f"{name} ({score})"
            out[row] = {"part_prompt_pointing": float(np.mean(hits[score])),
                        "class_prompt_pointing_same_part": float(np.mean(class_hits)),
                        "lift": float(np.mean(hits[score]) - np.mean(class_hits)),
                        "standard_error": float(np.std(hits[score]) / np.sqrt(len(hits[score]))),
                        "part_prompts": len(hits[score]), "seconds_per_pair": seconds[score] / max(pairs, 1),
                        "method": name, "score": score}
            log(f"  {row:26s} part prompt {out[row]['part_prompt_pointing']:.3f}  class prompt "
                f"{out[row]['class_prompt_pointing_same_part']:.3f}  lift {out[row]['lift']:+.3f}  "
                f"({len(hits[score])} parts, {out[row]['seconds_per_pair']:.3f} s/pair)")
    return out


def choose_pointing_score(model, scenes, ks: Dict[str, int], log) -> Dict[str, str]:
    """Per split, the score whose part prompts peak inside the named part most often on the choosing scenes."""
    rows = part_pointing(model, scenes, SPLIT_METHODS, ks, lambda m: log("  (choosing)" + m[1:]))
    out = {}
    for name in SPLIT_METHODS:
        mine = {r["score"]: r["part_prompt_pointing"] for r in rows.values() if r["method"] == name}
        if mine:
            out[name] = max(mine, key=mine.get)
    return out


def split_timing(model, scenes, ks: Dict[str, int], repeats: int = 3) -> Dict:
    """Seconds of one DecomCAM call (one image, two prompts) with each split, calls interleaved so that both see
    the same machine load; medians."""
    k = max(ks["svd"], ks["nmf"])
    cams = {split: dv.DecomCAM(model, decomposition=split, n_components=k) for split in ("svd", "nmf")}
    times = {split: [] for split in cams}
    for s in scenes:
        prompts = [CLASS_TEMPLATE.format(s.objects[0].label), "a photo of a tree"]
        for _ in range(repeats):
            for split, cam in cams.items():
                t0 = time.perf_counter()
                cam(s.image, prompts)
                times[split].append(time.perf_counter() - t0)
    med = {split: float(np.median(v)) for split, v in times.items()}
    return {"svd_seconds": med["svd"], "nmf_seconds": med["nmf"], "ratio": med["nmf"] / med["svd"],
            "calls": len(times["svd"]), "n_components": k}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_model(name: str, args, log) -> Dict:
    model = dv.load_model(name)
    log(f"== {name} (layer {model.default_layer})")
    if args.timing_only:  # the cost alone, at the components DecomCAM uses by default
        entry = {"layer": model.default_layer,
                 "timing": split_timing(model, single_object_scenes(args.timing_scenes, args.seed), {"svd": 10, "nmf": 10})}
        log(f"  NMF / SVD call: {entry['timing']['ratio']:.2f}x ({entry['timing']['nmf_seconds']:.3f} s against "
            f"{entry['timing']['svd_seconds']:.3f} s)")
        return entry
    choose = single_object_scenes(args.scenes, args.choose_seed)
    fit = single_object_scenes(args.fit_scenes, args.fit_seed)
    report = single_object_scenes(args.scenes, args.seed)
    chosen = choose_components(model, choose)
    ks = {split: chosen[split]["k"] for split in SPLITS}
    log(f"  chosen on seed {args.choose_seed}: {chosen}")
    concept_choice = choose_concepts(model, fit, choose)
    log(f"  concepts chosen on seed {args.choose_seed}: {concept_choice}")
    entry = {"layer": model.default_layer, "chosen": {"components": chosen, "concepts": concept_choice}}
    entry["within_image"] = within_image_study(model, report, ks)
    for row, r in entry["within_image"].items():
        log(f"  {row:52s} within image {r['within_image_nmi']:.3f}  within class {r['within_class_nmi']:.3f}  "
            f"pooled {r['pooled_nmi']:.3f}  best part {r['best_part_share']:.3f}")
    entry["concepts"] = concepts_study(model, fit, report, concept_choice["per_class"], concept_choice["n_concepts"],
                                       concept_choice.get("normalize_cells", False),
                                       concept_choice.get("strategy", "dataset"),
                                       concept_choice.get("coding", "cells"))
    for row, r in entry["concepts"].items():
        log(f"  concepts: {row:42s} within image {r['within_image_nmi']:.3f}  within class "
            f"{r['within_class_nmi']:.3f}  pooled {r['pooled_nmi']:.3f}")
    entry["chosen"]["pointing_score"] = choose_pointing_score(model, choose[:args.pointing_scenes], ks, log)
    log(f"  part-pointing score chosen on seed {args.choose_seed}: {entry['chosen']['pointing_score']}")
    entry["pointing"] = part_pointing(model, report[:args.pointing_scenes], args.methods, ks, log)
    entry["timing"] = split_timing(model, report[:args.timing_scenes], ks)
    log(f"  NMF / SVD call: {entry['timing']['ratio']:.2f}x ({entry['timing']['nmf_seconds']:.3f} s against "
        f"{entry['timing']['svd_seconds']:.3f} s)")
    return entry


def write_section(raw_files: List[str], out: str, machine_note: str = "") -> None:
    """BENCHMARKS.md's section (a ``benchmarks/results/*.json`` with question, command, date, commit, machine and
    the tables as Markdown blocks) from the raw results of one or more runs of this script."""
    runs = [json.loads(Path(f).read_text()) for f in raw_files]
    merged = {"models": {name: e for r in runs for name, e in r["models"].items()}}
    commands = "\n".join(r["meta"]["command"] for r in runs)
    seeds = runs[0]["meta"]["seeds"]
    section = {
        "order": 3.5, "title": "Do components follow parts? Splits, concepts and part prompts",
        "question": "Does a split of DecomCAM's evidence (the paper's SVD, the NMF, a hard split of the cells) or a "
                    "dataset-level concept basis follow object parts better than a split of the object by position "
                    "alone, and do part prompts move the map onto the named part?",
        "command": commands, "date": runs[-1]["meta"]["date"], "commit": runs[-1]["meta"]["commit"],
        "machine": runs[-1]["meta"]["machine"] + (f"; {machine_note}" if machine_note else ""),
        "blocks": [f"Single-object PartsWorld scenes. Each split's number of components, and the concepts' count, "
                   "strategy, whether they are fitted per class and whether on cell directions, were chosen on scenes "
                   "of seed "
                   f"{seeds['choose']} (largest margin over the position partition), and so was the score of each "
                   "split's part prompts (its cosine alone, or the softmax over the object's prompts: why this part "
                   "rather than the object's other parts or the object as a whole; most part prompts peaking inside "
                   f"their part); the figures are on scenes of seed {seeds['report']}; the concepts are fitted on "
                   f"scenes of seed {seeds['fit']}. \"Each object in one colour\": the same objects with every "
                   "part repainted in one colour (on PartsWorld each part has its own colour, so within one image a "
                   "split by colour is also a split by parts; this control tells them apart). Raw results: "
                   "`benchmarks/results/part-splits/`.",
                   markdown(merged)],
    }
    Path(out).write_text(json.dumps(section, indent=1) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["parts-rn", "parts-rn-dense", "parts-vit"])
    p.add_argument("--scenes", type=int, default=60, help="single-object scenes to choose on, and to report on")
    p.add_argument("--fit-scenes", type=int, default=120, help="scenes the concepts are fitted on")
    p.add_argument("--pointing-scenes", type=int, default=40, help="scenes of the part-prompt pointing")
    p.add_argument("--timing-scenes", type=int, default=6)
    p.add_argument("--seed", type=int, default=2027, help="the scenes reported on (nothing is chosen on them)")
    p.add_argument("--choose-seed", type=int, default=2026, help="the scenes the knobs are chosen on")
    p.add_argument("--fit-seed", type=int, default=2025, help="the scenes the concepts are fitted on")
    p.add_argument("--methods", nargs="+", default=list(POINTING_METHODS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timing-only", action="store_true", help="measure the NMF / SVD call cost alone (quiet cores)")
    p.add_argument("--out", default="benchmarks/results/part-splits.json")
    p.add_argument("--section", nargs="+", metavar="RAW.json",
                   help="write BENCHMARKS.md's section to --out from these raw results, and run nothing")
    p.add_argument("--machine-note", default="", help="with --section: what to add to the machine's line (e.g. "
                   "that its cores were shared, so that the seconds are indicative)")
    args = p.parse_args(argv)
    if args.section:
        write_section(args.section, args.out, args.machine_note)
        return 0
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")

    def log(msg):
        print(msg, flush=True)

    results = {"meta": {"command": "python benchmarks/bench_part_splits.py " + " ".join(sys.argv[1:] if argv is None
                                                                                        else argv),
                        "date": datetime.date.today().isoformat(), "commit": commit(), "machine": machine(),
                        "seeds": {"report": args.seed, "choose": args.choose_seed, "fit": args.fit_seed}},
               "models": {}}
    for name in args.models:
        results["models"][name] = run_model(name, args, log)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    print()
    print(markdown(results))
    return 0


def markdown(results: Dict) -> str:
    """The tables of BENCHMARKS.md's parts section, from the JSON this script writes."""
    lines = ["| model | split (k) | within-image part NMI | position partition (same k) | margin | each object in one "
             "colour | margin | within-class NMI | ceiling (true parts at the grid) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, e in results["models"].items():
        if "within_image" not in e:
            continue
        wi = e["within_image"]
        ceiling = next(r for n, r in wi.items() if "ceiling" in n)["within_image_nmi"]
        for split in e["chosen"]["components"]:
            k = e["chosen"]["components"][split]["k"]
            pos = wi[f"control: position partition (k={k}) [k={k}]"]["within_image_nmi"]
            mono = wi.get(f"{split}, one colour", {}).get("within_image_nmi", float("nan"))
            lines.append(f"| {name} | {split} ({k}) | {wi[split]['within_image_nmi']:.3f} | {pos:.3f} | "
                         f"{wi[split]['within_image_nmi'] - pos:+.3f} | {mono:.3f} | {mono - pos:+.3f} | "
                         f"{wi[split]['within_class_nmi']:.3f} | {ceiling:.3f} |")
    lines += ["", "| model | concepts (fitted on other scenes) | within-class part NMI | position partition | margin "
              "| each object in one colour | margin | within class, against the parts' colours | class only (pooled) "
              "| concepts (pooled) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in results["models"].items():
        if "concepts" not in e:
            continue
        c, ch = e["concepts"], e["chosen"]["concepts"]
        pos = next(r for n, r in c.items() if "position" in n)["within_class_nmi"]
        cls = c["control: class only"]["pooled_nmi"]
        label = concept_label(ch['per_class'], ch['n_concepts'], ch.get('normalize_cells', False),
                              ch.get('strategy', 'dataset'), ch.get('coding', 'cells'))
        got = c['concepts']['within_class_nmi']
        mono = c.get("concepts, one colour", {}).get("within_class_nmi", float("nan"))
        hue = c.get("concepts against the parts' colours", {}).get("within_class_nmi")
        hue = "not measured" if hue is None else f"{hue:.3f}"
        lines.append(f"| {name} | {label} | {got:.3f} | {pos:.3f} | {got - pos:+.3f} | {mono:.3f} | {mono - pos:+.3f} "
                     f"| {hue} | {cls:.3f} | {c['concepts']['pooled_nmi']:.3f} |")
    lines += ["", "| model | method (score of the part prompts) | part prompt peaks in the named part | class prompt "
              "(cosine), same part | lift | parts | s / pair |", "|---|---|---|---|---|---|---|"]
    for name, e in results["models"].items():
        chosen = e["chosen"].get("pointing_score", {})
        for m, r in e.get("pointing", {}).items():
            mark = " **(chosen)**" if chosen.get(r.get("method", m)) == r.get("score", "cosine") else ""
            lines.append(f"| {name} | {m}{mark} | {r['part_prompt_pointing']:.3f} ± {r['standard_error']:.3f} | "
                         f"{r['class_prompt_pointing_same_part']:.3f} | {r['lift']:+.3f} | {r['part_prompts']} | "
                         f"{r['seconds_per_pair']:.3f} |")
    lines += ["", "| model | SVD call (s) | NMF call (s) | NMF / SVD |", "|---|---|---|---|"]
    for name, e in results["models"].items():
        t = e["timing"]
        lines.append(f"| {name} | {t['svd_seconds']:.3f} | {t['nmf_seconds']:.3f} | {t['ratio']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
