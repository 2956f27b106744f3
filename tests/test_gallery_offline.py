"""The gallery works offline: every docs/gallery page embeds plotly.js once, shows widgets as snapshots, dumps no
dictionaries, and (in Debian's Chromium, every request off the page's own files refused) draws every figure."""
from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

from decomviz.apps.gallery import PLOTLY_MIME, STATE_MIME, WIDGET_MIME, embed_plotlyjs, make_static

ROOT = Path(__file__).resolve().parents[1]
GALLERY = ROOT / "docs" / "gallery"
PAGES = sorted(p for p in GALLERY.glob("0*.html"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
DUMPED = re.compile(r"Figure(Widget)?\(\{|\{'data': \[|(Explorer|VBox|HBox|ComponentScrubber|ClusterGallery|"
                    r"PartInspector|StepThrough)\(children=")


def _notebook_with_outputs():
    nb = nbformat.v4.new_notebook()
    fig = {"data": [{"type": "bar", "y": [1, 2]}], "layout": {"title": {"text": "bars"}}}
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_html", "IPY_MODEL_fig", "IPY_MODEL_btn"]}},
        "html": {"model_name": "HTMLModel", "state": {"value": "<b>status line</b>"}},
        "fig": {"model_name": "AnyModel", "state": {"_widget_data": fig["data"], "_widget_layout": fig["layout"]}},
        "btn": {"model_name": "ButtonModel", "state": {"description": "Run"}},
    }
    nb.metadata["widgets"] = {STATE_MIME: {"state": state}}
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output("display_data", {WIDGET_MIME: {"model_id": "box"}, "text/plain": "VBox(children=(...))"}),
        nbformat.v4.new_output("display_data", {PLOTLY_MIME: fig, "text/plain": "Figure({...})"}),
        nbformat.v4.new_output("execute_result", {"text/plain": "Figure({\n    'data': [...]"}, execution_count=1),
        nbformat.v4.new_output("stream", name="stdout", text="kept\n"),
    ]
    nb.cells = [cell]
    return nb


def test_outputs_become_static_html_without_dumped_dictionaries():
    nb = _notebook_with_outputs()
    make_static(nb)
    outs = nb.cells[0].outputs
    assert len(outs) == 3 and outs[2]["text"] == "kept\n"        # the dumped figure is gone, the stream kept
    snapshot, figure = outs[0]["data"]["text/html"], outs[1]["data"]["text/html"]
    assert "snapshot of an interactive widget" in snapshot and "<b>status line</b>" in snapshot
    assert snapshot.count("Plotly.newPlot") == 1 and "Run" not in snapshot   # its figure; controls left out
    assert "Plotly.newPlot" in figure and "<script src" not in figure and "widgets" not in nb.metadata


def test_figure_widget_arrays_sent_as_buffers_come_back_in_the_snapshot():
    import base64

    import numpy as np
    from decomviz.apps.gallery import widget_snapshot
    y = np.array([0.5, 0.25], np.float32)
    state = {"f": {"model_name": "AnyModel",
                   "state": {"_widget_data": [{"type": "bar", "x": [1, 2], "y": {"dtype": "float32", "shape": [2]}}],
                             "_widget_layout": {}},
                   "buffers": [{"path": ["_widget_data", 0, "y", "buffer"], "encoding": "base64",
                                "data": base64.b64encode(y.tobytes()).decode()}]}}
    assert '"y":[0.5,0.25]' in widget_snapshot("f", state).replace(" ", "")


def test_plotlyjs_is_embedded_once_before_anything_else_and_never_fetched():
    page = ('<html><head><script src="https://cdn.plot.ly/plotly-4.1.1.min.js"></script>'
            '<script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.1.10/require.min.js"></script>'
            "</head><body></body></html>")
    out = embed_plotlyjs(page)
    assert "cdn.plot.ly/plotly" not in out and out.count("<head>") == 1
    assert out.index("window.PlotlyConfig") < out.index("require.min.js")


def test_every_gallery_page_is_built_to_work_offline():
    assert PAGES, "docs/gallery has no pages: run `make gallery`"
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r'<script[^>]*src="https://cdn\.plot\.ly/', text), f"{page.name} loads plotly.js from a CDN"
        assert "window.PlotlyConfig" in text, f"{page.name} does not embed plotly.js"
        assert not DUMPED.search(text), f"{page.name} shows a dumped figure or widget as text"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Debian chromium is missing at {CHROMIUM} (run `make "
                    "browser` or `bash scripts/ensure_chromium.sh`); the offline gallery check needs it")
def test_every_gallery_page_draws_every_figure_offline_in_chromium():
    from playwright.sync_api import sync_playwright
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(offline=True)
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
                          else route.abort())
            for path in PAGES:
                page = context.new_page()
                errors = []
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                page.goto(path.as_uri(), wait_until="load", timeout=120_000)
                page.wait_for_function("() => typeof window.Plotly !== 'undefined'", timeout=60_000)
                page.wait_for_timeout(1500)
                found = page.evaluate("""() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => ({
                    drawn: !!d.querySelector('.main-svg'), traces: (d.data || []).length,
                    h: d.getBoundingClientRect().height}))""")
                blank = [i for i, f in enumerate(found) if not f["drawn"] or f["traces"] == 0 or f["h"] < 20]
                if blank:
                    problems.append(f"{path.name}: figures {blank} of {len(found)} are blank")
                if any("Plotly" in e for e in errors):
                    problems.append(f"{path.name}: {errors[:2]}")
                page.close()
        finally:
            browser.close()
    assert not problems, "\n".join(problems)
