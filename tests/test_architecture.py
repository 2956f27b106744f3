"""The layout's rules, checked on the source: imports point down the layers, no import circles, the library
never imports the applications or the package facade, and no module grows past 450 lines."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "decomviz"

# Bottom to top. A module may import from its own layer or a lower one.
LAYERS = [
    ("decomviz._version", "decomviz.ops", "decomviz.knobs", "decomviz.images"),
    ("decomviz.data", "decomviz.viz"),
    ("decomviz.explanation",),
    ("decomviz.models",),
    ("decomviz.methods",),
    ("decomviz.metrics",),
    ("decomviz.analysis",),
    ("decomviz.widgets", "decomviz.datasets"),  # decomviz.datasets: the public face of the dataset loaders
    ("decomviz.apps",),
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _exists(module: str) -> bool:
    base = ROOT.parent.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(path: Path, text: str = None):
    """Every decomviz module that ``path`` (or ``text`` as if it were there) imports, at module level or
    inside functions."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "decomviz":
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "decomviz":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield sub if _exists(sub) else target


def _graph():
    return {_module_name(p): sorted(set(_imports(p))) for p in ROOT.rglob("*.py")}


def _layer(module: str):
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    return None


def test_every_module_has_a_layer():
    unplaced = [m for m in _graph() if m != "decomviz" and _layer(m) is None]
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"


def test_imports_point_down():
    bad = []
    for src, targets in _graph().items():
        if src == "decomviz":
            continue
        for dst in targets:
            if dst == "decomviz":
                bad.append(f"{src} imports the package facade")
            elif _layer(dst) > _layer(src):
                bad.append(f"{src} (layer {_layer(src)}) imports {dst} (layer {_layer(dst)})")
    assert not bad, "\n".join(bad)


def test_library_never_imports_the_applications():
    bad = [f"{src} -> {dst}" for src, targets in _graph().items()
           if not src.startswith("decomviz.apps") and src != "decomviz"
           for dst in targets if dst.startswith("decomviz.apps")]
    assert not bad, bad


def _cycles(edges):
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in edges.get(node, ()):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in list(edges):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_circles():
    graph = _graph()
    # a package's __init__ re-exporting its own modules is not a dependency of those modules on it
    edges = {src: [d for d in dsts if not (src != "decomviz" and d.startswith(src + ".") and
                                           (ROOT.parent / Path(*src.split("."))).is_dir())]
             for src, dsts in graph.items()}
    cycles = _cycles(edges)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checks_would_catch_a_violation():
    """An upward import, a facade import and a circle are all seen (so that a green run means something)."""
    ops = ROOT / "ops.py"
    assert set(_imports(ops, "from .widgets import Explorer\nfrom . import metrics\n")) == \
        {"decomviz.widgets", "decomviz.metrics"}
    assert _layer("decomviz.widgets") > _layer("decomviz.ops")
    assert set(_imports(ROOT / "methods" / "base.py", "def f():\n    from .. import load_model\n")) == {"decomviz"}
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"]}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": ["b"], "b": []}) == []


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path):
    n = len(path.read_text().splitlines())
    assert n < 450, f"{path.relative_to(ROOT)} has {n} lines: split it where it holds more than one idea"


def test_nothing_cites_files_outside_the_repository():
    hits = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if "shared/" in p.read_text()]
    assert not hits, hits


#: names of modules inside open_clip / timm / Hugging Face towers; only the tower adapters may spell them
_FAMILY_NAMES = ("attnpool", "resblocks", "ln_post", "visual.layer", "visual.transformer", "vision_model",
                 "encoder.layers")


def test_only_the_tower_adapters_name_modules_of_a_model_family():
    """The methods, metrics, analysis and widgets ask the tower adapter (`models/towers/`) for a family's
    layers, pools and blocks; a module name of one family written elsewhere breaks every other family."""
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("models/", "apps/")):  # the adapters, the loader's messages; applications apart
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.append(node.value)
            elif isinstance(node, ast.Attribute):
                names.append(node.attr)
            for name in names:
                if any(n in name for n in _FAMILY_NAMES) and len(name) < 80:   # not a docstring
                    offenders.append(f"{rel}:{node.lineno}: {name!r}")
    assert offenders == [], "ask the tower adapter instead:\n" + "\n".join(offenders)


def test_one_function_writes_the_protocol_record():
    """Method.record writes the record; an Explanation's params and a bank's protocol both start from it, so
    nothing else in the library spells out the versions it keeps (a training record, in apps/, is another)."""
    writers = [p.relative_to(ROOT).as_posix() for p in sorted(ROOT.rglob("*.py"))
               if '"open_clip": _open_clip_version()' in p.read_text() and "apps" not in p.parts]
    assert writers == ["methods/base.py"], writers


def test_the_code_is_lint_clean():
    """`ruff check` with the configuration in pyproject.toml (pycodestyle errors and warnings, pyflakes)."""
    import shutil
    import subprocess
    import sys
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install 'decomviz[test]' installs it)")
    run = subprocess.run([ruff, "check", "--output-format", "concise", str(ROOT.parent)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-1000:]
