"""Peak memory and time of one DecomCAM call with many prompts on one image.

    nice -n 19 python benchmarks/bench_prompts.py [--prompts 10 100 1000] [--model parts-rn] [--device cpu]
                                                  [--n-components 10] [--chunk 16]

Each count runs in a fresh subprocess (so that one run's allocator pools do not hide the next one's peak):
load the model, warm up with one call, then one call with N prompts. Reported: the peak resident memory of the
call over the warmed-up process (ru_maxrss, or torch's peak allocation on a GPU), the size of the result (the
Explanation's tensors; the OSSMs at input resolution grow with N), the memory beyond the result (what chunking
keeps bounded), and seconds. Prompts go through the engine in chunks of `PROMPTS_PER_PASS`; ``--chunk N``
sets another chunk size (``--chunk 100000``: no chunking, as before issue 16) for comparison.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _one(n: int, model_name: str, device, k: int, chunk=None) -> dict:
    import warnings

    import numpy as np
    import torch

    import decomviz as dv
    from decomviz.methods import base, chunking

    warnings.simplefilter("ignore")
    if chunk is not None:
        base.PROMPTS_PER_PASS = chunking.PROMPTS_PER_PASS = chunk
    PROMPTS_PER_PASS = chunking.PROMPTS_PER_PASS
    torch.manual_seed(0)
    model = dv.load_model(model_name, device=device)
    H, W = model.image_size
    image = (np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.uint8)
    cam = dv.DecomCAM(model, n_components=k)
    classes = ["house", "car", "tree", "snowman", "rocket", "flower", "fish", "mushroom", "boat", "lamp"]
    prompts = [f"a photo of a {classes[i % 10]} number {i}" for i in range(n)]
    cam(image, prompts[:min(n, PROMPTS_PER_PASS)])  # warm-up: allocator pools, caches
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:  # resident memory now; ru_maxrss after the call is the call's peak (it exceeds the warm-up's)
        import psutil
        base = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    exp = cam(image, prompts)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = sum(t.numel() * t.element_size() for t in vars(exp).values() if isinstance(t, torch.Tensor))
    result += sum(t.numel() * t.element_size() for t in exp.flags.values())
    return {"prompts": n, "seconds": seconds, "peak_extra_mb": (peak - base) / 2 ** 20,
            "result_mb": result / 2 ** 20, "beyond_result_mb": (peak - base - result) / 2 ** 20,
            "chunk": PROMPTS_PER_PASS, "device": str(model.device), "model": model.name}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--model", default="parts-rn")
    ap.add_argument("--device", default=None)
    ap.add_argument("--n-components", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=None, help="prompts per engine pass (default: the library's)")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the subprocess's own run
    args = ap.parse_args(argv)
    if args.one is not None:
        print(json.dumps(_one(args.one, args.model, args.device, args.n_components, args.chunk)))
        return 0
    print(f"DecomCAM, {args.model}, K = {args.n_components}, one image, chunks of {args.chunk or 'the default'} "
          "prompts; memory over the warmed-up process")
    print(f"{'prompts':>8} {'seconds':>9} {'peak extra MB':>14} {'result MB':>10} {'beyond result MB':>17}")
    for n in args.prompts:
        cmd = [sys.executable, __file__, "--one", str(n), "--model", args.model, "--n-components",
               str(args.n_components)] + (["--device", args.device] if args.device else []) + \
            (["--chunk", str(args.chunk)] if args.chunk else [])
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"{n:>8} failed: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}")
            continue
        r = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{n:>8} {r['seconds']:9.1f} {r['peak_extra_mb']:14.0f} {r['result_mb']:10.0f} "
              f"{r['beyond_result_mb']:17.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
