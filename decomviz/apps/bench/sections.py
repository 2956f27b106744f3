"""The sections of `decomviz bench`: each takes a model and scenes and returns a dict of figures."""
from __future__ import annotations

import statistics
import time
import warnings
from typing import Dict, List

import numpy as np
import torch

from ... import metrics
from ...methods import DecomCAM
from ...methods.registry import make_method, methods_for
from ...models.taps import tap
from ...ops import clip_score, resize_masks, scaled_pixels
from ..evaluation import OBJECT_TEMPLATE, PART_TEMPLATE, localise, object_masks, object_prompts

# Faithfulness (insertion / deletion / confidence) costs ~2 * steps forwards per pair, localisation one
# explanation: on a 2-core CPU the full run scores faithfulness on the first `faithfulness_scenes` scenes only.
QUICK = {"scenes": 4, "steps": 4, "faithfulness_scenes": 4, "scorecam_scenes": 1, "ablation_scenes": 2,
         "part_scenes": 2, "speed_repeats": 1, "sanity_scenes": 1, "sanity_steps": 2}
FULL = {"scenes": 500, "steps": 16, "faithfulness_scenes": 100, "scorecam_scenes": 60, "ablation_scenes": 100,
        "part_scenes": 200, "speed_repeats": 5, "sanity_scenes": 8, "sanity_steps": 3}

#: Methods that cost one forward per channel or window: run on the first `scorecam_scenes` scenes only, 64 per batch.
COSTLY_METHODS = ("scorecam", "gscorecam", "occlusion")

ABLATIONS = {
    "P=50": {"top_channels": 50}, "P=200": {"top_channels": 200},
    "K=3": {"n_components": 3}, "K=5": {"n_components": 5}, "K=20": {"n_components": 20},
    "center=False": {"center": False}, "sign=both": {"sign": "both"}, "weight_norm=minmax": {"weight_norm": "minmax"},
    "blur=5": {"blur_sigma": 5.0}, "blur=20": {"blur_sigma": 20.0},
    "integration=feature": {"integration": "feature"}, "integration=none": {"integration": "none"},
    # the choices of the authors' released code, one at a time and together (the decomcam-authors preset)
    "sign=svd_flip": {"sign": "svd_flip"}, "blend=max": {"blend": "max"}, "contribution=raw": {"contribution": "raw"},
    "upsample=bicubic": {"upsample": "bicubic"}, "score=softmax": {"score": "softmax"},
    "authors": {"sign": "svd_flip", "blend": "max", "contribution": "raw", "upsample": "bicubic"},
}


def bench_methods(model, names=None) -> List[str]:
    """The registered methods the bench runs on the model: ``names`` (default: all) that apply to it (the
    attention methods need a ViT), in registry order."""
    return [n for n in methods_for(model) if names is None or n in names]


def make_methods(model, names=None) -> Dict[str, object]:
    """The methods of `bench_methods` at their defaults, by registry name."""
    return {name: make_method(name, model, **({"batch_size": 64} if name in COSTLY_METHODS else {}))
            for name in bench_methods(model, names)}


def localisation_and_faithfulness(model, cams, scenes, steps, scorecam_scenes, log,
                                  faithfulness_scenes=None) -> Dict[str, Dict]:
    """Pointing and energy on every scene; faithfulness on the first `faithfulness_scenes`; ScoreCAM and
    GScoreCAM (one forward per channel: 300-500 per pair) on the first `scorecam_scenes` only."""
    n_faith = len(scenes) if faithfulness_scenes is None else faithfulness_scenes
    rows = {}
    for name, cam in cams.items():
        use = scenes[:scorecam_scenes] if name in COSTLY_METHODS else scenes
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
            m = object_masks(scene, sal.shape[-2:])
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
    cam = DecomCAM(model)
    out = {}
    for kind in ("object prompts", "part prompts"):
        align, cover = [], []
        for scene in scenes:
            obj = scene.objects[0]
            part_masks = scene.part_masks(0)
            names = [n for n, m in part_masks.items() if m.any()]
            masks = resize_masks(np.stack([part_masks[n] for n in names]), model.image_size)
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
    pixel, feature = DecomCAM(model), DecomCAM(model, integration="feature")
    acc = {"weight_correlation": [], "map_correlation": [], "same_top_component": [], "peaks_within_15px": []}
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
            acc["peaks_within_15px"].append(float(np.hypot(pa[0] - pb[0], pa[1] - pb[1]) <= scaled_pixels(15, model.image_size[0])))
    out = {k: float(np.mean(v)) if v else float("nan") for k, v in acc.items()}
    out["pairs"] = len(acc["same_top_component"])
    log("  " + "  ".join(f"{k} {v:.3f}" for k, v in out.items() if k != "pairs") + f"  ({out['pairs']} pairs)")
    return out


