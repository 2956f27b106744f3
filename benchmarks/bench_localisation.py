"""Pointing game on two-object PartsWorld scenes (issue 3): does the map of "a photo of a {class}" peak on
that object?

    python benchmarks/bench_localisation.py [--models parts-rn] [--scenes 200] [--seed 7]

Scenes whose two objects share a class are skipped. Prints one table per model.
"""
import argparse
import time
import warnings

import decomviz as dv
from decomviz.apps.evaluation import two_object_scenes
from decomviz.apps.evaluation import format_table, localise


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["parts-rn"])
    ap.add_argument("--scenes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    scenes = two_object_scenes(args.scenes, args.seed)
    for name in args.models:
        model = dv.load_model(name)
        cams = {name: dv.make_method(name, model) for name in dv.METHODS if name not in ("scorecam", "gscorecam")}
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = localise(cams, scenes)
        flagged = sum("No component raised" in str(w.message) for w in caught)
        print(f"\n{name}: {len(scenes)} two-object scenes (seed {args.seed}), layer {model.default_layer}, "
              f"{time.perf_counter() - t0:.0f} s; {flagged} DecomCAM call(s) flagged no positive contribution")
        print(format_table(res))


if __name__ == "__main__":
    main()
