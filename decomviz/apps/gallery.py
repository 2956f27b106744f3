"""`python -m decomviz.apps.gallery`: the notebooks, executed on the bundled model, as HTML pages with their
outputs, for reading on the web (the notebooks in ``notebooks/`` stay without outputs).

Figures load plotly.js from its CDN (``PLOTLY_RENDERER=notebook_connected``), so a page is small and renders in
any browser with a network. Widgets are not stored (their state, every figure of an Explorer, made pages of tens
of megabytes): they need a running kernel (JupyterLab, Voila or Binder) and show as their text here. Nothing is
hand-edited: rerun to refresh.

    python -m decomviz.apps.gallery --out docs/gallery
"""
from __future__ import annotations

import argparse
import html
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build(notebooks, out: Path, timeout: int = 900) -> list:
    """Execute each notebook and write its HTML page and an index into ``out``; returns (name, file, bytes, s)."""
    from nbconvert import HTMLExporter

    out.mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("PLOTLY_RENDERER", "HF_HUB_OFFLINE")}
    os.environ["PLOTLY_RENDERER"] = "notebook_connected"   # the kernels inherit it
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
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=False,
                                resources={"metadata": {"path": str(path.parent)}}).execute()
        body, _ = exporter.from_notebook_node(nb)
        target = out / (path.stem + ".html")
        target.write_text(body, encoding="utf-8")
        pages.append((path.stem, target.name, target.stat().st_size, time.perf_counter() - t0))
        print(f"[gallery] {path.name} -> {target} ({target.stat().st_size / 1e6:.1f} MB, "
              f"{time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return pages


def _write_index(out: Path, pages: list) -> None:
    items = "".join(f'<li><a href="{html.escape(f)}">{html.escape(n)}</a></li>' for n, f, _, _ in pages)
    note = ("Made by <code>python -m decomviz.apps.gallery</code> on the bundled model. Figures are interactive; "
            "the widgets (Explorer, scrubber, step-through, galleries) need a running kernel: open the notebooks "
            "in JupyterLab or Voila.")
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
