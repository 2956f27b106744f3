"""Seconds and memory of each code cell of a notebook, without a browser: what a notebook computes before its
first widget, apart from drawing.

    HF_HUB_OFFLINE=1 python benchmarks/bench_notebook_cells.py notebooks/05_part_discovery.ipynb [--kernel]

By default the cells run in this Python process (no kernel): seconds and resident memory per cell. With
``--kernel`` they run in a Jupyter kernel, as Voila runs them, so that displaying widgets counts too: seconds per
cell, the megabytes of output and widget messages the kernel sent, and the kernel's peak resident memory after it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

PEAK = "import resource as _r; print('PEAK', _r.getrusage(_r.RUSAGE_SELF).ru_maxrss / 1e6)"


def _rss_gb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) * 1024 / 1e9


def _first_line(source: str) -> str:
    return source.strip().splitlines()[0][:60] if source.strip() else ""


def in_process(cells) -> None:
    scope = {"__name__": "__main__", "display": lambda *a, **k: None}
    total = 0.0
    for i, source in enumerate(cells):
        t0 = time.perf_counter()
        exec(compile(source, f"cell {i}", "exec"), scope)
        took = time.perf_counter() - t0
        total += took
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"code cell {i:2d}  {took:5.1f} s  (total {total:5.1f} s)  RSS {_rss_gb():.2f} GB  peak {peak:.2f} GB"
              f"  | {_first_line(source)}", file=sys.stderr, flush=True)


def _run(client, source: str):
    """Execute ``source``; return (seconds, bytes of display and widget messages, its printed text)."""
    t0 = time.perf_counter()
    msg_id = client.execute(source, store_history=False)
    sent, text = 0, []
    while True:
        msg = client.get_iopub_msg(timeout=600)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind in ("display_data", "execute_result", "comm_open", "comm_msg"):
            sent += len(json.dumps(msg["content"], default=str))
        elif kind == "stream":
            text.append(msg["content"]["text"])
        elif kind == "error":
            raise RuntimeError("\n".join(msg["content"]["traceback"])[-2000:])
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            return time.perf_counter() - t0, sent, "".join(text)


def in_kernel(cells, cwd: Path) -> None:
    from jupyter_client.manager import start_new_kernel
    t0 = time.perf_counter()
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(cwd))
    print(f"kernel ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    try:
        for i, source in enumerate(cells):
            took, sent, _ = _run(client, source)
            peak = _run(client, PEAK)[2].split()[-1]
            print(f"code cell {i:2d}  {took:5.2f} s  messages {sent / 1e6:6.2f} MB  peak {float(peak):.2f} GB"
                  f"  | {_first_line(source)}", file=sys.stderr, flush=True)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook")
    ap.add_argument("--kernel", action="store_true", help="run the cells in a Jupyter kernel, display included")
    args = ap.parse_args(argv)
    path = Path(args.notebook).resolve()
    cells = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    os.chdir(path.parent)  # the notebooks read their shipped data by relative paths
    in_kernel(cells, path.parent) if args.kernel else in_process(cells)
    return 0


if __name__ == "__main__":
    sys.exit(main())
