"""Writes docs/methods.md and the README's methods table from the method registry, so that the docs list every
method and knob as the code declares them. ``python -m decomviz.apps.docs`` rewrites both; tests check that they
are current."""
from __future__ import annotations

import sys
from pathlib import Path

from ..knobs import Knob
from ..methods.registry import METHODS

HEADER = """# Methods and their knobs

Generated from `decomviz/methods/registry.py` and the methods' knob declarations by
`python -m decomviz.apps.docs`; do not edit by hand. Every knob below is an argument of the class, an option of
`decomviz explain` (`--knob-name`), and a widget of the Explorer.
"""


def _value(v) -> str:
    return "None" if v is None else repr(v)


def _allowed(knob: Knob) -> str:
    if knob.kind == "choice":
        return ", ".join(_value(c) for c in knob.choices)
    if knob.kind == "layer":
        return "a name in `model.layers`"
    if knob.kind == "bool":
        return "True, False"
    return (knob.kind + knob.range_text()).strip()


def methods_markdown() -> str:
    lines = [HEADER]
    lines += ["| name | class | what it does | fixed |", "|---|---|---|---|"]
    for name, spec in METHODS.items():
        fixed = ", ".join(f"{k}={_value(v)}" for k, v in spec.fixed.items())
        lines.append(f"| `{name}` | `{spec.cls.__name__}` | {spec.summary} | {fixed} |")
    done = set()
    for name, spec in METHODS.items():
        if spec.cls in done:
            continue
        done.add(spec.cls)
        lines += ["", f"## `{spec.cls.__name__}`", "", "| knob | default | allowed | meaning |", "|---|---|---|---|"]
        for kname, knob in spec.cls.knobs().items():
            default = spec.defaults.get(kname, spec.fixed.get(kname))
            shown = knob.auto[0] if default is None and knob.auto is not None else _value(default)
            lines.append(f"| `{kname}` | {shown} | {_allowed(knob)} | {knob.help} |")
    return "\n".join(lines) + "\n"


README_BEGIN = "<!-- the methods table: made by python -m decomviz.apps.docs from the registry -->"
README_END = "<!-- end of the methods table -->"


def readme_methods_table() -> str:
    """The README's table: one line per registered method, its name for `dv.make_method` and what it does."""
    lines = ["| method | `dv.make_method(name, model)` | what it does |", "|---|---|---|"]
    lines += [f"| {spec.label} | `{name}` | {spec.summary} |" for name, spec in METHODS.items()]
    return "\n".join(lines)


def fill_readme(text: str) -> str:
    """``text`` (the README) with the methods table between its markers made afresh."""
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"The README lacks the markers of the methods table: {README_BEGIN} ... {README_END}")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_BEGIN}\n{readme_methods_table()}\n{README_END}{tail}"


PICTURE = Path("docs") / "images" / "readme-scene.png"


def readme_picture(out: Path, seed: int = 2024, n_components: int = 4) -> Path:
    """The README's picture: one PartsWorld scene, DecomCAM's map for its first object on the bundled model,
    and its strongest components with their weights, side by side (a PNG)."""
    from PIL import Image, ImageDraw

    from ..data import PartsWorld
    from ..methods import DecomCAM
    from ..models import load_model
    from ..viz.images import overlay
    model = load_model()
    world = PartsWorld(20, seed=seed, n_objects=(1, 1), distractors=False)
    for scene in world:   # the first scene whose map peaks inside its object (a picture, not a benchmark)
        prompt = f"a photo of a {scene.objects[0].label}"
        exp = DecomCAM(model)(scene.image, prompt)
        peak = divmod(int(exp.saliency[0, 0].argmax()), exp.saliency.shape[-1])
        if not bool(exp.flags["empty_map"].any()) and scene.objects[0].mask[peak]:
            break
    size = 224
    order = exp.weights[0, 0].argsort(descending=True)[:n_components].tolist()
    panels = [(scene.image.resize((size, size)), "the scene"),
              (overlay(scene.image, exp.saliency_on_original(0, 0)).resize((size, size)), f"DecomCAM: '{prompt}'")]
    for k in order:
        ossm = exp.ossms[0, 0, k]
        ossm = ossm / ossm.max().clamp_min(1e-12)
        panels.append((overlay(scene.image, ossm).resize((size // 2 + 40, size // 2 + 40)),
                       f"#{k + 1}, w={float(exp.weights[0, 0, k]):.2f}"))
    width = sum(p.width for p, _ in panels) + 10 * (len(panels) + 1)
    sheet = Image.new("RGB", (width, size + 40), "white")
    draw, x = ImageDraw.Draw(sheet), 10
    for picture, label in panels:
        sheet.paste(picture, (x, 10 + (size - picture.height)))
        draw.text((x, size + 16), label, fill="black")
        x += picture.width + 10
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=128).save(out, optimize=True)   # a palette PNG: small enough for the repository
    return out


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    root = Path(__file__).resolve().parents[2]
    if "--picture" in argv:
        print(f"wrote {readme_picture(root / PICTURE)}", file=sys.stderr)
        return 0
    out = root / "docs" / "methods.md"
    out.write_text(methods_markdown())
    print(f"wrote {out}", file=sys.stderr)
    readme = root / "README.md"
    if README_BEGIN in readme.read_text():
        readme.write_text(fill_readme(readme.read_text()))
        print(f"wrote the methods table of {readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
