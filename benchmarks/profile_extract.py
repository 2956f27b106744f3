"""Where extraction spends its time: `dv.extract` with DecomCAM's defaults on PartsWorld scenes, under cProfile.

    python benchmarks/profile_extract.py [--scenes 200] [--batch-size 16] [--top 40]

Prints the throughput (cProfile's overhead included, so lower than `bench_extract.py throughput`), the
calls by cumulative time, and the time spent inside torch's convolution kernels: the part of a pair's cost that
no change to decomviz's own code can remove.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args(argv)
    import torch

    import decomviz as dv
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    cam = dv.DecomCAM(dv.load_model())
    world = dv.PartsWorld(args.scenes, seed=123, n_objects=(1, 2))
    warnings.simplefilter("ignore")
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        profile.enable()
        bank = dv.extract(cam, world, "a photo of a {}", out=out, shard_size=max(1, args.scenes // 8),
                          progress=False, batch_size=args.batch_size)
        profile.disable()
        seconds = time.perf_counter() - t0
        pairs = len(bank) // cam.n_components
    stats = pstats.Stats(profile)
    conv = sum(v[3] for k, v in stats.stats.items() if k[2] == "<built-in method torch.conv2d>")
    print(f"{pairs} pairs in {seconds:.1f} s under cProfile: {pairs / seconds:.2f} pairs/s")
    print(f"inside torch.conv2d: {conv:.1f} s, {1000 * conv / pairs:.1f} ms per pair: at most "
          f"{pairs / conv:.1f} pairs/s if nothing else took any time")
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
