"""Do components follow object parts? Scores that a reader cannot be fooled by, with their controls.

A labelling of an object's pixels (the strongest component at each pixel, a concept, a cluster) is scored against
the part there by normalised mutual information (NMI), three ways:

- within image: NMI over one object's pixels, averaged over objects. Component indices need not mean the same
  thing in two images, so this is the score of a per-image split (SVD, NMF).
- within class: NMI over the pixels of all objects of one class, averaged over classes (weighted by pixels).
  Labels must mean the same thing across images (concepts, clusters).
- pooled: NMI against "class/part" names over every object pixel. A labelling that knows only the class scores
  high here, so this number alone says little: the "class only" control shows how much.

Controls, computed on the same objects: a partition of each object by position alone (k-means of pixel
coordinates in the object's box, fitted per class), the same labels shuffled over the object, one label for the
whole object (an even map), the class alone, and the true parts seen at the layer's grid (the ceiling). A split
that does not beat the position partition has not shown that it finds parts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

RESOLUTION = 56  # objects are scored on a RESOLUTION x RESOLUTION grid (maps upsampled, masks subsampled)


@dataclass
class PartObject:
    """One object in one image, as the part study sees it.

    cls : the object's class.
    part_labels : int array of shape (H, W): the index in ``part_names`` of the part at each pixel, -1 off the
        object (pixels of the object that belong to no part count as off it).
    part_names : the parts' names, "class/part".
    """

    cls: str
    part_labels: np.ndarray
    part_names: Sequence[str]

    @classmethod
    def from_masks(cls, name: str, masks: Dict[str, np.ndarray], size: int = RESOLUTION) -> "PartObject":
        """From part masks (H, W) bool by "class/part" name, subsampled to ``size`` x ``size``."""
        names = list(masks)
        first = np.asarray(masks[names[0]])
        labels = np.full(first.shape, -1, np.int32)
        for i, n in enumerate(names):
            labels[np.asarray(masks[n], bool)] = i
        return cls(name, _subsample(labels, size), names)

    @property
    def mask(self) -> np.ndarray:
        return self.part_labels >= 0


def _subsample(labels: np.ndarray, size: int) -> np.ndarray:
    H, W = labels.shape
    ys = ((np.arange(size) + 0.5) * H / size).astype(int)
    xs = ((np.arange(size) + 0.5) * W / size).astype(int)
    return labels[ys][:, xs]


def _upsample(maps: np.ndarray, size: int) -> np.ndarray:
    import torch
    t = torch.as_tensor(np.asarray(maps, np.float32))[None]
    return torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0].numpy()


def strongest_component(maps: np.ndarray, size: int = RESOLUTION) -> np.ndarray:
    """The index of the largest of ``maps`` (K, h, w) at each pixel of a ``size`` x ``size`` grid (maps upsampled
    bilinearly), K where every map is <= 0 (no component there)."""
    up = _upsample(maps, size)
    out = up.argmax(0).astype(np.int32)
    out[up.max(0) <= 0] = len(up)
    return out


def _nmi(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import normalized_mutual_info_score
    return float(normalized_mutual_info_score(a, b))


def best_part_share(maps: np.ndarray, obj: PartObject) -> float:
    """Mean over the maps with mass on the object of the share of that mass on the map's best part."""
    up = np.clip(_upsample(maps, obj.part_labels.shape[0]), 0, None)
    shares = []
    for m in up:
        total = m[obj.mask].sum()
        if total <= 0:
            continue
        shares.append(max(m[obj.part_labels == p].sum() for p in range(len(obj.part_names))) / total)
    return float(np.mean(shares)) if shares else float("nan")


def position_partition(objects: Sequence[PartObject], k: int, random_state: int = 0) -> List[np.ndarray]:
    """A labelling that knows nothing of parts: each object pixel's position in the object's bounding box, both
    axes scaled to [0, 1], clustered by k-means into ``k`` regions fitted on all objects of a class."""
    from sklearn.cluster import KMeans
    coords = [_box_coords(o) for o in objects]
    out: List[Optional[np.ndarray]] = [None] * len(objects)
    for c in sorted({o.cls for o in objects}):
        idx = [i for i, o in enumerate(objects) if o.cls == c]
        pooled = np.concatenate([coords[i] for i in idx])
        rng = np.random.default_rng(random_state)
        sample = pooled[rng.choice(len(pooled), min(len(pooled), 5000), replace=False)]
        km = KMeans(min(k, len(np.unique(sample, axis=0))), n_init=3, random_state=random_state).fit(sample)
        for i in idx:
            lab = np.full(objects[i].part_labels.shape, -1, np.int32)
            lab[objects[i].mask] = km.predict(coords[i])
            out[i] = lab
    return out


def _box_coords(obj: PartObject) -> np.ndarray:
    ys, xs = np.nonzero(obj.mask)
    span_y, span_x = max(ys.max() - ys.min(), 1), max(xs.max() - xs.min(), 1)
    return np.stack([(ys - ys.min()) / span_y, (xs - xs.min()) / span_x], 1).astype(np.float64)


