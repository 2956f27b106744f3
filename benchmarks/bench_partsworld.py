"""Scenes per second of PartsWorld on one core.

    python benchmarks/bench_partsworld.py [--n 1000] [--size 224]

Prints one line per configuration. Each scene is rendered from scratch (images, masks, caption).
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from decomviz.data import PartsWorld  # noqa: E402


def bench(n: int, size: int, n_objects, distractors: bool = True) -> float:
    world = PartsWorld(n, seed=0, size=size, n_objects=n_objects, distractors=distractors)
    world[0]  # warm the noise bank
    t0 = time.perf_counter()
    for i in range(n):
        world[i]
    return n / (time.perf_counter() - t0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args(argv)
    for n_objects in (1, (1, 3), 3):
        rate = bench(args.n, args.size, n_objects)
        print(f"PartsWorld size={args.size} n_objects={n_objects!s:7} {rate:8.0f} scenes/s")


if __name__ == "__main__":
    main()
