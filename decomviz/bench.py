"""`decomviz bench`: localisation, faithfulness, part alignment, feature against pixel integration, ablations
and speed on PartsWorld.

Writes `results.json` and `results.md` into --out. `--quick` is the CI-sized run (a handful of scenes);
the full run is what BENCHMARKS.md records.
"""
from __future__ import annotations

import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Dict

import numpy as np
import torch

from .cam import clip_score
from .evaluation import OBJECT_TEMPLATE, PART_TEMPLATE, object_prompts

# Faithfulness (insertion / deletion / confidence) costs ~2 * steps forwards per pair, localisation one
# explanation: on a 2-core CPU the full run scores faithfulness on the first `faithfulness_scenes` scenes only.
QUICK = {"scenes": 4, "steps": 4, "faithfulness_scenes": 4, "scorecam_scenes": 1, "ablation_scenes": 2,
         "part_scenes": 2, "speed_repeats": 1}
FULL = {"scenes": 500, "steps": 16, "faithfulness_scenes": 100, "scorecam_scenes": 60, "ablation_scenes": 100,
        "part_scenes": 200, "speed_repeats": 5}

SCORE_METHODS = ("scorecam", "gscorecam")

ABLATIONS = {
    "P=50": {"top_channels": 50}, "P=200": {"top_channels": 200},
    "K=3": {"n_components": 3}, "K=5": {"n_components": 5}, "K=20": {"n_components": 20},
    "center=False": {"center": False}, "sign=both": {"sign": "both"}, "weight_norm=minmax": {"weight_norm": "minmax"},
    "blur=5": {"blur_sigma": 5.0}, "blur=20": {"blur_sigma": 20.0},
    "integration=feature": {"integration": "feature"}, "integration=none": {"integration": "none"},
}


def make_methods(model) -> Dict[str, object]:
    import decomviz as dv
    return {"decomcam": dv.DecomCAM(model), "decomcam (feature)": dv.DecomCAM(model, integration="feature"),
            "decomcam (no integration)": dv.DecomCAM(model, integration="none"),
            "gradcam": dv.GradCAM(model), "gradcam++": dv.GradCAMPlusPlus(model), "layercam": dv.LayerCAM(model),
            "eigencam": dv.EigenCAM(model), "gscorecam": dv.GScoreCAM(model, batch_size=64),
            "scorecam": dv.ScoreCAM(model, batch_size=64)}


def _scenes(n, seed):
    from .data import PartsWorld
    world = PartsWorld(n * 2, seed=seed, n_objects=2)
    out = []
    for scene in world:
        labels = [o.label for o in scene.objects]
        if len(set(labels)) == len(labels):
            out.append(scene)
        if len(out) == n:
            break
    return out


def _masks(scene, size):
    return _resized(np.stack([o.mask for o in scene.objects]), size)


def _resized(masks: np.ndarray, size) -> torch.Tensor:
    """Boolean masks (N, H, W) at another size (nearest), as the explained image is."""
    import torch.nn.functional as F
    m = torch.from_numpy(masks).float()
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m[:, None], size=tuple(size), mode="nearest")[:, 0]
    return m > 0.5


