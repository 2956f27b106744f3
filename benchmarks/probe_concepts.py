"""Which cells should a dataset-level concept basis factorize? A probe on the choosing scenes only.

Variants of `ConceptBasis`, each fitted on scenes of ``--fit-seed`` and scored on scenes of ``--choose-seed`` (the
seed `bench_part_splits.py` chooses on; nothing here touches its report seed), by the margin of within-class part
NMI over the position partition with as many regions:

- activations: the layer's activations clipped at zero (what DFF and CRAFT factorize);
- directions: the same, each cell over its L2 norm (``normalize_cells=True``);
- evidence: the activations weighted by the class prompt's channel gradients (Grad-CAM's alpha, as DecomCAM's
  first stage does), clipped at zero, so that cells that do not count for the prompt fade;
- evidence directions: both;
- standardised: the activations with each channel over its root mean square on the fitting scenes, so that no
  channel (a colour channel, say) dominates the factorization by its scale alone; and its directions;
- image parts, clustered: each fitting image's cells factorized on their own (NMF, as many components as
  concepts), the components' unit directions pooled (per class) and clustered by k-means; the concepts are the
  cluster centres, and cells are coded against them on their directions;
- image parts, clustered and matched: the same concepts, and each scored image coded by its own NMF components,
  each component given whole to the concept it matches (``coding="image-parts"``).

    python benchmarks/probe_concepts.py --model parts-rn-dense
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

import decomviz as dv
from decomviz.analysis.concepts import ConceptBasis

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_part_splits import CLASS_TEMPLATE, single_object_scenes  # noqa: E402


class EvidenceBasis(ConceptBasis):
    """Concepts of gradient-weighted activations: each image's cells weighted by its class prompt's alpha."""

    classes_of: dict = {}

    def _cells(self, images):
        labels = [self.classes_of[id(im)] for im in images]
        prompts = sorted(set(labels))
        g = dv.tap_gradients(self.model, list(images), [CLASS_TEMPLATE.format(c) for c in prompts], self.layer)
        B, C, h, w = g.activations.shape
        self.grid_ = (int(h), int(w))
        t = torch.tensor([prompts.index(c) for c in labels])
        alpha = g.gradients[torch.arange(B), t].mean((-2, -1))  # (B, C)
        x = (g.activations * alpha[:, :, None, None]).clamp_min(0)
        return x.reshape(B, C, h * w).transpose(1, 2)


class StandardisedBasis(ConceptBasis):
    """Concepts of activations with each channel divided by its RMS over the fitting scenes (a fixed scale)."""

    scale = None

    def _cells(self, images):
        cells = super()._cells(images)
        return cells / self.scale


def channel_rms(model, scenes, batch: int = 16):
    total, n = 0.0, 0
    for i in range(0, len(scenes), batch):
        acts = dv.tap_activations(model, [s.image for s in scenes[i:i + batch]]).clamp_min(0)
        total = total + (acts ** 2).sum((0, 2, 3)).cpu()
        n += acts.shape[0] * acts.shape[2] * acts.shape[3]
    return (total / n).sqrt().clamp_min(1e-6)


def margin(basis, scenes, k):
    rep = basis.part_report(scenes)
    pos = rep[f"control: position partition (k={k})"]["within_class_nmi"]
    return rep["concepts"]["within_class_nmi"], pos


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="parts-rn-dense")
    ap.add_argument("--fit-scenes", type=int, default=120)
    ap.add_argument("--scenes", type=int, default=40)
    ap.add_argument("--fit-seed", type=int, default=2025)
    ap.add_argument("--choose-seed", type=int, default=2026)
    ap.add_argument("--ks", type=int, nargs="*", default=[4, 6])
    ap.add_argument("--variants", nargs="*", default=None, help="default: all")
    args = ap.parse_args(argv)
    model = dv.load_model(args.model)
    fit = single_object_scenes(args.fit_scenes, args.fit_seed)
    choose = single_object_scenes(args.scenes, args.choose_seed)
    EvidenceBasis.classes_of = {id(s.image): s.objects[0].label for s in fit + choose}
    StandardisedBasis.scale = channel_rms(model, fit)
    variants = {"activations": (ConceptBasis, False, "dataset", "cells"),
                "directions": (ConceptBasis, True, "dataset", "cells"),
                "evidence": (EvidenceBasis, False, "dataset", "cells"),
                "evidence directions": (EvidenceBasis, True, "dataset", "cells"),
                "standardised": (StandardisedBasis, False, "dataset", "cells"),
                "standardised directions": (StandardisedBasis, True, "dataset", "cells"),
                "image parts, clustered": (ConceptBasis, True, "image-parts", "cells"),
                "image parts, clustered and matched": (ConceptBasis, True, "image-parts", "image-parts")}
    rows = []
    for variant in args.variants or list(variants):
        cls, normalize, strategy, coding = variants[variant]
        for per_class in (True, False):
            for k in args.ks:
                t0 = time.perf_counter()
                basis = cls(model, n_concepts=k, per_class=per_class, random_state=0, normalize_cells=normalize,
                            strategy=strategy, coding=coding)
                basis.fit(fit)
                got, pos = margin(basis, choose, k)
                row = {"variant": variant, "per_class": per_class, "k": k, "within_class_nmi": round(got, 4),
                       "position": round(pos, 4), "margin": round(got - pos, 4),
                       "seconds": round(time.perf_counter() - t0, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    best = max(rows, key=lambda r: r["margin"])
    print("best on the choosing scenes:", json.dumps(best))
    return 0


if __name__ == "__main__":
    sys.exit(main())
