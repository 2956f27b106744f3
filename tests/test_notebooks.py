"""Every notebook runs top to bottom, headless, in a kernel of this virtual environment, on the bundled model.

Times are written to tests/output/notebook_times.txt (no timing asserts: the budget is 2 minutes each on a
2-core CPU; see the file after a run).
"""
from __future__ import annotations

import copy
import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0[0-9]_*.ipynb"))
OUTPUT = Path(__file__).resolve().parent / "output"
NAMES = ["01_quickstart", "02_component_scrubbing", "03_teaching", "04_dataset_clusters", "05_part_discovery",
         "06_benchmarks"]


def _bundled_model_present() -> bool:
    import decomviz
    return (Path(decomviz.__file__).parent / "assets" / "parts-rn" / "open_clip_config.json").is_file()


def test_the_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == NAMES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_saved_notebook_is_clean_and_uses_the_bundled_model(path):
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), \
        f"{path.name} has saved outputs: clear them before committing"
    assert any("dv.load_model()" in c.source for c in code) or "bench" in path.stem, \
        f"{path.name} must run on the bundled model"
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 3, f"{path.name} needs its narrative"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path):
    assert _bundled_model_present(), "the bundled model decomviz/assets/parts-rn is missing (the notebooks load it)"
    nb = nbformat.read(str(path), as_version=4)
    run = copy.deepcopy(nb)
    # A first cell (only in this in-memory copy) reports which interpreter the kernel runs.
    run.cells.insert(0, nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    client = nbclient.NotebookClient(run, timeout=900, kernel_name="python3", allow_errors=False,
                                     resources={"metadata": {"path": str(path.parent)}})
    env_before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # the kernel inherits it: no network, ever
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        if env_before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = env_before
    seconds = time.perf_counter() - start

    kernel_python = "".join(o.get("text", "") for o in run.cells[0].outputs).strip()
    assert Path(kernel_python).resolve() == Path(sys.executable).resolve(), \
        f"the kernel ran {kernel_python}, not this environment's {sys.executable}"
    for cell in run.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{path.name}: {out.get('ename')}: {out.get('evalue')}"
    OUTPUT.mkdir(exist_ok=True)
    with open(OUTPUT / "notebook_times.txt", "a") as fh:
        fh.write(f"{path.stem}\t{seconds:.1f} s\t{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    print(f"{path.stem}: {seconds:.1f} s")
    # widget views were displayed
    shown = [o for c in run.cells for o in c.get("outputs", [])
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    if path.stem != "06_benchmarks":  # 06 shows plain figures
        assert shown, f"{path.name} displayed no widget"


def test_binder_builds_the_package():
    """repo2docker: binder/requirements.txt pins the heavy parts (CPU torch, the Jupyter front ends), postBuild
    installs the repository with its dependencies from pyproject.toml (so none can be missed)."""
    import re

    binder = ROOT / "binder"
    reqs = (binder / "requirements.txt").read_text()
    names = {re.split(r"[<>=\[ ;]", line.strip())[0].lower().replace("_", "-")
             for line in reqs.splitlines() if line.strip() and not line.startswith(("#", "-"))}
    assert {"torch", "open-clip-torch", "ipywidgets", "plotly", "anywidget", "voila", "jupyterlab"} <= names
    assert "download.pytorch.org/whl/cpu" in reqs
    post = binder / "postBuild"
    assert os.access(post, os.X_OK), "binder/postBuild must be executable"
    text = post.read_text()
    assert re.search(r"^pip install [^\n]*-e \.\s*$", text, re.M) and "--no-deps" not in text


@pytest.mark.slow
def test_gallery_builds_a_page_with_outputs(tmp_path):
    pytest.importorskip("nbconvert")
    from decomviz.apps.gallery import main
    assert main(["--out", str(tmp_path), "--only", "06_benchmarks"]) == 0
    page = (tmp_path / "06_benchmarks.html").read_text(encoding="utf-8")
    assert "jp-OutputArea" in page and "Traceback" not in page
    assert "06_benchmarks.html" in (tmp_path / "index.html").read_text()
