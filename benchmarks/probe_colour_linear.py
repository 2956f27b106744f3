"""Is part colour linearly readable from a model's image embedding? (issue 11)

    python benchmarks/probe_colour_linear.py parts-rn /tmp/train5/parts-rn parts-vit

For each model (a bundled name or a trained folder): image embeddings of 800 single-object PartsWorld scenes
(seed 97531, 224 px); a logistic regression (scikit-learn, C=10) fitted on 600 of them to the colour of the
object's largest part, and of its smallest drawn part, and its accuracy on the other 200 (chance 1/12). A model
whose embedding holds no colour cannot bind colours to parts whatever its text tower does.

``--layers visual.layer3 visual.layer4`` also probes each layer's output two ways: its mean over the grid (what
a pooling that does not look where the part is keeps), and its mean under the probed part's own mask (whether
the layer holds the part's colour at all, where the part is).
"""
from __future__ import annotations

import argparse
import contextlib
import warnings

import numpy as np
import torch

import decomviz as dv
from decomviz.models.taps import tap


def main(argv=None) -> int:
    from sklearn.linear_model import LogisticRegression
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=["parts-rn"], help="bundled names or trained folders")
    parser.add_argument("--layers", nargs="*", default=[],
                        help="also probe these layers' outputs: grid mean, and mean under the part's mask")
    args = parser.parse_args(argv)
    specs = args.models
    warnings.simplefilter("ignore")
    world = dv.PartsWorld(800, seed=97531, n_objects=1)
    scenes = [world[i] for i in range(800)]
    chosen = {"largest part": [max(sc.parts, key=lambda p: p.mask.sum()) for sc in scenes],
              "smallest part": [min((p for p in sc.parts if p.mask.any()), key=lambda p: p.mask.sum())
                                for sc in scenes]}
    labels = {name: np.array([p.color for p in ps]) for name, ps in chosen.items()}
    parts = {name: torch.from_numpy(np.stack([p.mask for p in ps])).float() for name, ps in chosen.items()}
    for spec in specs:
        model = dv.load_model(checkpoint=spec) if "/" in spec else dv.load_model(spec)
        pooled = {(layer, how): [] for layer in args.layers for how in ("mean", "largest part", "smallest part")}
        emb = []
        with torch.no_grad(), contextlib.ExitStack() as stack:
            taps = [stack.enter_context(tap(model, layer, requires_grad=False)) for layer in args.layers]
            for i in range(0, 800, 50):
                emb.append(model.encode_image([sc.image for sc in scenes[i:i + 50]]))
                for layer, t in zip(args.layers, taps):
                    o = t.grid().cpu()                                        # (50, C, h, w), any tower
                    pooled[(layer, "mean")].append(o.mean((-2, -1)))
                    for name in ("largest part", "smallest part"):
                        w = torch.nn.functional.adaptive_avg_pool2d(parts[name][i:i + 50, None], o.shape[-2:])[:, 0]
                        w = w / w.sum((-2, -1), keepdim=True).clamp_min(1e-12)
                        pooled[(layer, name)].append(torch.einsum("bchw,bhw->bc", o, w))
        emb = torch.cat(emb).cpu().numpy()
        for name in ("largest part", "smallest part"):
            features = {"the image embedding": emb}
            for layer in args.layers:
                features[f"{layer}, mean over the grid"] = torch.cat(pooled[(layer, "mean")]).numpy()
                features[f"{layer}, mean under the part's mask"] = torch.cat(pooled[(layer, name)]).numpy()
            y = labels[name]
            for where, x in features.items():
                clf = LogisticRegression(max_iter=3000, C=10).fit(x[:600], y[:600])
                print(f"{spec}: linear probe on {where}, colour of the {name}: "
                      f"{clf.score(x[600:], y[600:]):.3f} (chance {1 / 12:.3f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
