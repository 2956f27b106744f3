"""Time to the first widget of each notebook in Voila, as a visitor waits for it: Voila on 127.0.0.1 (cwd
notebooks/, so notebooks/voila.json applies), Debian's Chromium driven by playwright, every request off the
loopback refused. Per notebook: seconds from opening the page to the first widget drawn (a `.jupyter-widgets`
view, or a plotly figure for a notebook without widgets), the kernel's memory then, and its peak memory (RSS of
the kernel process tree, read from /proc every 0.25 s until every cell has run and the clicks below are done).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_voila.py [--only 01_quickstart 02_component_scrubbing]

Each notebook gets a Voila server of its own, stopped after it (with its kernel), so that no notebook measured
before shares the cores with the next.

With --explorer, notebook 01's Explorer is also run from the page (prompts typed in the other order, Run clicked):
the seconds from the click until its maps are redrawn, by the page's clock, beside the time its status line reports. With --picks, notebook 04's ClusterGallery is given
other clusters from its dropdown, once every cell has run: the milliseconds from the pick until its exemplar grid
shows the new cluster, and the page's main-thread tasks over 50 ms during each pick (Chromium's long tasks).
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
FIRST = ("() => { const w = document.querySelector('.jp-OutputArea-output .jupyter-widgets, "
         ".jp-OutputArea-output .js-plotly-plot .main-svg, .jp-OutputArea-output.js-plotly-plot .main-svg'); "
         "return !!w && w.getBoundingClientRect().height > 0; }")
FIRST_OUTPUT = "() => !!document.querySelector('.jp-OutputArea-output')"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree_rss(pid: int) -> int:
    """RSS in bytes of a process and its descendants (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return total


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_until_idle(pid: int, quiet: float = 3.0, limit: float = 600.0) -> float:
    """Until the kernel has used under 0.1 s of CPU in ``quiet`` seconds (every cell has run); returns the
    perf_counter time its last work ended."""
    t0 = time.perf_counter()
    samples = [(t0, _cpu_seconds(pid))]
    while time.perf_counter() - t0 < limit:
        time.sleep(0.25)
        samples.append((time.perf_counter(), _cpu_seconds(pid)))
        window = [s for s in samples if s[0] >= samples[-1][0] - quiet]
        if samples[-1][0] - t0 >= quiet and window[-1][1] - window[0][1] < 0.1:
            busy = [a for a, b in zip(samples, samples[1:]) if b[1] - a[1] > 0.02]
            return busy[-1][0] if busy else t0
    return time.perf_counter()


def _private_bytes(pid: int) -> int:
    """Memory only this process holds (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup): what one more
    kernel costs, the pages it shares with other processes (libraries read from disk and not written) left out."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1]) * 1024
    return total


def _kernels(voila_pid: int) -> set:
    try:
        with open(f"/proc/{voila_pid}/task/{voila_pid}/children") as f:
            return {int(c) for c in f.read().split()}
    except OSError:
        return set()


def start_voila():
    port = _free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    voila = Path(sys.executable).with_name("voila")
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / "decomviz_voila_bench.log", "wb")
    proc = subprocess.Popen([str(voila), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1", str(NOTEBOOKS)],
                            cwd=str(NOTEBOOKS), stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(400):
        try:
            urllib.request.urlopen(url + "voila/static/", timeout=2)
            break
        except urllib.error.HTTPError:
            break
        except Exception:
            time.sleep(0.3)
    return proc, url


def _block_external(route):
    host = urlparse(route.request.url).hostname or ""
    if route.request.url.startswith(("http", "ws")) and host not in ("127.0.0.1", "localhost"):
        return route.abort()
    return route.continue_()


def measure(browser, url: str, voila_pid: int, name: str, explorer: bool = False, picks: bool = False) -> dict:
    before = _kernels(voila_pid)
    peak = {"rss": 0}
    stop = threading.Event()

    def watch():
        while not stop.wait(0.25):
            for k in _kernels(voila_pid) - before:
                peak["rss"] = max(peak["rss"], _tree_rss(k))

    threading.Thread(target=watch, daemon=True).start()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.route("**/*", _block_external)
    t0 = time.perf_counter()
    page.goto(url + f"voila/render/{name}.ipynb", timeout=600_000)
    page.wait_for_function(FIRST_OUTPUT, timeout=600_000, polling=100)
    output = time.perf_counter() - t0
    page.wait_for_function(FIRST, timeout=600_000, polling=100)
    first = time.perf_counter() - t0
    out = {"notebook": name, "first_output_s": round(output, 1), "first_widget_s": round(first, 1),
           "load_average": round(os.getloadavg()[0], 1)}
    out["kernel_rss_at_first_widget_gb"] = round(peak["rss"] / 1e9, 2)  # the peak up to then
    if explorer:
        out.update(explorer_run(page))
    if picks:
        out.update(cluster_picks(page))
    kernel = max(_kernels(voila_pid) - before, default=None)
    out["all_cells_run_s"] = round(_wait_until_idle(kernel) - t0, 1) if kernel else None
    stop.set()
    out["kernel_peak_rss_gb"] = round(peak["rss"] / 1e9, 2)  # over the whole notebook, and the clicks above
    if kernel:
        out["kernel_rss_at_end_gb"] = round(_tree_rss(kernel) / 1e9, 2)
        out["kernel_private_at_end_gb"] = round(_private_bytes(kernel) / 1e9, 2)
    page.close()
    return out


WATCH_EXPLORER = """() => {
  const root = document.querySelector('.decomviz-explorer');
  window.__dvWait = {click: null, last: null};
  document.addEventListener('click', e => {
    if (e.target.closest && e.target.closest('.decomviz-explorer button')) window.__dvWait.click = performance.now();
  }, true);
  new MutationObserver(records => {
    if (records.some(r => (r.target.closest ? r.target : r.target.parentElement).closest('.js-plotly-plot')))
      window.__dvWait.last = performance.now();
  }).observe(root, {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def explorer_run(page) -> dict:
    """Type the Explorer's prompts in the other order and click Run. The page's own clock gives the wait: from the
    click (a capture listener) to the last change of the Explorer's plots (a MutationObserver), read once the status
    line has its final figure; beside it, the seconds that line reports (timed in the browser by the Run button)."""
    import re
    title = ("() => { const r = document.querySelector('.decomviz-explorer'); if (!r) return null; "
             "const t = r.querySelector('.js-plotly-plot .gtitle'); return t ? t.textContent : null; }")
    status = ("() => { const s = document.querySelector('.decomviz-explorer .decomviz-status'); "
              "return s ? s.textContent : ''; }")
    page.wait_for_function(f"() => ({title})() !== null", timeout=600_000)
    page.wait_for_function(f"() => /done in/.test(({status})())", timeout=600_000)
    _wait_until_settled(page)
    box = page.locator(".decomviz-explorer textarea").first
    prompts = [p.strip() for p in re.split(r"[\n,]", box.input_value()) if p.strip()]
    box.fill("\n".join(prompts[::-1]))
    time.sleep(1.0)  # the typed prompts reach the kernel
    old = page.evaluate(status)
    page.evaluate(WATCH_EXPLORER)
    t0 = time.perf_counter()
    page.locator(".decomviz-explorer button", has_text="Run").first.click()
    page.wait_for_function(f"() => {{ const s = ({status})(); return /done in/.test(s) && s !== {old!r}; }}",
                           timeout=600_000, polling=50)
    status_at = time.perf_counter() - t0
    text, seen, shown = page.evaluate(status), page.evaluate("() => window.__dvWait"), page.evaluate(title)
    m = re.search(r"done in ([0-9.]+) s", text)
    waited = (seen["last"] - seen["click"]) / 1000 if seen["last"] and seen["click"] else None
    return {"explorer_reported_s": float(m.group(1)) if m else None,
            "explorer_reported_clock": "browser" if "on screen" in text else "kernel",
            "explorer_maps_on_screen_s": round(waited, 2) if waited is not None else None,
            "explorer_status_final_at_s": round(status_at, 2),
            "explorer_first_title_is_new_first_prompt": prompts[-1] in (shown or "")}


def _wait_until_settled(page, quiet: float = 3.0, limit: float = 600.0) -> None:
    """Until the page's outputs have not changed for ``quiet`` seconds: the notebook's cells have all run."""
    count = "() => document.querySelectorAll('.jp-OutputArea-output').length"
    last, since, t0 = page.evaluate(count), time.perf_counter(), time.perf_counter()
    while time.perf_counter() - since < quiet and time.perf_counter() - t0 < limit:
        time.sleep(0.25)
        now = page.evaluate(count)
        if now != last:
            last, since = now, time.perf_counter()


def cluster_picks(page, n: int = 5) -> dict:
    """Pick other clusters from the ClusterGallery's dropdown, one after another; per pick, the milliseconds until
    the exemplar grid (the gallery's last figure) carries a new title."""
    root = ".decomviz-cluster-gallery"
    title = (f"() => {{ const p = document.querySelectorAll('{root} .js-plotly-plot'); if (!p.length) return null; "
             "const t = p[p.length - 1].querySelector('.gtitle'); return t ? t.textContent : null; }")
    page.wait_for_selector(f"{root} select", timeout=600_000)
    page.wait_for_function(f"() => ({title})() !== null", timeout=600_000)
    _wait_until_settled(page)  # a pick waits for the cells that still run after the widget: not the pick's cost
    select = page.locator(f"{root} select").first
    values = select.evaluate("s => Array.from(s.options).map(o => o.value)")
    page.evaluate("() => { window.__dvLong = []; new PerformanceObserver(l => { for (const e of l.getEntries()) "
                  "window.__dvLong.push(Math.round(e.duration)); }).observe({entryTypes: ['longtask']}); }")
    times, long_tasks = [], []
    for value in values[1:n + 1]:
        old = page.evaluate(title)
        t0 = time.perf_counter()
        select.select_option(value)
        page.wait_for_function(f"() => ({title})() !== {old!r}", timeout=60_000, polling=20)
        times.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.5)
        long_tasks.append(page.evaluate("() => window.__dvLong.splice(0)"))
    return {"cluster_pick_ms": [round(t) for t in times],  # in the order picked
            "cluster_pick_median_ms": round(sorted(times)[len(times) // 2]),
            "cluster_pick_page_long_tasks_ms": long_tasks}  # the page's main-thread tasks over 50 ms, per pick


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help="notebook stems (default: all)")
    ap.add_argument("--explorer", action="store_true", help="also time a Run of notebook 01's Explorer")
    ap.add_argument("--picks", action="store_true", help="also time cluster picks in notebook 04's ClusterGallery")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright
    names = args.only or [p.stem for p in sorted(NOTEBOOKS.glob("0*.ipynb"))]
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for name in names:
                # a Voila of its own per notebook: the kernel of the one before, whose later cells may still be
                # running, is stopped with its server and does not share the cores
                proc, url = start_voila()
                try:
                    row = measure(browser, url, proc.pid, name, explorer=args.explorer and name.startswith("01"),
                                  picks=args.picks and name.startswith("04"))
                finally:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=20)
                rows.append(row)
                print(row, flush=True)
        finally:
            browser.close()
    print(f"cores: {os.cpu_count()}, load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
