"""The Explorer's Run button times a browser click in the browser: its status line reports the wait from the click
to the maps on screen, which the kernel cannot see. Here the browser's two messages (the click, then the seconds
it measured) are played by setting the synced traits as the frontend would; tests/test_browser.py clicks it in
Chromium."""
from __future__ import annotations

import pytest

from decomviz.widgets import Explorer
from decomviz.widgets.run_clock import ClockedButton


@pytest.fixture()
def explorer(tiny_rn):
    ex = Explorer(tiny_rn, n_scenes=1, prompts=["a robot"])
    ex.words.toggle.value = False
    return ex


def test_browser_click_reports_the_browser_clock(explorer):
    button = explorer.run_button
    button.clicks += 1  # what the frontend sends on a click
    explorer.wait(120)
    run = explorer._generation
    assert explorer.explanation is not None
    assert "on their way to the screen" in explorer.status_text, explorer.status_text
    assert button.drawn == run  # the browser is told to stop its clock once the figures are sent
    assert explorer.last_wait is None

    button.browser_seconds = [run - 1, 9.0]  # an older run's answer changes nothing
    assert "on their way" in explorer.status_text and explorer.last_wait is None
    button.browser_seconds = [run, 1.234]
    assert f"Run {run} done in 1.23 s from the click to the maps on screen" in explorer.status_text
    assert explorer.last_wait == pytest.approx(1.234)


def test_python_click_and_run_report_the_kernel_time(explorer):
    explorer.run_button.click()
    explorer.wait(120)
    text = explorer.status_text
    assert "done in" in text and "on screen" not in text and "on their way" not in text, text
    drawn = explorer.run_button.drawn
    assert explorer.run(wait=True) is not None
    assert "done in" in explorer.status_text and explorer.run_button.drawn == drawn  # no browser clock to stop


def test_disabled_button_starts_nothing():
    calls = []
    button = ClockedButton(description="Run")
    button.on_click(lambda b: calls.append(b.clicked_in_browser))  # ipywidgets' signature: the button alone
    button.clicks += 1
    button.click()
    button.disabled = True
    button.click()
    assert calls == [True, False] and not button.clicked_in_browser
