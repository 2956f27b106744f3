"""Does a channels-last memory layout, or torch's FX inference optimisation, speed up parts-rn's image tower on
this CPU? (Both were tried for issue 13.)

    python benchmarks/bench_channels_last.py [--images 32]

Times one forward of the image tower (inference mode) on a batch at 224 px: contiguous, channels-last, and a copy
made by `torch.fx.experimental.optimization.optimize_for_inference` (conv-BN folding and MKL-DNN layouts, CPU
only, no gradients); best of 3 (each the mean of 2 calls after a warm-up). Prints the largest difference of the
optimised copy's output.
"""
from __future__ import annotations

import argparse
import copy
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
    from torch.fx.experimental.optimization import optimize_for_inference
    optimised = optimize_for_inference(copy.deepcopy(visual))
    with torch.inference_mode():
        error = float((optimised(x) - visual(x)).abs().max())
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
        visual.to(memory_format=torch.contiguous_format)
        with torch.inference_mode():
            optimised(x)
            t0 = time.perf_counter()
            optimised(x)
            optimised(x)
        best["optimize_for_inference"] = min(best.get("optimize_for_inference", float("inf")),
                                             (time.perf_counter() - t0) / 2)
    for name, sec in best.items():
        print(f"parts-rn image tower, {args.images} images at 224 px, {torch.get_num_threads()} threads, {name}: "
              f"{sec * 1000:.0f} ms")
    print(f"optimize_for_inference: largest difference of the embedding {error:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
