"""`decomviz bench`: localisation, faithfulness, part alignment, feature against pixel integration, ablations
and speed on PartsWorld.

Writes `results.json` and `results.md` into --out. `--quick` is the CI-sized run (a handful of scenes);
the full run is what BENCHMARKS.md records.
"""
from __future__ import annotations

import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Dict

import torch

from ...methods.registry import METHODS
from ...models import BUNDLED, load_model
from ..evaluation import two_object_scenes
from .checks import checks_markdown, sanity, softmax_localisation
from .parts import parts_markdown, parts_section
from .sections import (FULL, QUICK, ablations, integration_agreement, localisation_and_faithfulness, make_methods,
                       part_alignment, speed)

SECTIONS = ("localisation", "softmax_localisation", "sanity", "parts", "part_alignment", "integration_agreement",
            "ablations", "speed")


def run_bench(models=None, quick: bool = False, out="bench_results", seed: int = 7,
              scenes: int = None, device=None, log=None, sections=None, only=None, overrides=None,
              methods=None) -> Dict:
    """Run the benchmark and write ``out/results.json`` and ``out/results.md``.

    ``sections`` (a subset of :data:`SECTIONS`) reruns only those, on the scenes and settings recorded in an
    existing ``out/results.json``, and updates it in place (e.g. the speed section after an engine change).
    ``only`` runs a new benchmark with just those sections; ``overrides`` changes sizes of the configuration
    (e.g. ``{"part_scenes": 40}``); ``methods`` (registry names) limits the method rows to those.
    """
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    if sections is not None:
        return _rerun_sections(models, sections, Path(out), device, log)
    models = tuple(BUNDLED if models is None else models)
    cfg = dict(QUICK if quick else FULL)
    if scenes is not None:
        cfg["scenes"] = scenes
    unknown = [k for k in (overrides or {}) if k not in cfg]
    if unknown:
        raise ValueError(f"Unknown bench setting(s) {unknown}; settings are {', '.join(cfg)}.")
    cfg.update(overrides or {})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    results = {"mode": "quick" if quick else "full", "sections": list(only or SECTIONS), "config": cfg, "seed": seed, "machine": _machine(device),
               "models": {}, **({"methods": list(methods)} if methods else {})}
    scene_list = two_object_scenes(cfg["scenes"], seed)
    for name in models:
        model = _load(name, device)
        entry = {"layer": model.default_layer}
        for section in (only or SECTIONS):
            entry[section] = _section(section, model, name, scene_list, cfg, seed, log, methods)
        results["models"][name] = entry
    results["seconds"] = time.perf_counter() - t_start
    _write(results, out, log)
    return results


def _load(name: str, device):
    """A bundled model by name, or a folder written by `decomviz train` (open_clip local-dir) by its path."""
    if Path(name).is_dir():
        return load_model(checkpoint=name, device=device)
    return load_model(name, device=device)


def _section(section: str, model, name: str, scene_list, cfg: Dict, seed: int, log, methods=None):
    log(f"[bench] {name}: {section.replace('_', ' ')}")
    if section == "localisation":
        return localisation_and_faithfulness(model, make_methods(model, methods), scene_list, cfg["steps"],
                                             cfg["scorecam_scenes"], log, cfg["faithfulness_scenes"])
    if section == "softmax_localisation":
        return softmax_localisation(model, scene_list, cfg["scorecam_scenes"], log, methods)
    if section == "sanity":
        return sanity(model, scene_list[:cfg.get("sanity_scenes", 4)], cfg.get("sanity_steps", 3), log, methods)
    if section == "parts":
        return parts_section(model, scene_list, cfg, seed, log)
    if section == "part_alignment":
        return part_alignment(model, scene_list[:cfg["part_scenes"]], log)
    if section == "integration_agreement":
        return integration_agreement(model, scene_list[:cfg["ablation_scenes"]], log)
    if section == "ablations":
        return ablations(model, scene_list[:cfg["ablation_scenes"]], log)
    return speed(model, make_methods(model, methods), scene_list[0], cfg["speed_repeats"], log)


