"""`python -m decomviz.apps.gallery`: the notebooks, executed on the bundled model, as HTML pages with their
outputs, for reading on the web (the notebooks in ``notebooks/`` stay without outputs).

Every page opens offline: plotly.js is embedded once per page (in its head) and each figure is a plain div that
uses it. Widgets are shown as a snapshot: their figures, pictures and text as they were after the notebook ran
(the controls need a running kernel: JupyterLab, Voila or Binder); nothing is shown as Python text, and a figure
is never dumped as a dictionary. Nothing is hand-edited: rerun to refresh.

    python -m decomviz.apps.gallery --out docs/gallery
"""
from __future__ import annotations

import argparse
import html
import os
import re
import sys
import time
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[2]


def build(notebooks, out: Path, timeout: int = 900) -> list:
    """Execute each notebook and write its HTML page and an index into ``out``; returns (name, file, bytes, s)."""
    from nbconvert import HTMLExporter

    out.mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("PLOTLY_RENDERER", "HF_HUB_OFFLINE")}
    os.environ["PLOTLY_RENDERER"] = "plotly_mimetype"   # the kernels inherit it: figures as JSON, drawn here
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        pages = _execute_all(notebooks, out, timeout, HTMLExporter(template_name="lab"))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    _write_index(out, pages)
    return pages


