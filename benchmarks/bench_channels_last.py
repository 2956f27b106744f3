"""Does a channels-last memory layout speed up parts-rn's image tower on this CPU? (It was tried for issue 13.)

    python benchmarks/bench_channels_last.py [--images 32]

Times one forward of the image tower (inference mode) on a batch at 224 px, contiguous against channels-last,
best of 3 (each the mean of 2 calls after a warm-up).
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch

import decomviz as dv


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    visual = dv.load_model().model.visual
    x = torch.randn(args.images, 3, 224, 224)
    best = {}
    for _ in range(3):
        for name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
            visual.to(memory_format=fmt)
            xx = x.contiguous(memory_format=fmt)
            with torch.inference_mode():
                visual(xx)
                t0 = time.perf_counter()
                visual(xx)
                visual(xx)
            best[name] = min(best.get(name, float("inf")), (time.perf_counter() - t0) / 2)
    for name, sec in best.items():
        print(f"parts-rn image tower, {args.images} images at 224 px, {torch.get_num_threads()} threads, {name}: "
              f"{sec * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
