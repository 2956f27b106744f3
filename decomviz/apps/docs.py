"""Writes docs/methods.md from the method registry, so that the docs list every method and knob as the code
declares them. ``python -m decomviz.apps.docs`` rewrites it; a test checks that it is current."""
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
            lines.append(f"| `{kname}` | {_value(default)} | {_allowed(knob)} | {knob.help} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    out = Path(__file__).resolve().parents[2] / "docs" / "methods.md"
    out.write_text(methods_markdown())
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