def localisation_and_faithfulness(model, cams, scenes, steps, scorecam_scenes, log,
                                  faithfulness_scenes=None) -> Dict[str, Dict]:
    """Pointing and energy on every scene; faithfulness on the first `faithfulness_scenes`; ScoreCAM and
    GScoreCAM (one forward per channel: 300-500 per pair) on the first `scorecam_scenes` only."""
    from . import metrics
    n_faith = len(scenes) if faithfulness_scenes is None else faithfulness_scenes
    rows = {}
    for name, cam in cams.items():
        use = scenes[:scorecam_scenes] if name in SCORE_METHODS else scenes
        acc = {k: [] for k in ("pointing_game", "energy_pointing_game", "insertion_auc", "deletion_auc",
                               "average_drop", "increase_in_confidence")}
        seconds, pairs, empty = 0.0, 0, 0
        for i, scene in enumerate(use):
            prompts = object_prompts(scene)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # counted below instead of one warning per call
                exp = cam(scene.image, prompts)
            seconds += time.perf_counter() - t0
            pairs += len(prompts)
            empty += int(torch.as_tensor(exp.flags.get("no_positive_contribution", False)).sum())
            sal = exp.saliency[0]
            m = _masks(scene, sal.shape[-2:])
            acc["pointing_game"] += metrics.pointing_game(sal, m).values.tolist()
            acc["energy_pointing_game"] += metrics.energy_pointing_game(sal, m).values.tolist()
            if i >= n_faith:
                continue
            faith = metrics.insertion_deletion(model, exp, steps=steps)
            acc["insertion_auc"] += faith["insertion"].values.flatten().tolist()
            acc["deletion_auc"] += faith["deletion"].values.flatten().tolist()
            conf = metrics.confidence_change(model, exp)
            acc["average_drop"] += conf["average_drop"].values.flatten().tolist()
            acc["increase_in_confidence"] += conf["increase_in_confidence"].values.flatten().tolist()
        rows[name] = {k: float(np.mean(v)) for k, v in acc.items()}
        rows[name].update(pairs=pairs, faithfulness_pairs=len(acc["insertion_auc"]), empty_maps=empty,
                          seconds_per_pair=seconds / max(pairs, 1))
        log(f"  {name:26s} pointing {rows[name]['pointing_game']:.3f}  energy {rows[name]['energy_pointing_game']:.3f}  "
            f"ins {rows[name]['insertion_auc']:.4f}  del {rows[name]['deletion_auc']:.4f}  "
            f"{rows[name]['seconds_per_pair']:.3f} s/pair  (n={pairs}, faithfulness n={rows[name]['faithfulness_pairs']},"
            f" empty maps {empty})")
    return rows


def part_alignment(model, scenes, log) -> Dict[str, Dict]:
    import decomviz as dv
    from . import metrics
    cam = dv.DecomCAM(model)
    out = {}
    for kind in ("object prompts", "part prompts"):
        align, cover = [], []
        for scene in scenes:
            obj = scene.objects[0]
            part_masks = scene.part_masks(0)
            names = [n for n, m in part_masks.items() if m.any()]
            masks = _resized(np.stack([part_masks[n] for n in names]), model.image_size)
            prompts = [OBJECT_TEMPLATE.format(obj.label)] if kind == "object prompts" else \
                [PART_TEMPLATE.format(part=n, label=obj.label) for n in names]
            exp = cam(scene.image, prompts)
            for t in range(len(prompts)):
                keep = exp.weights[0, t] > 0
                if not keep.any():
                    continue
                res = metrics.part_alignment(exp.ossms[0, t][keep], masks)
                align += res["ossm_alignment"].values.tolist()
                cover += res["part_coverage"].values.tolist()
        out[kind] = {"ossm_alignment": float(np.mean(align)) if align else float("nan"),
                     "part_coverage": float(np.mean(cover)) if cover else float("nan"), "n_ossms": len(align)}
        log(f"  {kind:16s} OSSM energy in its best part {out[kind]['ossm_alignment']:.3f}, "
            f"parts hit by some OSSM peak {out[kind]['part_coverage']:.3f} ({len(align)} OSSMs)")
    return out


def integration_agreement(model, scenes, log) -> Dict[str, float]:
    """Feature-space against pixel-space integration on the same pairs. Both weigh the same OSSMs, so their
    weights can be compared component by component, and their maps pixel by pixel."""
    import decomviz as dv
    pixel, feature = dv.DecomCAM(model), dv.DecomCAM(model, integration="feature")
    acc = {"weight_correlation": [], "map_correlation": [], "same_top_component": [], "peaks_within_15px": []}
    scale = model.image_size[0] / 224
    for scene in scenes:
        prompts = object_prompts(scene)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a, b = pixel(scene.image, prompts), feature(scene.image, prompts)
        for t in range(len(prompts)):
            wa, wb = a.weights[0, t], b.weights[0, t]
            acc["same_top_component"].append(float(wa.argmax() == wb.argmax()))
            if wa.std() > 0 and wb.std() > 0:
                acc["weight_correlation"].append(float(torch.corrcoef(torch.stack([wa, wb]))[0, 1]))
            sa, sb = a.saliency[0, t], b.saliency[0, t]
            if sa.std() > 0 and sb.std() > 0:
                acc["map_correlation"].append(float(torch.corrcoef(torch.stack([sa.flatten(), sb.flatten()]))[0, 1]))
            W = sa.shape[-1]
            pa, pb = divmod(int(sa.argmax()), W), divmod(int(sb.argmax()), W)
            acc["peaks_within_15px"].append(float(np.hypot(pa[0] - pb[0], pa[1] - pb[1]) <= 15 * scale))
    out = {k: float(np.mean(v)) if v else float("nan") for k, v in acc.items()}
    out["pairs"] = len(acc["same_top_component"])
    log("  " + "  ".join(f"{k} {v:.3f}" for k, v in out.items() if k != "pairs") + f"  ({out['pairs']} pairs)")
    return out


