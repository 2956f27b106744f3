"""`decomviz demo`: two-object PartsWorld scenes explained by DecomCAM, two CAM baselines and occlusion, with
DecomCAM's components and object against part prompts, as a static HTML report (WebP pictures, no JavaScript)."""
from __future__ import annotations

import html
import sys
import time
from pathlib import Path

from .evaluation import PART_TEMPLATE, LocalisationResult, format_table, localise, object_masks

#: The demo's methods, in the setting the README recommends for "where is this object?": the softmax over the
#: scene's prompts (class-discriminative), with occlusion as the model-agnostic reference.
DEMO_METHODS = {"decomcam": "DecomCAM", "gradcam": "Grad-CAM", "layercam": "LayerCAM",
                "occlusion": "Occlusion (reference)"}
#: Methods made for transformers, shown as well when the model is a ViT (they refuse CNN towers).
TRANSFORMER_METHODS = {"chefer": "Chefer et al.", "grad-eclip": "Grad-ECLIP"}
SCORE = "softmax"
TOP_ONE = "decomcam: top component"
TOP_THREE = "decomcam: any of top 3"

#: What each method is good for, as the demo says it (the table gives the numbers on these scenes).
GOOD_FOR = {
    "DecomCAM": "splits the evidence into orthogonal components and tests each one: the image is scored with only "
                "that component's region visible (the blurred image elsewhere). Use it to see <i>which separate "
                "pieces</i> of the image the model relies on and how much of the score each restores (w, d), and to "
                "scrub them. Its summed map adds every component that restores score, so it can spread over "
                "context and point less sharply than Grad-CAM; it is empty, and says so, when no region alone "
                "raises the score over the blurred image.",
    "Grad-CAM": "one map of the gradient-weighted activations: fast (one backward pass) and a strong single "
                "pointer at the named object on these scenes; it always draws something, with no test of whether "
                "the region matters.",
    "LayerCAM": "Grad-CAM with a weight per position: finer, more local maps at the same cost.",
    "Occlusion (reference)": "hides each window in turn and measures the score drop: no gradient and no layer, so "
                             "it is the model-agnostic check when a CAM looks surprising; by far the slowest, and "
                             "as coarse as its window.",
    "Chefer et al.": "(ViTs only) relevance propagated through every attention block, each weighted by its gradient: "
                     "made for transformers, where Grad-CAM's single-layer map follows token norms; it changes "
                     "little when the top blocks are randomised, so check it against occlusion.",
    "Grad-ECLIP": "(ViTs only) made for CLIP: the last block's values weighted by the gradient of the score and by "
                  "the class token's attention; one backward pass.",
}


def demo_methods(clip) -> dict:
    """The demo's methods for this model, by registry name: the four above, and the transformer methods on a ViT."""
    from ..methods.registry import applies
    return {**DEMO_METHODS, **{k: v for k, v in TRANSFORMER_METHODS.items() if applies(k, clip)}}


