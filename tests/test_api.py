"""The public API's edges: constructors keyword-only after the model (positional calls still work, with a
DeprecationWarning), the base classes exported, the documentation's code blocks run as written."""
from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import decomviz as dv
from decomviz.methods.registry import METHODS
from tests.conftest import make_image

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path):
    """The ```python blocks of a Markdown file, in order."""
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def run_blocks(blocks, cwd, timeout=600):
    """Run code blocks one after another in one fresh Python, offline (a registry entry they add stays there)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", "\n\n".join(blocks)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("name", sorted({spec.cls.__name__: name for name, spec in METHODS.items()}.values()))
def test_every_constructor_is_keyword_only_after_the_model(name):
    params = list(inspect.signature(METHODS[name].cls).parameters.values())
    assert params[0].name == "model"
    assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params[1:]), (name, params)


def test_a_positional_call_warns_and_still_works(tiny_rn):
    with pytest.warns(DeprecationWarning, match=r"write DecomCAM\(model, n_components=3, top_channels=40\)"):
        cam = dv.DecomCAM(tiny_rn, 3, 40)
    assert (cam.n_components, cam.top_channels) == (3, 40)
    with pytest.warns(DeprecationWarning, match="layer='visual.layer3'"):
        assert dv.GradCAM(tiny_rn, "visual.layer3").layer == "visual.layer3"
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # keywords: no warning
        dv.GradCAM(tiny_rn, layer="visual.layer3")
    with pytest.raises(TypeError, match="both by position and by keyword"):
        dv.DecomCAM(tiny_rn, 3, n_components=4)
    with pytest.raises(ValueError, match="n_components"):   # still validated by the declaration
        dv.DecomCAM(tiny_rn, n_components=0)


def test_the_base_classes_and_the_normalised_input_marker_are_exported(tiny_rn):
    assert {"Method", "CAM", "Normalized"} <= set(dv.__all__)
    assert all(issubclass(spec.cls, dv.Method) for spec in METHODS.values())
    x = tiny_rn.prepare(make_image(0)).tensor
    exp = dv.GradCAM(tiny_rn)(dv.Normalized(x), "a red circle")
    assert exp.saliency.shape[:2] == (1, 1)


def test_the_extending_guide_runs_as_written(tmp_path):
    blocks = python_blocks(ROOT / "docs" / "extending.md")
    assert len(blocks) >= 4
    check = ("assert 'xgradcam' in dv.METHODS and exp.method == 'xgradcam'\n"
             "import pytest\n"
             "with pytest.raises(ValueError, match='radius'):\n"
             "    PeakCAM(model, radius=-1)\n"
             "print('OK')")
    out = run_blocks(blocks + [check], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "peakcam 1 (1, 1, 224, 224)" in out.stdout and out.stdout.strip().endswith("OK"), out.stdout


def test_the_readme_is_a_front_door_that_runs_as_written(tmp_path):
    """The README: at most 150 lines, a picture, the methods table as the registry makes it, and Python blocks
    that run offline as written (the first makes a PNG of the map)."""
    from decomviz.apps.docs import PICTURE, fill_readme
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert f"]({PICTURE.as_posix()})" in text and (ROOT / PICTURE).is_file()
    assert fill_readme(text) == text, "run: python -m decomviz.apps.docs"
    assert all(f"`{name}`" in text for name in METHODS)
    blocks = python_blocks(ROOT / "README.md")
    assert blocks and "dv.load_model()" in blocks[0]
    out = run_blocks(blocks, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "map.png").is_file() and "the map peaks inside the object: True" in out.stdout
