"""Ray extraction against the local engine on PartsWorld scenes with a bundled model: the same rows?

    python benchmarks/bench_ray.py --scenes 200 [--model parts-rn] [--num-cpus 2] [--out /tmp/bench_ray]

Both engines run DecomCAM at its defaults with the template "a photo of a {}" and the same images per engine
call; Ray runs on a local cluster started here (loopback only, `--num-cpus` + 1 logical CPUs), one actor given
`--num-cpus` CPUs (its torch threads; 2, as many as this process uses, by default). Prints the row counts, whether the keys
(image id, prompt, component) agree, the largest absolute difference of every value column and vector, and the
time of each engine (indicative on a shared machine).
"""
from __future__ import annotations

import argparse
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

import decomviz as dv

KEYS = ["image_id", "prompt", "component"]
VALUES = ["weight", "singular_value", "explained_variance", "contribution", "masked_score", "base_score",
          "reference_score"]
VECTORS = ["ossm", "embedding", "pooled", "loading", "part_overlap"]


def rows(bank):
    df = bank.to_pandas(KEYS + VALUES)
    df["row"] = np.arange(len(df))
    df = df.sort_values(KEYS).reset_index(drop=True)
    order = df["row"].to_numpy()
    return df.drop(columns="row"), {n: bank.vectors(n, order) for n in VECTORS}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=200)
    ap.add_argument("--model", default="parts-rn")
    ap.add_argument("--batch-size", type=int, default=16, help="images per engine call, in both engines")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs (torch threads) of the Ray actor")
    ap.add_argument("--out", default="/tmp/bench_ray")
    ap.add_argument("--same-batches", action="store_true",
                    help="local shards of one Ray batch, so that both engines make the same engine calls")
    args = ap.parse_args(argv)
    import ray
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    model = dv.load_model(args.model)
    cam = dv.DecomCAM(model)
    world = dv.PartsWorld(args.scenes, seed=13, n_objects=(1, 2))
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    # shards of one Ray batch: both engines then group the same images into the same engine calls (fp32 results
    # depend on the batch's composition at about 1e-5)
    local = dv.extract(cam, world, "a photo of a {}", out=out / "local", batch_size=args.batch_size,
                       shard_size=args.batch_size if args.same_batches else 256, progress=False)
    t_local = time.perf_counter() - t0
    # one logical CPU more than the actor's, for Ray Data's read and write tasks
    ray.init(num_cpus=args.num_cpus + 1, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        t0 = time.perf_counter()
        remote = dv.extract(cam, world, "a photo of a {}", out=out / "ray", engine="ray", batch_size=args.batch_size,
                            num_actors=1, num_cpus=args.num_cpus, progress=False)
        t_ray = time.perf_counter() - t0

        @ray.remote(num_cpus=args.num_cpus)
        def actor_threads():
            import torch
            return torch.get_num_threads()
        threads = (ray.get(actor_threads.remote()), __import__("torch").get_num_threads())
    finally:
        ray.shutdown()
    (da, va), (db, vb) = rows(local), rows(remote)
    print(f"{args.scenes} PartsWorld scenes (seed 13), {model.name}, DecomCAM defaults, {args.batch_size} images per call")
    print(f"  rows: local {len(da)}, ray {len(db)}; same keys: {da[KEYS].equals(db[KEYS])}")
    worst = 0.0
    for col in VALUES:
        d = float(np.abs(da[col].to_numpy() - db[col].to_numpy()).max()) if len(da) == len(db) else float("nan")
        worst = max(worst, d)
        print(f"  max |difference| {col:20s} {d:.2e}")
    for name in VECTORS:
        d = float(np.abs(va[name] - vb[name]).max()) if va[name].shape == vb[name].shape and va[name].size else 0.0
        worst = max(worst, d)
        print(f"  max |difference| {name:20s} {d:.2e}")
    print(f"  largest difference {worst:.2e} ({'within' if worst <= 1e-4 else 'OUTSIDE'} 1e-4)")
    print(f"  time: local {t_local:.0f} s, ray {t_ray:.0f} s (one actor; indicative)")
    print(f"  torch threads: {threads[0]} in a Ray task given {args.num_cpus} CPU(s), {threads[1]} in this process")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
