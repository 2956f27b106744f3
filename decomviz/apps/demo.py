"""`decomviz demo`: two-object PartsWorld scenes explained by DecomCAM, two CAM baselines and occlusion, with
DecomCAM's components and object against part prompts, as a static HTML report (WebP pictures, no JavaScript)."""
from __future__ import annotations

import html
import sys
import time
from pathlib import Path

from .evaluation import PART_TEMPLATE, format_table, localise

#: The demo's methods, in the setting the README recommends for "where is this object?": the softmax over the
#: scene's prompts (class-discriminative), with occlusion as the model-agnostic reference.
DEMO_METHODS = {"decomcam": "DecomCAM", "gradcam": "Grad-CAM", "layercam": "LayerCAM",
                "occlusion": "Occlusion (reference)"}
SCORE = "softmax"


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
    cams = {name: make_method(name, clip, score=SCORE) for name in DEMO_METHODS}
    world = PartsWorld(n_scenes, seed=seed, n_objects=2)
    sections = []

    def report(i, scene, exps):
        print(f"[decomviz] scene {i + 1}/{n_scenes}: {scene.caption}", file=sys.stderr, flush=True)
        sections.append(_scene_section(i, scene, exps, cams, clip))

    results = localise(cams, world, on_scene=report)
    table = format_table({DEMO_METHODS[k]: r for k, r in results.items()})
    head = sr.section(
        f"What this report shows ({clip.name}, layer {clip.default_layer})",
        f"<pre>{html.escape(table)}</pre>",
        note=(f"{n_scenes} two-object PartsWorld scenes (seed {seed}). For each object, the prompt 'a photo of a "
              f"{{class}}' is explained with {sr.term('score s(x, t)', 'the softmax score')} over the scene's two "
              "prompts (the class-discriminative question: why this object rather than the other) by DecomCAM, "
              "Grad-CAM, LayerCAM and occlusion, which needs no gradient and serves as the reference. Then "
              f"DecomCAM's components ({sr.term('OSSM', 'OSSMs')}, with the {sr.term('weight w')} and "
              f"{sr.term('contribution d')} of each) and part prompts beside the object prompt, with the ground "
              "truth: each part's mask and how much removing it lowers the prompt's score (the model's own "
              f"evidence of what it uses). Table: {sr.term('pointing game')} (share of hits), "
              f"{sr.term('energy')} and {sr.term('s/pair')}; terms are defined at the end. Note: the bundled "
              "models barely use parts (colour binding at chance, the named part decisive in about 1 case in 4; "
              "README and BENCHMARKS.md), so part prompts mostly give the object's map: the removal drops under "
              "each part prompt are the model's own evidence of which parts matter to it."))
    sr.write_page(out_path, f"decomviz demo: {clip.name}", [head] + sections)
    print(f"\nPointing game on the named object ({clip.name}, {n_scenes} scenes, 'a photo of a {{class}}', "
          f"{SCORE} score):")
    print(table)
    size = out_path.stat().st_size / 1e6
    print(f"\nReport: {out_path.resolve()} ({size:.1f} MB; total {time.perf_counter() - t0:.1f} s)")
    return 0


def _scene_section(i, scene, exps, cams, clip) -> str:
    """One scene: every method per object, DecomCAM's components, and object against part prompts."""
    from ..metrics import part_importance
    from ..ops import resize_masks
    from ..viz import static_report as sr
    from ..viz.images import part_highlight
    from ..viz.pairs import flag_note

    blocks = []
    for t, obj in enumerate(scene.objects):
        blocks.append(f"<h3>“{html.escape(exps['decomcam'].prompts[t])}”</h3>")
        blocks.append(sr.methods_row(exps, 0, t, labels=DEMO_METHODS))
    obj = scene.objects[0]
    blocks.append(f"<h3>What each DecomCAM component adds: “{html.escape(exps['decomcam'].prompts[0])}”</h3>")
    blocks.append(sr.components_row(exps["decomcam"], 0, 0))
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
        cap = f"DecomCAM: “{html.escape(prompt)}”" + ("" if drop is None else f"<br>removing the {own[t - 1].name} "
                                                                          f"lowers its cosine by {drop:+.3f}")
        panels.append(sr.picture(part_exp.images[0].numpy(), part_exp.saliency[0, t].numpy(), cap,
                                 flag=flag_note(part_exp, 0, t), width=180))
    size, pixels = part_exp.saliency.shape[-2:], part_exp.images[0].numpy()
    masks = [sr.picture(part_highlight(pixels, resize_masks(p.mask[None], size)[0].numpy(), j), None,
                        f"ground truth: the {html.escape(p.name)}", width=180) for j, p in enumerate(own)]
    blocks.append(f"<h3>Object against part prompts: the {html.escape(obj.label)}</h3>")
    blocks.append(sr.row(panels))
    blocks.append(sr.row(masks))
    return sr.section(f"Scene {i + 1}: {scene.caption}", *blocks)
