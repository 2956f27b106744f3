"""How long a Voila page takes to draw several plotly figure widgets: plotly's own FigureWidget, which sends its
JavaScript module (about 5 MB) with every figure, against decomviz's, which sends it once per kernel
(`decomviz.widgets.figure_widget`). Each page is a notebook of one cell showing N small heat maps side by side,
written to a temporary folder and served by a Voila of its own on 127.0.0.1; Chromium as in bench_voila.py.
Prints the seconds from opening the page to the last figure drawn.

    HF_HUB_OFFLINE=1 python benchmarks/bench_figure_widgets.py [--figures 1 4] [--repeat 2]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_voila as bv  # noqa: E402

CELL = """import numpy as np, ipywidgets as w, plotly.graph_objects as go
from decomviz.widgets.figure_widget import FigureWidget
make = {cls}
w.HBox([make(go.Figure(go.Heatmap(z=np.arange(12).reshape(3, 4) + i)).update_layout(width=300, height=250))
        for i in range({n})])"""
CLASSES = {"plotly": "go.FigureWidget", "decomviz": "FigureWidget"}


def _notebook(source: str) -> dict:
    return {"cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                       "source": source}],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--figures", nargs="*", type=int, default=[1, 4])
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright
    folder = Path(tempfile.mkdtemp(prefix="decomviz-figure-widgets-"))
    shutil.copy(bv.NOTEBOOKS / "voila.json", folder / "voila.json")
    for kind, cls in CLASSES.items():
        for n in args.figures:
            (folder / f"{kind}_{n}.ipynb").write_text(json.dumps(_notebook(CELL.format(cls=cls, n=n))))
    bv.NOTEBOOKS = folder
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=bv.CHROMIUM, args=bv.CHROMIUM_ARGS)
            for _ in range(args.repeat):
                for kind in CLASSES:
                    for n in args.figures:
                        proc, url = bv.start_voila()
                        try:
                            page = browser.new_page()
                            page.route("**/*", bv._block_external)
                            t0 = time.perf_counter()
                            page.goto(url + f"voila/render/{kind}_{n}.ipynb", timeout=120_000)
                            page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot .main-svg')"
                                                   f".length >= {n}", timeout=120_000, polling=50)
                            print(f"{kind:8s} FigureWidget x {n}: {time.perf_counter() - t0:.2f} s from opening the "
                                  "page to the last figure drawn", flush=True)
                            page.close()
                        finally:
                            os.killpg(proc.pid, signal.SIGTERM)
                            proc.wait(timeout=20)
            browser.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
