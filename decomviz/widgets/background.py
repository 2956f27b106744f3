"""Runs in a background thread that a newer run supersedes: the notebook stays responsive meanwhile."""
from __future__ import annotations

import atexit
import html
import re
import threading
import time
import traceback
import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from ._common import message_html


#: At interpreter exit, how long to wait for a run in progress to reach its next check (seconds).
EXIT_WAIT = 300.0
_LIVE: "weakref.WeakSet" = weakref.WeakSet()  # widgets that may have a run going


@atexit.register
def _stop_runs_at_exit() -> None:
    """A daemon thread still inside torch when the interpreter tears down aborts the process (exit 134): at exit,
    supersede every run in progress and wait for its thread to stop at its next check."""
    for widget in list(_LIVE):
        widget._stop_at_exit(EXIT_WAIT)


class _Superseded(Exception):
    """A newer run started: this one stops at the next check and its results are dropped."""


@dataclass
class Job:
    """Everything one run needs, frozen when the run starts (later edits to the widgets do not affect it)."""

    generation: int
    inputs: Dict[str, Any]
    started: float = field(default_factory=time.perf_counter)
    stage: str = "starting"
    done: threading.Event = field(default_factory=threading.Event)

    def __getattr__(self, name: str) -> Any:  # job.prompts reads job.inputs["prompts"]
        inputs = self.__dict__.get("inputs", {})
        if name in inputs:
            return inputs[name]
        raise AttributeError(name)


class BackgroundRuns:
    """Mixin for a widget whose work runs in a background thread.

    The widget provides ``progress`` (an IntProgress), ``status`` (an HTML widget), ``_compute(job)`` (the work,
    in the worker thread; call ``self._check(job)`` between steps), ``_show_results(job)`` and
    ``_summary(job)``/``_summary_kind()`` (the status line when done). A run started while another is going
    supersedes it: the old run stops at its next check and its results are dropped.
    """

    def _init_runs(self) -> None:
        self.dropped_runs = 0  # runs whose results arrived after a newer run had started
        self.runs_started = 0
        self.last_error: Optional[str] = None
        self._generation = 0
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._ticker: Optional[threading.Thread] = None
        _LIVE.add(self)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(self, inputs: Dict[str, Any]) -> "Job":
        with self._lock:
            self._generation += 1
            job = Job(self._generation, inputs)
        self.runs_started += 1
        self.progress.value = 0
        self.progress.bar_style = "info"
        self._message(f"Run {job.generation}: starting…", "busy")
        thread = threading.Thread(target=self._worker, args=(job,), name=f"decomviz-run-{job.generation}",
                                  daemon=True)
        self._thread = thread
        thread.start()
        self._ticker = threading.Thread(target=self._tick, args=(job,), name=f"decomviz-tick-{job.generation}",
                                        daemon=True)
        self._ticker.start()
        return job

    def _stop_at_exit(self, timeout: float) -> None:
        """Supersede the run in progress (its results are dropped) and wait until its threads have ended."""
        with self._lock:
            self._generation += 1
        deadline = time.monotonic() + timeout
        for t in (self._thread, self._ticker):
            if t is not None and t.is_alive() and t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))

    def _finished(self, job: "Job", wait: bool, timeout: Optional[float]) -> bool:
        """With ``wait``, block until the run ends; True if it ended and is still the latest run."""
        if not wait:
            return False
        self._thread.join(timeout)
        with self._lock:
            return job.generation == self._generation and job.done.is_set()

    @property
    def status_text(self) -> str:
        """The status line as plain text."""
        return html.unescape(re.sub(r"<[^>]+>", "", self.status.value))

    def _message(self, text: str, kind: str = "info") -> None:
        self.status.value = message_html(text, kind)

    def wait(self, timeout: Optional[float] = None) -> None:
        """Block until the latest run has finished."""
        t = self._thread
        if t is not None:
            t.join(timeout)

    def _worker(self, job: Job) -> None:
        try:
            results = self._compute(job)
        except _Superseded:
            with self._lock:
                self.dropped_runs += 1
            return
        except Exception as err:  # reported in the widget; the widget stays usable
            self._deliver_error(job, err)
            return
        finally:
            job.done.set()
        self._deliver(job, results)

    def _tick(self, job: Job, every: float = 1.0) -> None:
        """While a run is busy, show how long it has been running (so a long run visibly progresses)."""
        while not job.done.wait(every):
            with self._lock:
                if job.generation != self._generation or job.done.is_set():
                    return
                self._message(f"{job.stage} {time.perf_counter() - job.started:.0f} s", "busy")

    def _check(self, job: Job) -> None:
        if job.generation != self._generation:
            raise _Superseded()

    def _progress(self, job: Job, value: int, text: str) -> None:
        with self._lock:
            job.stage = text
            if job.generation != self._generation:
                return
            self.progress.value = value
            self._message(text, "busy")

    def _deliver(self, job: Job, results: Dict[str, Any]) -> bool:
        with self._lock:
            if job.generation != self._generation:
                self.dropped_runs += 1
                return False
            self.explanations = results
            self.last_error = None
        try:
            self._show_results(job)
        except Exception as err:  # a figure failed: say so
            self._deliver_error(job, err)
            return False
        with self._lock:
            if job.generation == self._generation:
                self.progress.value = self.progress.max
                self.progress.bar_style = "success"
                self._message(self._summary(job), self._summary_kind())
        return True

    def _deliver_error(self, job: Job, err: BaseException) -> None:
        with self._lock:
            if job.generation != self._generation:
                self.dropped_runs += 1
                return
            self.last_error = f"{type(err).__name__}: {err}"
            self.last_traceback = traceback.format_exc()
            self.progress.bar_style = "danger"
            self._message(f"Run {job.generation} failed: {err}", "error")

