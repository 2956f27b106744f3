"""Why do DecomCAM's components not follow parts? How alike DecomCAM's matrix looks on different parts (issue 11)

    python benchmarks/probe_part_rows.py parts-rn /tmp/train11/parts-rn --layer visual.layer3

On 60 single-object PartsWorld scenes (seed 8080) and the prompt "a photo of a {class}", DecomCAM's matrix X
(grid cells x kept channels: activations times the channels' mean gradients, centred over the cells as the
default ``center=True`` does) is averaged over each part's cells, weighted by how much of each cell the part
covers (parts covering less than 0.3 of a cell in all have no row). Printed, as means over the scenes:

- the cosine between those part rows, two by two: an SVD returns single parts as components only where parts'
  rows are near orthogonal; alike rows make one component for the whole object and contrasts after it;
- the share of X's energy in its first singular value;
- the share of each positive OSSM's mass on its best part (1: every component lies on one part);
- for scale, from the masks alone: the share a map spread evenly over the object's parts puts on its largest part.
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

import decomviz as dv
from decomviz.models.taps import tap
from decomviz.data import PartsWorld


def part_rows(model, cam, scene, layer: str):
    """(parts' mean X rows (k, P), X's singular values, best-part share of each OSSM's mass (K,))."""
    with torch.no_grad(), tap(model, layer, requires_grad=False) as t:
        model.encode_image([scene.image])
        A = t.grid()[0].cpu()
    C, g = A.shape[0], A.shape[-1]
    exp = cam([scene.image], [f"a photo of a {scene.objects[0].label}"])
    alpha, kept = exp.alpha[0, 0], exp.channels[0, 0]
    X = (alpha[kept][:, None] * A.reshape(C, -1)[kept]).T
    X = X - X.mean(0, keepdim=True)
    masks = torch.from_numpy(np.stack([p.mask for p in scene.parts])).float()
    areas = torch.nn.functional.adaptive_avg_pool2d(masks[None], g)[0].reshape(len(scene.parts), -1)
    big = areas[areas.sum(1) >= 0.3]
    rows = (big @ X) / big.sum(1, keepdim=True)
    ossm = exp.ossms_lowres[0, 0].reshape(exp.ossms_lowres.shape[2], -1).clamp_min(0)
    share = (ossm @ areas.T) / ossm.sum(1, keepdim=True).clamp_min(1e-12)
    return rows, torch.linalg.svdvals(X), share.max(1).values[ossm.sum(1) > 0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=["parts-rn"], help="bundled names or trained folders")
    parser.add_argument("--layer", default=None, help="the tap (default: each model's default layer)")
    parser.add_argument("--scenes", type=int, default=60)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    world = PartsWorld(args.scenes, seed=8080, n_objects=1)
    even = np.mean([max(a) / sum(a) for a in ([p.mask.sum() for p in world[i].parts] for i in range(len(world)))])
    print(f"{len(world)} scenes: a map spread evenly over the object puts {even:.3f} of its mass on its largest part")
    for spec in args.models:
        model = dv.load_model(checkpoint=spec) if "/" in spec else dv.load_model(spec)
        layer = model.resolve_layer(args.layer)
        cam = dv.DecomCAM(model, layer=layer)
        cosines, first, best = [], [], []
        for i in range(len(world)):
            rows, s, share = part_rows(model, cam, world[i], layer)
            if len(rows) >= 2:
                r = torch.nn.functional.normalize(rows, dim=1)
                cosines.append(float((r @ r.T)[~torch.eye(len(r), dtype=torch.bool)].mean()))
            first.append(float(s[0] ** 2 / (s ** 2).sum()))
            best.append(float(share.mean()))
        print(f"{spec} ({layer}, {len(world)} scenes): cosine between parts' rows of X {np.mean(cosines):.3f}; "
              f"first singular value's share of X's energy {np.mean(first):.3f}; "
              f"best part's share of an OSSM's mass {np.mean(best):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