def _execute_all(notebooks, out: Path, timeout: int, exporter) -> list:
    import nbclient
    import nbformat
    pages = []
    for path in notebooks:
        t0 = time.perf_counter()
        nb = nbformat.read(str(path), as_version=4)
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                                resources={"metadata": {"path": str(path.parent)}}).execute()
        make_static(nb)
        body = embed_plotlyjs(exporter.from_notebook_node(nb)[0])
        target = out / (path.stem + ".html")
        target.write_text(body, encoding="utf-8")
        pages.append((path.stem, target.name, target.stat().st_size, time.perf_counter() - t0))
        print(f"[gallery] {path.name} -> {target} ({target.stat().st_size / 1e6:.1f} MB, "
              f"{time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return pages


PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"
_DUMPED = re.compile(r"^\s*(Figure(Widget)?\(\{|\{['\"](data|layout)['\"])")


def make_static(nb) -> None:
    """Rewrite an executed notebook's outputs for a static page: plotly figures as divs that use the page's one
    copy of plotly.js, widgets as snapshots (`widget_snapshot`), dumped figure dictionaries dropped. The widget
    state (megabytes) is removed once read."""
    state = nb.metadata.get("widgets", {}).get(STATE_MIME, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data is not None and WIDGET_MIME in data:
                out["data"] = {"text/html": widget_snapshot(data[WIDGET_MIME].get("model_id"), state)}
            elif data is not None and PLOTLY_MIME in data:
                out["data"] = {"text/html": figure_div(data[PLOTLY_MIME])}
            elif data is not None and set(data) <= {"text/plain"} and _DUMPED.match(str(data.get("text/plain", ""))):
                continue
            kept.append(out)
        cell["outputs"] = kept
    nb.metadata.pop("widgets", None)


def figure_div(fig: dict, height: Optional[int] = None) -> str:
    """A plotly figure (its JSON dict) as a div that draws with the page's plotly.js (no script of its own)."""
    import plotly.io as pio
    layout = dict(fig.get("layout") or {})
    if height and "height" not in layout:
        layout["height"] = height
    return pio.to_html({"data": fig.get("data") or [], "layout": layout}, include_plotlyjs=False,
                       full_html=False, validate=False, config={"displaylogo": False})


def widget_snapshot(model_id, state: dict) -> str:
    """A widget as it looked after the notebook ran: its figures, pictures and text in order, with a note that
    its controls need a running kernel. Controls themselves (buttons, sliders, lists) are left out."""
    parts: List[str] = []
    _walk(model_id, state, parts, set())
    note = ('<div class="decomviz-snapshot-note" style="color:#555;font-size:13px;margin:4px 0">A snapshot of an '
            "interactive widget: its controls need a running kernel (open the notebook in JupyterLab or "
            "Voila).</div>")
    return note + "".join(parts)


def _walk(model_id, state: dict, parts: List[str], seen: set) -> None:
    if not isinstance(model_id, str):
        return
    model_id = model_id.replace("IPY_MODEL_", "")
    entry = state.get(model_id)
    if entry is None or model_id in seen:
        return
    seen.add(model_id)
    name, st = entry.get("model_name", ""), _with_buffers(entry)
    if "_widget_data" in st:  # a plotly FigureWidget
        try:
            parts.append(figure_div({"data": st.get("_widget_data"), "layout": st.get("_widget_layout")}))
        except (TypeError, ValueError) as err:  # never fail a page on one figure: say so in its place
            parts.append(f"<p><i>(a figure that could not be drawn here: {html.escape(str(err)[:120])})</i></p>")
    elif name == "HTMLModel" and st.get("value"):
        parts.append(f"<div>{st['value']}</div>")
    elif name in ("LabelModel", "HTMLMathModel") and st.get("value"):
        parts.append(f"<div>{html.escape(str(st['value']))}</div>")
    elif name == "ImageModel":
        data = next((b.get("data") for b in entry.get("buffers", []) if b.get("path") == ["value"]), None)
        if data:
            fmt = st.get("format", "png")
            parts.append(f'<img src="data:image/{html.escape(fmt)};base64,{data}" style="max-width:100%">')
    elif name == "OutputModel":
        for out in st.get("outputs", []):
            d = out.get("data", {})
            if PLOTLY_MIME in d:
                parts.append(figure_div(d[PLOTLY_MIME]))
            elif WIDGET_MIME in d:
                _walk(d[WIDGET_MIME].get("model_id"), state, parts, seen)
            elif "image/png" in d:
                parts.append(f'<img src="data:image/png;base64,{d["image/png"]}" style="max-width:100%">')
            elif "text/html" in d:
                parts.append(f"<div>{d['text/html']}</div>")
    for child in st.get("children", []) or []:
        _walk(child, state, parts, seen)


def _with_buffers(entry: dict) -> dict:
    """A widget's state with its binary buffers put back: numpy arrays a FigureWidget sent as
    {"dtype", "shape", "buffer": <bytes>} become plain lists (an Image's value stays base64 for its data URI)."""
    import base64
    from copy import deepcopy

    import numpy as np
    st = deepcopy(entry.get("state", {}))
    for buf in entry.get("buffers", []) or []:
        path = list(buf.get("path") or [])
        if not path or path == ["value"]:
            continue
        node = st
        try:
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = base64.b64decode(buf.get("data", ""))
        except (KeyError, IndexError, TypeError):
            continue

    def decode(x):
        if isinstance(x, dict):
            raw = x.get("buffer", x.get("value"))
            if {"dtype", "shape"} <= set(x) and isinstance(raw, (bytes, bytearray)):
                try:
                    return np.frombuffer(raw, dtype=x["dtype"]).reshape(x["shape"]).tolist()
                except (TypeError, ValueError):
                    return None
            return {k: decode(v) for k, v in x.items()}
        if isinstance(x, list):
            return [decode(v) for v in x]
        return None if isinstance(x, (bytes, bytearray)) else x   # any other binary: not drawable here
    return decode(st)


def embed_plotlyjs(page: str) -> str:
    """The page with plotly.js inlined once, first in its head (before any require.js, so that it defines
    window.Plotly), and with no script that loads plotly.js from a CDN."""
    from plotly.offline import get_plotlyjs
    page = re.sub(r'<script[^>]*src="https://cdn\.plot\.ly/[^"]*"[^>]*>\s*</script>', "", page)
    script = ('<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: "local"};</script>'
              f'<script type="text/javascript">{get_plotlyjs()}</script>')
    i = page.index("<head>") + len("<head>")
    return page[:i] + script + page[i:]


def _write_index(out: Path, pages: list) -> None:
    """The index lists every notebook page in the folder (also those of an earlier --only build)."""
    names = sorted({f for _, f, _, _ in pages} | {p.name for p in out.glob("0*.html")})
    items = "".join(f'<li><a href="{html.escape(f)}">{html.escape(Path(f).stem)}</a></li>' for f in names)
    note = ("Made by <code>python -m decomviz.apps.gallery</code> on the bundled model. Every page works offline: "
            "figures are interactive (plotly.js is embedded in each page); widgets (Explorer, scrubber, "
            "step-through, galleries) show as a snapshot of how they looked after the notebook ran, and their "
            "controls need a running kernel: open the notebooks in JupyterLab or Voila.")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>decomviz notebooks</title></head><body>"
            f"<h1>decomviz notebooks, executed</h1><p>{note}</p><ul>{items}</ul></body></html>")
    (out / "index.html").write_text(page, encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/gallery", help="folder for the HTML pages (default: docs/gallery)")
    ap.add_argument("--only", nargs="*", default=None, help="notebook names (stems) to build (default: all)")
    args = ap.parse_args(argv)
    notebooks = sorted((ROOT / "notebooks").glob("0[0-9]_*.ipynb"))
    if args.only:
        unknown = set(args.only) - {p.stem for p in notebooks}
        if unknown:
            ap.error(f"no notebook named {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(p.stem for p in notebooks)}")
        notebooks = [p for p in notebooks if p.stem in args.only]
    build(notebooks, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
