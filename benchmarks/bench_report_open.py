"""How long a report takes to open: Chromium (Debian's, driven by playwright) loads an HTML file to its load event.

    python benchmarks/bench_report_open.py demo_report.html [--repeats 3]

Prints the file's size and each load time (the first is cold). Needs /usr/bin/chromium (`make browser`).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright
    path = Path(args.report).resolve()
    print(f"{path.name}: {path.stat().st_size / 1e6:.2f} MB")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        for i in range(args.repeats):
            t0 = time.perf_counter()
            page.goto(path.as_uri(), wait_until="load")
            print(f"  load {i + 1}: {time.perf_counter() - t0:.2f} s")
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