def _rerun_sections(models, sections, out: Path, device, log) -> Dict:
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f"Unknown bench section(s) {unknown}; choose from {', '.join(SECTIONS)}.")
    path = out / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: rerunning sections updates an earlier run. Run "
                                f"`decomviz bench --out {out}` first (or drop --sections).")
    results = json.loads(path.read_text())
    cfg = results["config"]
    scene_list = two_object_scenes(cfg["scenes"], results["seed"])
    t_start = time.perf_counter()
    for name in models or list(results["models"]):
        model = _load(name, device)
        entry = results["models"].setdefault(name, {"layer": model.default_layer})
        for section in sections:
            entry[section] = _section(section, model, name, scene_list, cfg, results["seed"], log)
    results.setdefault("reruns", []).append({"sections": list(sections), "models": list(models or results["models"]),
                                             "seconds": time.perf_counter() - t_start,
                                             "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                                             "machine": _machine(device)})
    _write(results, out, log)
    return results


def _machine(device) -> Dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "device": device or ("cuda" if torch.cuda.is_available() else "cpu"),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _write(results: Dict, out: Path, log) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(to_markdown(results))
    log(f"[bench] wrote {out / 'results.json'} and {out / 'results.md'}")


def to_markdown(results: Dict) -> str:
    lines = [f"Mode: {results['mode']}, scenes: {results['config']['scenes']}, seed {results['seed']}, "
             f"machine: {results['machine']['processor']} ({results['machine']['device']}, "
             f"{results['machine']['torch_threads']} threads), torch {results['machine']['torch']}.", ""]
    for name, entry in results["models"].items():
        lines += [f"### {name} (layer {entry['layer']})"]
        if "localisation" in entry:   # a model added by a rerun of other sections has only those
            lines += ["", "| method | pointing | energy | insertion AUC | deletion AUC | avg drop | increase | s/pair "
                      "| pairs | faithfulness pairs | empty maps |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for m, r in entry.get("localisation", {}).items():
            lines.append(f"| {m} | {r['pointing_game']:.3f} | {r['energy_pointing_game']:.3f} | {r['insertion_auc']:.4f} | "
                         f"{r['deletion_auc']:.4f} | {r['average_drop']:.3f} | {r['increase_in_confidence']:.3f} | "
                         f"{r['seconds_per_pair']:.3f} | {r['pairs']} | {r.get('faithfulness_pairs', r['pairs'])} "
                         f"| {r.get('empty_maps', '')} |")
        lines += checks_markdown(entry)
        if "parts" in entry:
            lines += parts_markdown(entry["parts"])
        if "part_alignment" in entry:
            lines += ["", "| prompts | OSSM energy in best part | parts hit by an OSSM peak | OSSMs |",
                      "|---|---|---|---|"]
        for kind, r in entry.get("part_alignment", {}).items():
            lines.append(f"| {kind} | {r['ossm_alignment']:.3f} | {r['part_coverage']:.3f} | {r['n_ossms']} |")
        if "integration_agreement" in entry:
            r = entry["integration_agreement"]
            lines += ["", "| feature vs pixel integration | weight correlation | map correlation | same top component "
                      "| peaks within 15 px | pairs |", "|---|---|---|---|---|---|",
                      f"| | {r['weight_correlation']:.3f} | {r['map_correlation']:.3f} | {r['same_top_component']:.3f} "
                      f"| {r['peaks_within_15px']:.3f} | {r['pairs']} |"]
        if "ablations" in entry:
            lines += ["", "| DecomCAM variant | pointing | energy | s/pair | median map r with default |",
                      "|---|---|---|---|---|"]
            for v, r in entry["ablations"].items():
                lines.append(f"| {v} | {r['pointing_game']:.3f} | {r['energy_pointing_game']:.3f} | "
                             f"{r['seconds_per_pair']:.3f} | {r.get('map_correlation_with_default', float('nan')):.2f} |")
        if "speed" in entry:
            lines += ["", "| speed (s per image-prompt pair) | s |", "|---|---|"]
            lines += [f"| {k} | {v:.3f} |" for k, v in entry["speed"].items()]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="decomviz bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="CI-sized run")
    ap.add_argument("--models", nargs="+", default=None,
                    help="bundled model names or folders written by `decomviz train` (default: the bundled ones)")
    ap.add_argument("--scenes", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None, help="scene seed (default 7)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default="bench_results")
    ap.add_argument("--sections", nargs="+", default=None, choices=SECTIONS,
                    help="rerun only these sections of the run in --out and update its results")
    ap.add_argument("--only", nargs="+", default=None, choices=SECTIONS, help="a new run with only these sections")
    ap.add_argument("--methods", nargs="+", default=None, choices=list(METHODS), metavar="METHOD",
                    help="only these registered methods' rows (default: every method that applies to the model)")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=N",
                    help="change a size of the run, e.g. --set part_scenes=40 scorecam_scenes=10")
    args = ap.parse_args(argv)
    try:
        overrides = {k: int(v) for k, v in (item.split("=", 1) for item in args.set)}
    except ValueError:
        ap.error(f"--set takes KEY=N pairs with an integer N, got {args.set}.")
    if args.sections and (args.only or overrides or args.methods):
        ap.error("--sections reruns with the recorded settings; --only, --set and --methods are for a new run.")
    if args.sections and (args.quick or args.scenes is not None or args.seed is not None):
        ap.error("--sections reruns with the settings recorded in --out's results.json; "
                 "drop --quick, --scenes and --seed (or drop --sections for a new run).")
    with warnings.catch_warnings():
        # empty maps are counted in the localisation table ("empty maps"); one warning per call would drown the log
        warnings.filterwarnings("ignore", message="No component raised")
        res = run_bench(args.models, quick=args.quick, out=args.out, seed=7 if args.seed is None else args.seed,
                        scenes=args.scenes,
                        device=args.device, sections=args.sections, only=args.only, overrides=overrides,
                        methods=args.methods)
    print(to_markdown(res))
    return 0
