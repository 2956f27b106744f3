"""Self-contained HTML reports (plotly.js inlined once, so they open offline)."""
from __future__ import annotations

import html
import os
from typing import Iterable, Optional, Union

import plotly.io as pio

from ..ops import atomic_write

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#222}} pre{{background:#f5f5f5;padding:12px;
overflow-x:auto}} .fig{{margin:18px 0}}</style></head>
<body><h1>{title}</h1>{intro}{body}</body></html>
"""


def report_html(figures: Iterable, title: str, intro: str = "", preformatted: Optional[str] = None) -> str:
    """An HTML page with the figures; plotly.js is embedded in the first one only."""
    parts = []
    if preformatted:
        parts.append(f"<pre>{html.escape(preformatted)}</pre>")
    for i, fig in enumerate(figures):
        parts.append('<div class="fig">' + pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0),
                                                      config={"displaylogo": False}) + "</div>")
    return PAGE.format(title=html.escape(title), intro=f"<p>{html.escape(intro)}</p>" if intro else "",
                       body="\n".join(parts))


def write_report(path: Union[str, os.PathLike], figures: Iterable, title: str, **kw) -> str:
    page = report_html(figures, title, **kw)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Cannot write the report: folder '{folder}' does not exist.")
    with atomic_write(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
