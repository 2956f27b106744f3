"""Seconds per image and peak memory of a method at several batch sizes (images per forward pass), each run in a
fresh Python process so that one run's memory does not carry into the next: the evidence behind the default
batch size on a CPU (`decomviz.methods.base.default_batch_size`).

    HF_HUB_OFFLINE=1 python benchmarks/bench_batch_size.py [--models parts-rn RN50] [--methods decomcam occlusion]
                                                           [--batch-sizes 32 16 8]

RN50 is built with random weights (`pretrained=None`): the speed and memory of its towers, not its maps.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ONE_RUN = r"""
import json, resource, sys, time, warnings
import decomviz as dv
name, method, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = dv.load_model() if name == "parts-rn" else dv.load_model(name, pretrained=None)
scenes = list(dv.PartsWorld(3, seed=2024, n_objects=(1, 2)))
cam = dv.make_method(method, model, batch_size=batch)
prompts = ["a robot", "the head of a robot"]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    cam(scenes[0].image, prompts)  # warm-up
    t0 = time.perf_counter()
    for s in scenes[1:]:
        cam(s.image, prompts)
print(json.dumps({"model": name, "method": method, "batch_size": batch,
                  "seconds_per_image": round((time.perf_counter() - t0) / (len(scenes) - 1), 3),
                  "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["parts-rn", "RN50"])
    ap.add_argument("--methods", nargs="*", default=["decomcam", "occlusion"])
    ap.add_argument("--batch-sizes", nargs="*", type=int, default=[32, 16, 8])
    args = ap.parse_args(argv)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    print(f"{'model':10s} {'method':10s} {'batch':>5s} {'s / image':>10s} {'peak RSS GB':>12s}")
    for model in args.models:
        for method in args.methods:
            for batch in args.batch_sizes:
                out = subprocess.run([sys.executable, "-c", ONE_RUN, model, method, str(batch)], env=env,
                                     capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                r = json.loads(out)
                print(f"{model:10s} {method:10s} {batch:5d} {r['seconds_per_image']:10.3f} {r['peak_rss_gb']:12.3f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
