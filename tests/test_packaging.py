"""Packaging: binder/requirements.txt is made from pyproject.toml, and a built wheel installs into a fresh
environment and explains an image with its bundled model."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import make_image

ROOT = Path(__file__).resolve().parents[1]


def _binder_script():
    spec = importlib.util.spec_from_file_location("binder_requirements", ROOT / "scripts" / "binder_requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_binder_requirements_are_made_from_pyproject(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "binder_requirements.py"), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr + " (run: python scripts/binder_requirements.py)"
    text = (ROOT / "binder" / "requirements.txt").read_text()
    assert "download.pytorch.org/whl/cpu" in text and "jupyterlab" in text and "voila" in text
    # a dependency added to pyproject.toml reaches the file (so a stale one is caught above)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text((ROOT / "pyproject.toml").read_text().replace(
        'dependencies = [\n', 'dependencies = [\n    "somethingnew>=1",\n', 1))
    assert "somethingnew>=1" in _binder_script().requirements(pyproject)


@pytest.mark.slow
def test_a_built_wheel_installs_into_a_fresh_environment_and_explains_an_image(tmp_path):
    """The wheel alone (package data included: the bundled model) explains an image through its console script.
    The fresh environment sees the project environment's packages (torch and the rest, not decomviz itself) through
    a .pth file, so nothing is downloaded."""
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file() and not name.startswith(("tests/", "notebooks/", "docs/", "benchmarks/")):
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), str(src)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("decomviz-*.whl")

    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True, timeout=120)
    py = fresh / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "project_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q",
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    where = subprocess.run([str(py), "-c", "import decomviz; print(decomviz.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert where.returncode == 0 and where.stdout.startswith(str(fresh)), where.stdout + where.stderr
    Image.fromarray(make_image(0)).save(tmp_path / "photo.png")
    run = subprocess.run([str(fresh / "bin" / "decomviz"), "explain", str(tmp_path / "photo.png"), "--prompt",
                          "a red circle", "--compare", "", "--out", str(tmp_path / "maps") + "/"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert [p.name for p in (tmp_path / "maps").iterdir()] == ["photo_a-red-circle.png"]