def ablations(model, scenes, log) -> Dict[str, Dict]:
    import decomviz as dv
    from .evaluation import localise
    variants = {"default": {}, **ABLATIONS}
    cams = {name: dv.DecomCAM(model, **kw) for name, kw in variants.items()}
    res = localise(cams, scenes)
    out = {}
    for name, r in res.items():
        out[name] = {"knobs": variants[name], "pointing_game": r.pointing, "energy_pointing_game": r.mean_energy,
                     "seconds_per_pair": r.seconds_per_pair, "pairs": len(r.hits)}
        log(f"  {name:22s} pointing {r.pointing:.3f}  energy {r.mean_energy:.3f}  {r.seconds_per_pair:.3f} s/pair")
    return out


def floor_seconds(model, x, text, K: int, repeats: int) -> float:
    """One forward of the tower + one backward from the score to the tapped layer, and K + 1 images
    (the masked inputs and the reference) in one forward: the least any implementation of the method costs.
    ``K=0`` times the forward + backward alone (the yardstick of feature-space integration)."""
    module = model.module(model.default_layer)
    box = {}

    def hook(m, i, o):
        box["a"] = o.detach().requires_grad_(True)
        return box["a"]

    def run():
        h = module.register_forward_hook(hook)
        try:
            s = clip_score(model.embed(x), text, "cosine", model.logit_scale)
            torch.autograd.grad(s.sum(), box["a"])
        finally:
            h.remove()
        if K:
            with torch.no_grad():
                model.embed(x.repeat(K + 1, 1, 1, 1))
    return timeit(run, repeats)


