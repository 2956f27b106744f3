"""Does a bundled (or any PartsWorld-trained) model use parts? Zero-shot object accuracy, attribute binding and
part use on fresh single-object scenes, as `decomviz bench`'s "parts" section measures them, and whether the
model sees colour at all (embeddings of a scene with one part recoloured; prompts that differ only in a colour).

    python benchmarks/bench_model_parts.py --model parts-rn --scenes 100 --seed 31
    python benchmarks/bench_model_parts.py --checkpoint trained/parts-rn --scenes 100 --seed 31
"""
from __future__ import annotations

import argparse
import time

import decomviz as dv
from decomviz.apps.bench.parts import attribute_binding, colour_sensitivity, part_use, single_object_scenes
from decomviz.apps.train import zero_shot_accuracy


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="parts-rn")
    ap.add_argument("--checkpoint", default=None, help="a trained folder instead of a bundled model")
    ap.add_argument("--scenes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=31)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    model = dv.load_model(checkpoint=args.checkpoint) if args.checkpoint else dv.load_model(args.model)
    scenes = single_object_scenes(args.scenes, args.seed)
    zs = zero_shot_accuracy(model.model, model.tokenizer, n=200, seed=args.seed + 5000)
    print(f"{model.name} ({model.source}), default layer {model.default_layer}")
    print(f"  zero-shot object accuracy     {zs:.3f}  (200 single-object scenes, seed {args.seed + 5000})")
    ab = attribute_binding(model, scenes)
    print(f"  attribute binding             {ab['attribute_binding']:.3f}  ({ab['pairs']} part prompts, chance "
          f"{ab['chance']:.3f}); on each object's largest part {ab['binding_largest_part']:.3f}, on its smallest "
          f"{ab['binding_smallest_part']:.3f}")
    cs = colour_sensitivity(model, scenes)
    print(f"  colour sensitivity            image cosine after recolouring one part {cs['recoloured_image_cosine']:.4f}, "
          f"smallest cosine among the 12 colour prompts {cs['colour_prompt_cosine']:.4f} (medians; 1 = blind)")
    pu = part_use(model, scenes)
    print(f"  part use                      {pu['part_use']:.3f}  ({pu['pairs']} part prompts)")
    print(f"  ({time.perf_counter() - t0:.0f} s; scenes: {args.scenes} single-object, seed {args.seed} + 100)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
