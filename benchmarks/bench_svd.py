"""How to take DecomCAM's SVD on the device: torch's drivers, the host, the Gram matrix, a randomised SVD.

    python benchmarks/bench_svd.py [--device cuda]

Shapes are DecomCAM's (pairs, grid cells n, kept channels P): RN50 / parts-rn (49 x 500), ViT-B-16 (196 x 500),
parts-vit (196 x 192), for 1 and 32 pairs, on low-rank-plus-noise matrices like gradient-weighted activations
and (--gaussian) on plain Gaussian ones. Prints milliseconds per call (median of 10), the largest relative error
of the top 10 singular values against the default driver, and the speed-up of the engine's Gram route
(`decomviz.methods.decomcam.gram_svd`, what svd_driver="auto" takes when P >= 2 n) over the default SVD.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from decomviz.methods.decomcam import gram_svd


def timed(fn, repeats=10):
    fn()
    sync()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return 1000 * statistics.median(out)


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--gaussian", action="store_true", help="plain Gaussian matrices instead of low rank + noise")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    K = 10
    for B in (1, 32):
        for n, P in ((49, 500), (196, 500), (196, 192)):
            # low-rank-ish, like gradient-weighted activations
            X = torch.randn(B, n, P, device=dev) if args.gaussian else \
                (torch.randn(B, n, 12, device=dev) @ torch.randn(B, 12, P, device=dev)
                 + 0.05 * torch.randn(B, n, P, device=dev))
            ref = torch.linalg.svd(X, full_matrices=False)[1][..., :K]
            ways = {"default": lambda: torch.linalg.svd(X, full_matrices=False)}
            if dev.type == "cuda":
                for drv in ("gesvd", "gesvdj", "gesvda"):
                    ways[drv] = (lambda d: lambda: torch.linalg.svd(X, full_matrices=False, driver=d))(drv)
                ways["host"] = lambda: torch.linalg.svd(X.cpu(), full_matrices=False)
            ways["gram (engine)"] = lambda: gram_svd(X, K)
            ways["svd_lowrank q=16"] = lambda: torch.svd_lowrank(X, q=16, niter=2)
            row, ms_of = [], {}
            for name, fn in ways.items():
                try:
                    ms = ms_of[name] = timed(fn)
                    out = fn()
                    s = out if isinstance(out, torch.Tensor) else out[1]
                    err = float(((s[..., :K].to(ref.device) - ref).abs() / ref.abs().clamp_min(1e-30)).max())
                    row.append(f"{name} {ms:.2f} ms (rel. err {err:.1e})")
                except Exception as e:  # a driver missing on this build
                    row.append(f"{name} failed: {type(e).__name__}")
            speed = ms_of["default"] / ms_of["gram (engine)"] if "gram (engine)" in ms_of else float("nan")
            print(f"B={B:2d} n={n:3d} P={P}: " + "; ".join(row) + f"; gram speed-up x{speed:.1f}", flush=True)


if __name__ == "__main__":
    main()
