"""Is part colour linearly readable from a model's image embedding? (issue 11)

    python benchmarks/probe_colour_linear.py parts-rn /tmp/train5/parts-rn parts-vit

For each model (a bundled name or a trained folder): image embeddings of 800 single-object PartsWorld scenes
(seed 97531, 224 px); a logistic regression (scikit-learn, C=10) fitted on 600 of them to the colour of the
object's largest part, and of its smallest drawn part, and its accuracy on the other 200 (chance 1/12). A model
whose embedding holds no colour cannot bind colours to parts whatever its text tower does.

``--layers visual.layer3 visual.layer4`` also probes the mean over the grid of each layer's output: where the
smallest part's colour is read from a layer but not from the embedding, the pooling between them loses it.
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

import decomviz as dv


def main(argv=None) -> int:
    from sklearn.linear_model import LogisticRegression
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=["parts-rn"], help="bundled names or trained folders")
    parser.add_argument("--layers", nargs="*", default=[], help="also probe these layers' outputs, mean-pooled")
    args = parser.parse_args(argv)
    specs = args.models
    warnings.simplefilter("ignore")
    world = dv.PartsWorld(800, seed=97531, n_objects=1)
    scenes = [world[i] for i in range(800)]
    largest = np.array([max(s.parts, key=lambda p: p.mask.sum()).color for s in scenes])
    smallest = np.array([min((p for p in s.parts if p.mask.any()), key=lambda p: p.mask.sum()).color
                         for s in scenes])
    for spec in specs:
        model = dv.load_model(checkpoint=spec) if "/" in spec else dv.load_model(spec)
        pooled = {layer: [] for layer in args.layers}
        hooks = [model.module(layer).register_forward_hook(
            lambda m, i, o, layer=layer: pooled[layer].append(o.float().mean((-2, -1)) if o.ndim == 4
                                                              else o.float().mean(1)))
            for layer in args.layers]
        try:
            with torch.no_grad():
                emb = torch.cat([model.encode_image([s.image for s in scenes[i:i + 50]])
                                 for i in range(0, 800, 50)]).cpu().numpy()
        finally:
            for h in hooks:
                h.remove()
        features = {"the image embedding": emb}
        features.update({f"{layer}, mean-pooled": torch.cat(v).cpu().numpy() for layer, v in pooled.items()})
        for where, x in features.items():
            for name, y in (("largest part", largest), ("smallest part", smallest)):
                clf = LogisticRegression(max_iter=3000, C=10).fit(x[:600], y[:600])
                print(f"{spec}: linear probe on {where}, colour of the {name}: "
                      f"{clf.score(x[600:], y[600:]):.3f} (chance {1 / 12:.3f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
