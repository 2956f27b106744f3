"""plotly's FigureWidget with its 5 MB of JavaScript sent to a page once, not once per figure.

plotly's FigureWidget is an anywidget whose module (plotly.js and the widget, about 5 MB) is part of every
figure's state: each FigureWidget sends it to the page again, and the page evaluates it again. In Voila on 2 cores
a page of four plotly FigureWidgets was drawn 8.5-8.6 s after it was opened, one of them 5.3-5.8 s; four of this
class 5.5-5.7 s (`benchmarks/bench_figure_widgets.py`).

Here each figure's module is a small loader. One live figure per kernel, the carrier, also holds plotly's module
in `_plotly_module`; the page imports it once, and every loader waits for that one import. When the carrier is
closed, the module moves to another live figure, so that a page opened later (a reload, a second view) still
finds it.
"""
from __future__ import annotations

import weakref
from functools import lru_cache
from pathlib import Path
from typing import List, Optional

import plotly
import plotly.graph_objects as go
import traitlets

# The page keeps one import per plotly version, so that two kernels of different versions on one page (JupyterLab)
# do not share a module.
_LOADER = """
const KEY = Symbol.for("decomviz.plotly-figure-widget/" + %(version)s);

function shared() {
  if (!globalThis[KEY]) {
    let resolve;
    const promise = new Promise((r) => { resolve = r; });
    globalThis[KEY] = { promise, resolve, started: false };
  }
  return globalThis[KEY];
}

function importFrom(model) {
  const s = shared();
  const code = model.get("_plotly_module");
  if (!code || s.started) return;
  s.started = true;
  const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
  import(url).then((m) => s.resolve(m.default), (err) => { s.started = false; console.error(err); });
}

export default () => {
  let inner, ready;
  return {
    initialize(ctx) {
      importFrom(ctx.model);
      ctx.model.on("change:_plotly_module", () => importFrom(ctx.model));
      ready = shared().promise.then((make) => { inner = make(); return inner.initialize(ctx); });
      return ready;
    },
    async render(ctx) {
      await ready;
      return inner.render(ctx);
    },
  };
};
"""


@lru_cache(maxsize=1)
def plotly_module() -> str:
    """The JavaScript module of plotly's own FigureWidget (plotly.js and the widget)."""
    esm = go.FigureWidget._esm
    return esm.read_text() if isinstance(esm, Path) else str(esm)


class FigureWidget(go.FigureWidget):
    """A plotly FigureWidget (same Python API, same JavaScript) whose module reaches each page once.

    ``_plotly_module`` is plotly's module on the carrier (one live figure per kernel) and empty on the others.
    """

    _esm = _LOADER % {"version": repr(plotly.__version__)}
    _plotly_module = traitlets.Unicode("").tag(sync=True)

    _carrier: Optional[weakref.ReferenceType] = None
    _live: List[weakref.ReferenceType] = []  # figures compare by value (plotly's __eq__): no WeakSet

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        FigureWidget._live = [r for r in FigureWidget._live if _is_open(r())] + [weakref.ref(self)]
        if self._plotly_module:
            FigureWidget._carrier = weakref.ref(self)

    @traitlets.default("_plotly_module")
    def _carry_if_no_carrier(self) -> str:
        # read when the figure's state is first sent: the first live figure of the kernel carries the module
        return plotly_module() if carrier() is None else ""

    def close(self) -> None:
        was_carrier = carrier() is self
        super().close()
        if was_carrier:
            FigureWidget._carrier = None
            heir = next((w for w in (r() for r in FigureWidget._live) if _is_open(w)), None)
            if heir is not None:  # pages opened later still need the module: a live figure carries it on
                heir._plotly_module = plotly_module()
                FigureWidget._carrier = weakref.ref(heir)


def _is_open(widget) -> bool:
    return widget is not None and getattr(widget, "comm", None) is not None


def carrier() -> Optional[FigureWidget]:
    """The live figure that carries plotly's module in this kernel (None before the first figure)."""
    ref = FigureWidget._carrier
    widget = ref() if ref is not None else None
    return widget if _is_open(widget) else None
