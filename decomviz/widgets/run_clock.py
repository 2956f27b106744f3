"""A button whose clock runs in the browser, so that a widget can report the wait its user saw.

The kernel only hears of a click after the browser has sent it, and the browser draws the maps after the kernel
has sent them: a kernel-side timer misses both ends (0.4 s reported for a 0.8 s wait, measured in Voila). This
button notes the moment of the click in the browser; when the kernel marks a run as drawn (`mark_drawn`), the
browser waits two animation frames (the frame that paints the new figures, then the next) and sends back the
seconds since the click. Clicks made from Python (`click()`) have no browser clock, and say so.
"""
from __future__ import annotations

from typing import Callable, List

import anywidget
import traitlets

_ESM = """
function render({ model, el }) {
  const b = document.createElement("button");
  const sync = () => {
    b.textContent = model.get("description");
    b.title = model.get("tooltip");
    b.disabled = model.get("disabled");
    const style = model.get("button_style");
    b.className = "jupyter-widgets jupyter-button widget-button" + (style ? " mod-" + style : "");
  };
  sync();
  model.on("change:description change:tooltip change:disabled change:button_style", sync);
  b.style.width = "100%";
  let clickedAt = null;
  b.addEventListener("click", () => {
    clickedAt = performance.now();
    model.set("clicks", model.get("clicks") + 1);
    model.save_changes();
  });
  model.on("change:drawn", () => {
    if (clickedAt === null) return;  // a click from another view, or from Python
    const start = clickedAt, run = model.get("drawn");
    clickedAt = null;
    requestAnimationFrame(() => requestAnimationFrame(() => {
      model.set("browser_seconds", [run, (performance.now() - start) / 1000]);
      model.save_changes();
    }));
  });
  el.appendChild(b);
}
export default { render };
"""


class ClockedButton(anywidget.AnyWidget):
    """A button (description, tooltip, disabled, button_style, on_click, click) that times, in the browser, the
    wait from its click until the kernel says the result is on screen.

    ``on_click(callback)`` callbacks get the button, as ipywidgets' Button gives it; while they run,
    ``clicked_in_browser`` says whether a person clicked it in a browser, whose clock then answers
    `mark_drawn(run)` by setting ``browser_seconds`` to ``[run, seconds]``.
    """

    _esm = _ESM
    description = traitlets.Unicode("").tag(sync=True)
    tooltip = traitlets.Unicode("").tag(sync=True)
    disabled = traitlets.Bool(False).tag(sync=True)
    button_style = traitlets.Unicode("").tag(sync=True)
    clicks = traitlets.Int(0).tag(sync=True)
    drawn = traitlets.Int(0).tag(sync=True)
    browser_seconds = traitlets.List([]).tag(sync=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._callbacks: List[Callable] = []
        self.clicked_in_browser = False
        self.observe(lambda _change: self._run_callbacks(from_browser=True), names="clicks")  # only a page sets it

    def on_click(self, callback: Callable) -> None:
        self._callbacks.append(callback)

    def click(self) -> None:
        """Click from Python: the callbacks run with ``clicked_in_browser`` False (no browser clock)."""
        self._run_callbacks(from_browser=False)

    def mark_drawn(self, run: int) -> None:
        """Tell the browser that run ``run``'s result has been sent: its clock stops once that is painted."""
        self.drawn = int(run)

    def _run_callbacks(self, from_browser: bool) -> None:
        if self.disabled:
            return
        self.clicked_in_browser = from_browser
        try:
            for callback in list(self._callbacks):
                callback(self)
        finally:
            self.clicked_in_browser = False


class ClockedRuns:
    """Mixin for a `BackgroundRuns` widget started by a `ClockedButton`: a run clicked in a browser is timed there.

    The widget calls `_init_clock(button)` and has the button's ``on_click`` start a run, passes
    ``browser_clock=button.clicked_in_browser`` among the run's inputs, calls `_clock_delivered(job, delivered)`
    once the run's figures are sent, and gives `_summary(job, on_screen=None)` a form for the browser's answer.
    ``last_wait`` holds that answer for the last run (seconds from the click to the result painted).
    """

    def _init_clock(self, button: ClockedButton) -> None:
        self._clocked_job = None
        self.last_wait = None
        button.observe(self._on_browser_clock, names="browser_seconds")
        self._clock_button = button

    def _clock_delivered(self, job, delivered: bool) -> None:
        if delivered and job.inputs.get("browser_clock"):
            self._clocked_job = job
            self._clock_button.mark_drawn(job.generation)  # sent after the figures: the browser stops its clock

    def _on_browser_clock(self, change) -> None:
        run, seconds = (list(change["new"] or []) + [None, None])[:2]
        job = self._clocked_job
        with self._lock:
            if job is None or seconds is None or run != job.generation or job.generation != self._generation:
                return  # an older run's clock, or no reading
            self.last_wait = float(seconds)
            self._message(self._summary(job, on_screen=float(seconds)), self._summary_kind())