def grid_ceiling(obj: PartObject, grid: Tuple[int, int]) -> np.ndarray:
    """The true parts as a layer's grid can hold them: each grid cell takes the part covering most of its object
    pixels, shown back at full resolution. No map of that layer can do better than this labelling."""
    S = obj.part_labels.shape[0]
    gh, gw = grid
    cell_y = np.minimum((np.arange(S) * gh) // S, gh - 1)
    cell_x = np.minimum((np.arange(S) * gw) // S, gw - 1)
    cell = cell_y[:, None] * gw + cell_x[None, :]
    P = len(obj.part_names)
    counts = np.zeros((gh * gw, P + 1), np.int64)
    np.add.at(counts, (cell.ravel(), obj.part_labels.ravel() + 1), 1)
    best = counts[:, 1:].argmax(1)
    return best[cell].astype(np.int32)


class PartStudy(dict):
    """Dict of rows by labelling name, each {"within_image_nmi", "within_class_nmi", "pooled_nmi",
    "best_part_share"}; control rows are named "control: ...". ``table()`` prints it."""

    def table(self) -> str:
        lines = [f"{'labelling':52s} {'within image':>12s} {'within class':>12s} {'pooled':>8s} {'best part':>9s}"]
        for name, r in self.items():
            if isinstance(r, dict) and "within_image_nmi" in r:
                lines.append(f"{name:52s} {r['within_image_nmi']:12.3f} {r['within_class_nmi']:12.3f} "
                             f"{r['pooled_nmi']:8.3f} {r['best_part_share']:9.3f}")
        return "\n".join(lines)


def score_labelling(objects: Sequence[PartObject], labels: Sequence[np.ndarray]) -> Dict[str, float]:
    """NMI of one labelling (an int array per object, same shape as its part labels) against the parts: within
    image (objects with two parts or more), within class and pooled against "class/part"."""
    within, pred_by_class, true_by_class, pooled_pred, pooled_true = [], {}, {}, [], []
    for o, lab in zip(objects, labels):
        m = o.mask
        p, t = lab[m], o.part_labels[m]
        if len(np.unique(t)) >= 2:
            within.append(_nmi(t, p))
        pred_by_class.setdefault(o.cls, []).append(p)
        true_by_class.setdefault(o.cls, []).append(np.asarray(o.part_names, dtype=object)[t])
        pooled_pred.append(p)
        pooled_true.append(np.asarray(o.part_names, dtype=object)[t])
    per_class, weights = [], []
    for c in pred_by_class:
        t = np.concatenate(true_by_class[c])
        if len(set(t)) < 2:
            continue
        per_class.append(_nmi(t, np.concatenate(pred_by_class[c]).astype(str)))
        weights.append(len(t))
    pooled_t = np.concatenate(pooled_true) if pooled_true else np.array([])
    pooled_p = np.concatenate(pooled_pred).astype(str) if pooled_pred else np.array([])
    return {"within_image_nmi": float(np.mean(within)) if within else float("nan"),
            "within_class_nmi": float(np.average(per_class, weights=weights)) if per_class else float("nan"),
            "pooled_nmi": _nmi(pooled_t, pooled_p) if len(pooled_t) else float("nan")}


def part_study(objects: Sequence[PartObject], maps: Dict[str, Sequence[np.ndarray]], n_position: int,
               grid: Tuple[int, int], random_state: int = 0) -> PartStudy:
    """Score component maps of several splits against the parts of the same objects, with every control.

    objects : the objects scored (one per image, or several).
    maps : by split name, one (K, h, w) array of component maps per object (low resolution is fine; it is
        upsampled). Each object pixel is labelled by its strongest component.
    n_position : regions of the position partition (use the number of components).
    grid : the layer's grid (h, w), for the ceiling.
    """
    if not objects:
        raise ValueError("part_study needs at least one object with part masks.")
    study = PartStudy()
    size = objects[0].part_labels.shape[0]
    first = None
    for name, per_object in maps.items():
        if len(per_object) != len(objects):
            raise ValueError(f"maps[{name!r}] has {len(per_object)} entries for {len(objects)} objects.")
        labels = [strongest_component(m, size) for m in per_object]
        row = score_labelling(objects, labels)
        row["best_part_share"] = float(np.nanmean([best_part_share(m, o) for m, o in zip(per_object, objects)]))
        study[name] = row
        first = first or (name, labels)
    rng = np.random.default_rng(random_state)
    position = position_partition(objects, n_position, random_state)
    study[f"control: position partition (k={n_position})"] = _control(objects, position)
    if first is not None:
        shuffled = []
        for o, lab in zip(objects, first[1]):
            s = lab.copy()
            s[o.mask] = rng.permutation(lab[o.mask])
            shuffled.append(s)
        study[f"control: {first[0]} shuffled over the object"] = _control(objects, shuffled)
    study["control: even map (one label per object)"] = _control(objects, [np.zeros_like(o.part_labels)
                                                                           for o in objects])
    classes = sorted({o.cls for o in objects})
    study["control: class only"] = _control(objects, [np.full_like(o.part_labels, classes.index(o.cls))
                                                      for o in objects])
    study[f"control: true parts at the {grid[0]} x {grid[1]} grid (ceiling)"] = _control(
        objects, [grid_ceiling(o, grid) for o in objects])
    return study


def _control(objects: Sequence[PartObject], labels: Sequence[np.ndarray]) -> Dict[str, float]:
    row = score_labelling(objects, labels)
    K = [int(lab.max()) + 1 for lab in labels]
    row["best_part_share"] = float(np.nanmean([best_part_share(np.stack([lab == k for k in range(max(k_, 1))])
                                                               .astype(np.float32), o)
                                               for lab, o, k_ in zip(labels, objects, K)]))
    return row