def timeit(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def speed(model, cams, scene, repeats, log) -> Dict[str, float]:
    import decomviz as dv
    prompt = OBJECT_TEMPLATE.format(scene.objects[0].label)
    x = model.prepare(scene.image).tensor
    text = model.encode_text([prompt])
    floor = floor_seconds(model, x, text, dv.DecomCAM(model).n_components, repeats)
    fwd_bwd = floor_seconds(model, x, text, 0, repeats)
    out = {"floor": floor, "forward+backward": fwd_bwd}
    for name, cam in cams.items():
        out[name] = timeit(lambda: cam(scene.image, prompt), 1 if "scorecam" in name else repeats)
    out["decomcam_over_floor"] = out["decomcam"] / floor
    out["decomcam (feature)_over_floor"] = out["decomcam (feature)"] / floor
    out["decomcam (feature)_over_forward+backward"] = out["decomcam (feature)"] / fwd_bwd
    out.update(_gradcam_package_speed(model, x, text, repeats))
    log("  " + "  ".join(f"{k} {v:.3f}" for k, v in out.items()))
    return out


def _gradcam_package_speed(model, x, text, repeats) -> Dict[str, float]:
    try:
        import pytorch_grad_cam
    except ImportError:
        return {}
    import torch.nn.functional as F

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model.model

        def forward(self, inp):
            return F.normalize(self.net.encode_image(inp).float(), dim=-1)

    target = lambda out: (out * text[0]).sum()
    reshape = None
    if model.kind == "vit":
        def reshape(t):
            n = t.shape[1]
            side = int(round((n - 1) ** 0.5))
            return t[:, 1:].reshape(t.shape[0], side, side, -1).permute(0, 3, 1, 2)
    out = {}
    for name in ("GradCAM", "ScoreCAM"):
        cam = getattr(pytorch_grad_cam, name)(model=Net(), target_layers=[model.module(model.default_layer)],
                                              reshape_transform=reshape)
        cam.batch_size = 64
        out[f"grad-cam package {name}"] = timeit(
            lambda: cam(input_tensor=x.clone().requires_grad_(True), targets=[target]), 1 if name == "ScoreCAM" else repeats)
    return out


SECTIONS = ("localisation", "part_alignment", "integration_agreement", "ablations", "speed")


def run_bench(models=None, quick: bool = False, out="bench_results", seed: int = 7,
              scenes: int = None, device=None, log=None, sections=None) -> Dict:
    """Run the benchmark and write ``out/results.json`` and ``out/results.md``.

    ``sections`` (a subset of :data:`SECTIONS`) reruns only those, on the scenes and settings recorded in an
    existing ``out/results.json``, and updates it in place (e.g. the speed section after an engine change).
    """
    import decomviz as dv
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    if sections is not None:
        return _rerun_sections(models, sections, Path(out), device, log)
    models = tuple(dv.models.BUNDLED if models is None else models)
    cfg = dict(QUICK if quick else FULL)
    if scenes is not None:
        cfg["scenes"] = scenes
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    results = {"mode": "quick" if quick else "full", "config": cfg, "seed": seed, "machine": _machine(device),
               "models": {}}
    scene_list = _scenes(cfg["scenes"], seed)
    for name in models:
        model = dv.load_model(name, device=device)
        entry = {"layer": model.default_layer}
        for section in SECTIONS:
            if section != "ablations" or name == models[0]:
                entry[section] = _section(section, model, name, scene_list, cfg, log)
        results["models"][name] = entry
    results["seconds"] = time.perf_counter() - t_start
    _write(results, out, log)
    return results


def _section(section: str, model, name: str, scene_list, cfg: Dict, log):
    log(f"[bench] {name}: {section.replace('_', ' ')}")
    if section == "localisation":
        return localisation_and_faithfulness(model, make_methods(model), scene_list, cfg["steps"],
                                             cfg["scorecam_scenes"], log, cfg["faithfulness_scenes"])
    if section == "part_alignment":
        return part_alignment(model, scene_list[:cfg["part_scenes"]], log)
    if section == "integration_agreement":
        return integration_agreement(model, scene_list[:cfg["ablation_scenes"]], log)
    if section == "ablations":
        return ablations(model, scene_list[:cfg["ablation_scenes"]], log)
    return speed(model, make_methods(model), scene_list[0], cfg["speed_repeats"], log)


def _rerun_sections(models, sections, out: Path, device, log) -> Dict:
    import decomviz as dv
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f"Unknown bench section(s) {unknown}; choose from {', '.join(SECTIONS)}.")
    path = out / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: rerunning sections updates an earlier run. Run "
                                f"`decomviz bench --out {out}` first (or drop --sections).")
    results = json.loads(path.read_text())
    cfg = results["config"]
    scene_list = _scenes(cfg["scenes"], results["seed"])
    t_start = time.perf_counter()
    for name in models or list(results["models"]):
        model = dv.load_model(name, device=device)
        entry = results["models"].setdefault(name, {"layer": model.default_layer})
        for section in sections:
            entry[section] = _section(section, model, name, scene_list, cfg, log)
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
            lines += ["", "| DecomCAM variant | pointing | energy | s/pair |", "|---|---|---|---|"]
            for v, r in entry["ablations"].items():
                lines.append(f"| {v} | {r['pointing_game']:.3f} | {r['energy_pointing_game']:.3f} | {r['seconds_per_pair']:.3f} |")
        if "speed" in entry:
            lines += ["", "| speed (s per image-prompt pair) | s |", "|---|---|"]
            lines += [f"| {k} | {v:.3f} |" for k, v in entry["speed"].items()]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="decomviz bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="CI-sized run")
    ap.add_argument("--models", nargs="+", default=None, help="bundled model names (default: all of them)")
    ap.add_argument("--scenes", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None, help="scene seed (default 7)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default="bench_results")
    ap.add_argument("--sections", nargs="+", default=None, choices=SECTIONS,
                    help="rerun only these sections of the run in --out and update its results")
    args = ap.parse_args(argv)
    if args.sections and (args.quick or args.scenes is not None or args.seed is not None):
        ap.error("--sections reruns with the settings recorded in --out's results.json; "
                 "drop --quick, --scenes and --seed (or drop --sections for a new run).")
    with warnings.catch_warnings():
        # empty maps are counted in the localisation table ("empty maps"); one warning per call would drown the log
        warnings.filterwarnings("ignore", message="No component raised")
        res = run_bench(args.models, quick=args.quick, out=args.out, seed=7 if args.seed is None else args.seed,
                        scenes=args.scenes,
                        device=args.device, sections=args.sections)
    print(to_markdown(res))
    return 0
