"""Seconds and resident memory of each code cell of a notebook, run in a plain Python process (no kernel, no
browser): what a notebook computes before its first widget, apart from starting a kernel and drawing.

    HF_HUB_OFFLINE=1 python benchmarks/bench_notebook_cells.py notebooks/05_part_discovery.ipynb
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path


def _rss_gb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) * 1024 / 1e9


def main(argv=None) -> int:
    path = Path((argv or sys.argv[1:])[0]).resolve()
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    os.chdir(path.parent)  # the notebooks read their shipped data by relative paths
    scope = {"__name__": "__main__", "display": lambda *a, **k: None}
    total = 0.0
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        t0 = time.perf_counter()
        exec(compile(source, f"{path.name} cell {i}", "exec"), scope)
        took = time.perf_counter() - t0
        total += took
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        first = source.strip().splitlines()[0][:60] if source.strip() else ""
        print(f"code cell {i:2d}  {took:5.1f} s  (total {total:5.1f} s)  RSS {_rss_gb():.2f} GB  peak {peak:.2f} GB"
              f"  | {first}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