def run_demo(model: str = "parts-rn", n_scenes: int = 4, seed: int = 2024, out: str = "demo_report.html",
             device=None) -> int:
    from ..data import PartsWorld
    from ..methods.registry import make_method
    from ..models import BUNDLED, load_model
    from ..viz import static_report as sr

    if n_scenes < 1:
        raise ValueError(f"--scenes must be at least 1, got {n_scenes}.")
    if model not in BUNDLED:  # any other model would explain PartsWorld with weights that never saw it
        raise ValueError(f"The demo explains PartsWorld scenes, which only the bundled models know: use --model "
                         f"{' or '.join(BUNDLED)}, not {model!r}. For another model use `decomviz explain IMAGE "
                         "--model NAME --pretrained TAG` (or --checkpoint).")
    out_path = Path(out)
    if out_path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out must end in .html (the demo writes an HTML report), got '{out}'.")
    if not out_path.resolve().parent.is_dir():
        raise ValueError(f"--out: the folder '{out_path.resolve().parent}' does not exist; create it first.")
    t0 = time.perf_counter()
    clip = load_model(model, device=device)
    print(f"[decomviz] loaded {clip.name} from {clip.source} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    labels = demo_methods(clip)
    cams = {name: make_method(name, clip, score=SCORE) for name in labels}
    world = PartsWorld(n_scenes, seed=seed, n_objects=2)
    sections, _all_exps = [], []
    parts_of_decomcam = {TOP_ONE: LocalisationResult(TOP_ONE), TOP_THREE: LocalisationResult(TOP_THREE)}

    def report(i, scene, exps):
        print(f"[decomviz] scene {i + 1}/{n_scenes}: {scene.caption}", file=sys.stderr, flush=True)
        _score_components(scene, exps["decomcam"], parts_of_decomcam)
        sections.append(_scene_section(i, scene, exps, cams, clip, labels))
        _all_exps.extend(exps.values())

    results = localise(cams, world, on_scene=report)
    for r in parts_of_decomcam.values():  # read from the same DecomCAM runs: their time is DecomCAM's
        r.seconds, r.pairs = results["decomcam"].seconds, results["decomcam"].pairs
    table = format_table({**{labels[k]: r for k, r in results.items()}, **parts_of_decomcam})
    head = sr.section(
        f"What this report shows ({clip.name}, layer {clip.default_layer})",
        f"<pre>{html.escape(table)}</pre>",
        note=(f"{n_scenes} two-object PartsWorld scenes (seed {seed}). For each object, the prompt 'a photo of a "
              f"{{class}}' is explained with {sr.term('score s(x, t)', 'the softmax score')} over the scene's two "
              "prompts (the class-discriminative question: why this object rather than the other) by DecomCAM, "
              "Grad-CAM, LayerCAM" + (", the methods made for transformers" if len(labels) > len(DEMO_METHODS)
                                      else "") + " and occlusion, which needs no gradient and serves as the "
              "reference. Then "
              f"DecomCAM's components ({sr.term('OSSM', 'OSSMs')}, with the {sr.term('weight w')} and "
              f"{sr.term('contribution d')} of each) and part prompts beside the object prompt, with the ground "
              "truth: each part's mask and how much removing it lowers the prompt's score (the model's own "
              f"evidence of what it uses). Table: {sr.term('pointing game')} (share of hits), "
              f"{sr.term('energy')} and {sr.term('s/pair')}; terms are defined at the end. Note: the bundled "
              "models barely use parts (colour binding at chance, the named part decisive in about 1 case in 4; "
              "README and BENCHMARKS.md), so part prompts mostly give the object's map: the removal drops under "
              "each part prompt are the model's own evidence of which parts matter to it."))
    splits = _splits_section(world[0], clip)
    sr.write_page(out_path, f"decomviz demo: {clip.name}", [sr.caveat_banner(_all_exps), head, _story(results,
                  parts_of_decomcam, labels), splits] + sections)
    print(f"\nPointing game on the named object ({clip.name}, {n_scenes} scenes, 'a photo of a {{class}}', "
          f"{SCORE} score):")
    print(table)
    size = out_path.stat().st_size / 1e6
    print(f"\nReport: {out_path.resolve()} ({size:.1f} MB; total {time.perf_counter() - t0:.1f} s)")
    return 0


def _scene_section(i, scene, exps, cams, clip, labels) -> str:
    """One scene: every method per object, DecomCAM's components, and object against part prompts."""
    from ..metrics import part_importance
    from ..ops import resize_masks
    from ..viz import static_report as sr
    from ..viz.images import part_highlight

    blocks = []
    for t, obj in enumerate(scene.objects):
        blocks.append(f"<h3>“{html.escape(exps['decomcam'].prompts[t])}”</h3>")
        panels = [sr.picture(exps["decomcam"].images[0].numpy(), caption="input")]
        for name, exp in exps.items():
            panels.append(sr.picture(exp.images[0].numpy(), exp.saliency[0, t].numpy(),
                                     html.escape(labels.get(name, name)), flag=_empty_reason(exp, 0, t)))
        blocks.append(sr.row(panels))
    obj = scene.objects[0]
    dec = exps["decomcam"]
    where = _component_places(scene, dec, 0)
    blocks.append(f"<h3>What each DecomCAM component adds: “{html.escape(dec.prompts[0])}”</h3>")
    blocks.append('<p class="note">Top row: each component on its own colour scale, to see its shape (a faint '
                  "component looks as strong as a large one). Bottom row: w<sub>k</sub>·OSSM<sub>k</sub> on one "
                  "scale for all, which is what each adds to DecomCAM's map. w<sub>k</sub> = max(d<sub>k</sub>, 0) / "
                  "max<sub>j</sub> d<sub>j</sub>: a component whose region alone restores no score (d ≤ 0) gets "
                  "w = 0, and one that restores little beside the best gets w near 0 (shown as 0.00); both are "
                  "blank on the shared scale. Under each: where the component peaks.</p>")
    blocks.append(sr.components_row(dec, 0, 0, labels=where, spectrum=False))
    blocks.append(sr.components_row(dec, 0, 0, scale="shared"))
    # object against part prompts: which part, among this object's parts (softmax over them)
    own = [p for p in scene.parts if p.object == 0]
    prompts = [f"a photo of a {obj.label}"] + [PART_TEMPLATE.format(part=p.name, label=obj.label) for p in own]
    part_exp = cams["decomcam"](scene.image, prompts)
    panels = []
    for t, prompt in enumerate(prompts):
        drop = None
        if t > 0:
            imp = part_importance(clip, scene, prompt).values
            drop = float(imp[scene.parts.index(own[t - 1])])
        cap = f"DecomCAM: “{html.escape(prompt)}”" + ("" if drop is None else
                                                      f"<br>{_removal_words(own[t - 1].name, drop)}")
        panels.append(sr.picture(part_exp.images[0].numpy(), part_exp.saliency[0, t].numpy(), cap,
                                 flag=_empty_reason(part_exp, 0, t), width=180))
    size, pixels = part_exp.saliency.shape[-2:], part_exp.images[0].numpy()
    masks = [sr.picture(part_highlight(pixels, resize_masks(p.mask[None], size)[0].numpy(), j), None,
                        f"ground truth: the {html.escape(p.name)}", width=180) for j, p in enumerate(own)]
    blocks.append(f"<h3>Object against part prompts: the {html.escape(obj.label)}</h3>")
    blocks.append(sr.row(panels))
    blocks.append(sr.row(masks))
    return sr.section(f"Scene {i + 1}: {scene.caption}", *blocks)


def _splits_section(scene, clip) -> str:
    """One scene's components under the paper's SVD and under the NMF split, side by side, each named by the
    ground-truth part holding most of its mass."""
    import warnings as _warnings

    from ..methods.decomcam import DecomCAM
    from ..ops import minmax_np, resize_masks
    from ..viz import static_report as sr
    from ..viz.concepts import covered_part

    obj = scene.objects[0]
    prompt = f"a photo of a {obj.label}"
    rows = []
    for split, what in (("svd", "the paper's SVD: orthogonal components, signed contrasts after the first"),
                        ("nmf", "NMF of the positive evidence: components that only add up")):
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            exp = DecomCAM(clip, decomposition=split, n_components=6)(scene.image, prompt)  # cosine: one prompt
        size = exp.ossms.shape[-2:]
        parts = {p.name: resize_masks(p.mask[None], size)[0].numpy() for p in scene.parts if p.object == 0}
        parts.update({f"the {o.label} (other object)": resize_masks(o.mask[None], size)[0].numpy()
                      for o in scene.objects[1:]})
        pixels = exp.images[0].numpy()
        panels = [sr.picture(pixels, None, f"<b>{split.upper()}</b><br>{html.escape(what)}", width=150)]
        for k in range(exp.ossms.shape[2]):
            m = exp.ossms[0, 0, k].numpy()
            cap = f"{split} {k + 1}: {html.escape(covered_part(m, parts))}<br>w = {float(exp.weights[0, 0, k]):.2f}"
            panels.append(sr.picture(pixels, minmax_np(m), cap, width=150))
        rows.append(sr.row(panels))
    return sr.section(
        f"Two splits of the same evidence: “{prompt}”", *rows,
        note=("The gradient-weighted activations behind DecomCAM's map, split two ways (each map on its own colour "
              "scale). Under each component: the ground-truth part holding most of its mass, with that share, or "
              "'background'. Whether components follow parts is measured over many scenes, against a split of the "
              "object by position alone, in BENCHMARKS.md (parts) and notebook 05."))


def _removal_words(part: str, drop: float) -> str:
    """How removing a part changes the prompt's cosine, in words whose sign needs no decoding."""
    if abs(drop) < 0.005:
        return f"removing the {part} barely changes its cosine ({-drop:+.3f})"
    verb = "lowers" if drop > 0 else "raises"
    return f"removing the {part} {verb} its cosine by {abs(drop):.3f}"


def _empty_reason(exp, b: int, t: int):
    """The panel's flag (None when the map is not empty), with the numbers that explain an empty DecomCAM map."""
    from ..viz.pairs import flag_note
    note = flag_note(exp, b, t)
    if note is None or exp.contributions is None or exp.reference_score is None:
        return note
    ref = float(exp.reference_score[b, t])
    best = float(exp.contributions[b, t].max())
    return (f"{note}. The blurred image alone already scores s(r, t) = {ref:.3f} for this prompt, and no "
            f"component's region raises that (best d = {best:+.3f}): the evidence is not in any one region. "
            "Grad-CAM has no such test, so it draws a map regardless.")


def _peak_object(scene, m) -> str:
    """Which object (or the background) holds the peak of a map (H, W)."""
    import numpy as np
    masks = object_masks(scene, m.shape[-2:]).numpy()
    y, x = np.unravel_index(int(np.argmax(m)), m.shape)
    if float(m.max()) <= 0:
        return "empty"
    for o, mask in zip(scene.objects, masks):
        if mask[y, x]:
            return f"peak on the {o.label}"
    return "peak on the background"


def _component_places(scene, exp, t: int):
    return [_peak_object(scene, exp.ossms[0, t, k].numpy()) for k in range(exp.n_components)]


def _score_components(scene, exp, acc) -> None:
    """Pointing game of DecomCAM's top-weighted component alone, and of its three top components (a hit when any
    of them points in the object): what the components hold that the summed map may not show."""
    from ..metrics import energy_pointing_game, pointing_game
    T = exp.saliency.shape[1]
    masks = object_masks(scene, exp.saliency.shape[-2:])
    for t in range(T):
        order = [int(k) for k in exp.weights[0, t].argsort(descending=True)[:3] if float(exp.weights[0, t, k]) > 0]
        hits = [float(pointing_game(exp.ossms[0, t, k][None], masks[t][None]).values[0]) for k in order]
        acc[TOP_ONE].hits.append(hits[0] if hits else 0.0)
        acc[TOP_THREE].hits.append(max(hits) if hits else 0.0)
        if order:
            top = exp.ossms[0, t, order[0]][None]
            acc[TOP_ONE].energy.append(float(energy_pointing_game(top, masks[t][None]).values[0]))
            acc[TOP_THREE].energy.append(float(energy_pointing_game(exp.ossms[0, t, order].sum(0)[None],
                                                                    masks[t][None]).values[0]))
        else:
            acc[TOP_ONE].energy.append(0.0)
            acc[TOP_THREE].energy.append(0.0)


def _story(results, components, labels) -> str:
    """What each method is good for, with the table's numbers, and what DecomCAM's components add."""
    from ..viz import static_report as sr
    point = {labels[k]: r.pointing for k, r in results.items()}
    items = "".join(f"<li><b>{html.escape(name)}</b> (pointing {point.get(name, float('nan')):.2f}): {text}</li>"
                    for name, text in GOOD_FOR.items() if name in point)
    one, three = components[TOP_ONE].pointing, components[TOP_THREE].pointing
    body = (f"<ul>{items}</ul><p>What the components add: DecomCAM's top-weighted component alone points in the "
            f"named object in {one:.0%} of cases, and one of its three top components in {three:.0%} (the summed "
            f"map: {point['DecomCAM']:.0%}). The components keep apart what one map blends: the object, its "
            "neighbour, the background, each with the score it restores on its own. Each scene below shows them, "
            "with where each one peaks.</p>")
    return sr.section("Which method for what", body)
