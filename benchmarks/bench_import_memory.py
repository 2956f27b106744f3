"""What a notebook kernel's memory is made of before it computes anything: the resident set (RSS) of a fresh
Python after each import, and after loading the bundled model, each step in its own process, with the seconds
the step took (its imports and work, not the interpreter's start).

    python benchmarks/bench_import_memory.py [--python OTHER_PYTHON ...] [--checkout DIR]

``--python`` measures other interpreters too (another venv, say one with the CPU build of torch): a step whose
import fails there is reported as such. ``--checkout DIR`` measures the decomviz of another checkout (e.g. a git
worktree of an older commit): the probes run in DIR, and ``python -c`` puts that folder first. The resident set counts the pages of shared libraries a process has
touched; the CUDA build of torch maps CUDA's libraries even on a machine without a GPU.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

STEPS = {
    "python": "",
    "import numpy": "import numpy",
    "import torch": "import torch",
    "import torch, open_clip": "import torch, open_clip",
    "import torch, sklearn": "import torch, sklearn",
    "import decomviz": "import decomviz",
    "import decomviz; load_model()": "import decomviz as dv; dv.load_model()",
}
PROBE = """
import time; t0 = time.perf_counter()
import warnings; warnings.simplefilter("ignore")
{code}
seconds = time.perf_counter() - t0
import json
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:")) * 1024
try:
    import torch; version = torch.__version__
except Exception:
    version = None
print(json.dumps({{"rss_gb": round(rss / 1e9, 3), "seconds": round(seconds, 2), "torch": version}}))
"""


def measure(python: str, checkout: str = ".") -> dict:
    out = {}
    for name, code in STEPS.items():
        r = subprocess.run([python, "-c", PROBE.format(code=code)], capture_output=True, text=True,
                           env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}, cwd=checkout)
        out[name] = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {
            "error": (r.stderr.strip().splitlines() or ["failed"])[-1][:120]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", nargs="*", default=[], help="other interpreters to measure beside this one")
    ap.add_argument("--checkout", default=".", help="the folder whose decomviz is measured (default: this one)")
    args = ap.parse_args(argv)
    for python in [sys.executable, *args.python]:
        rows = measure(python, args.checkout)
        torch_version = next((r.get("torch") for r in rows.values() if r.get("torch")), None)
        print(f"{python} (torch {torch_version})")
        for name, r in rows.items():
            print(f"  {name:32s} {r['rss_gb']:.3f} GB  {r['seconds']:5.2f} s" if "rss_gb" in r
                  else f"  {name:32s} {r['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