def ablations(model, scenes, log) -> Dict[str, Dict]:
    """DecomCAM with one knob changed at a time (and the authors' preset): pointing, energy, time, and the median
    correlation of each variant's maps with the default's on the same pairs."""
    variants = {"default": {}, **ABLATIONS}
    cams = {name: DecomCAM(model, **kw) for name, kw in variants.items()}
    corr: Dict[str, list] = {name: [] for name in variants}

    def compare(i, scene, exps):
        base = exps["default"].saliency.flatten(-2)
        for name, exp in exps.items():
            for a, b in zip(base[0], exp.saliency.flatten(-2)[0]):
                if a.std() > 0 and b.std() > 0:
                    corr[name].append(float(torch.corrcoef(torch.stack([a, b]))[0, 1]))

    res = localise(cams, scenes, on_scene=compare)
    out = {}
    for name, r in res.items():
        out[name] = {"knobs": variants[name], "pointing_game": r.pointing, "energy_pointing_game": r.mean_energy,
                     "seconds_per_pair": r.seconds_per_pair, "pairs": len(r.hits),
                     "map_correlation_with_default": float(np.median(corr[name])) if corr[name] else float("nan")}
        log(f"  {name:22s} pointing {r.pointing:.3f}  energy {r.mean_energy:.3f}  {r.seconds_per_pair:.3f} s/pair  "
            f"r with default {out[name]['map_correlation_with_default']:.2f}")
    return out


def floor_seconds(model, x, text, K: int, repeats: int) -> float:
    """One forward of the tower + one backward from the score to the tapped layer, and K + 1 images
    (the masked inputs and the reference) in one forward: the least any implementation of the method costs.
    ``K=0`` times the forward + backward alone (the yardstick of feature-space integration)."""
    def run():
        with tap(model, model.default_layer, requires_grad=True) as t:
            s = clip_score(model.embed(x), text, "cosine", model.logit_scale)
            torch.autograd.grad(s.sum(), t.raw)
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
    prompt = OBJECT_TEMPLATE.format(scene.objects[0].label)
    x = model.prepare(scene.image).tensor
    text = model.encode_text([prompt])
    floor = floor_seconds(model, x, text, DecomCAM(model).n_components, repeats)
    fwd_bwd = floor_seconds(model, x, text, 0, repeats)
    out = {"floor": floor, "forward+backward": fwd_bwd}
    for name, cam in cams.items():
        out[name] = timeit(lambda: cam(scene.image, prompt), 1 if name in COSTLY_METHODS else repeats)
    if "decomcam" in out and "decomcam-feature" in out:  # a run of chosen methods may leave them out
        out["decomcam_over_floor"] = out["decomcam"] / floor
        out["decomcam-feature_over_floor"] = out["decomcam-feature"] / floor
        out["decomcam-feature_over_forward+backward"] = out["decomcam-feature"] / fwd_bwd
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
    def vit_tokens_to_grid(t):
        side = int(round((t.shape[1] - 1) ** 0.5))
        return t[:, 1:].reshape(t.shape[0], side, side, -1).permute(0, 3, 1, 2)

    reshape = vit_tokens_to_grid if model.kind == "vit" else None
    out = {}
    for name in ("GradCAM", "ScoreCAM"):
        cam = getattr(pytorch_grad_cam, name)(model=Net(), target_layers=[model.module(model.default_layer)],
                                              reshape_transform=reshape)
        cam.batch_size = 64
        out[f"grad-cam package {name}"] = timeit(
            lambda: cam(input_tensor=x.clone().requires_grad_(True), targets=[target]), 1 if name == "ScoreCAM" else repeats)
    return out
