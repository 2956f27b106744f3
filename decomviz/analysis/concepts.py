"""Concepts shared across a dataset: a non-negative basis of one layer's activations, fitted over many images.

Where DecomCAM splits one image's gradient-weighted maps for one prompt, `ConceptBasis` factorizes the activations
of many images at once (as Deep Feature Factorization and CRAFT do): every grid cell of every image is a row of
channel activations, clipped at zero, and a `MiniBatchNMF` finds ``n_concepts`` non-negative directions that
rebuild them. A concept then has a map in any image (``transform``), a share of any prompt's score (``importance``,
by DecomCAM's masked scoring), and can be scored against ground-truth parts (``part_report``), with the controls of
`decomviz.metrics.part_study`.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..methods.decomcam import DecomCAM
from ..methods.gradients import tap_activations
from ..metrics.part_study import RESOLUTION, PartObject, PartStudy, part_study
from ..ops import blurred_reference, embed_masked, minmax, upsample

_FORMAT = "decomviz-concepts-1"
#: How a basis is fitted (see `ConceptBasis`).
STRATEGIES = ("dataset", "image-parts")
#: How a new image's cells are given to the concepts (see `ConceptBasis`).
CODINGS = ("cells", "image-parts")


def _image_class_parts(item) -> Tuple[Any, Optional[str], Dict[str, np.ndarray]]:
    """(image, class of its first object, parts "class/part" -> mask of that object) of a PartsWorld `Scene` or a
    dataset `Item`."""
    if hasattr(item, "objects") and hasattr(item, "parts") and isinstance(item.parts, list):  # a Scene
        cls = item.objects[0].label if item.objects else None
        parts = {f"{cls}/{p.name}": p.mask for p in item.parts if p.object == 0 and p.mask.any()}
        return item.image, cls, parts
    if getattr(item, "error", None):
        return None, None, {}
    labels = list(getattr(item, "labels", []) or [])
    cls = labels[0] if labels else None
    parts = {k: np.asarray(v, bool) for k, v in (getattr(item, "parts", None) or {}).items()
             if cls is not None and k.split("/", 1)[0] == cls and np.asarray(v).any()}
    return getattr(item, "image", None), cls, parts


class ConceptBasis:
    """Non-negative concepts of one layer, shared across a dataset.

    Parameters
    ----------
    model : CLIPModel from `dv.load_model`.
    n_concepts : number of concepts (per class with ``per_class``).
    layer : the layer whose activations are factorized; default ``model.default_layer``.
    per_class : fit one basis per class (the class of each image's first label), as DFF does per category.
    random_state : seed of the mini-batch NMF.
    batch_size : images per forward pass; the NMF takes one batch's cells per ``partial_fit``.
    n_epochs : passes over the dataset.
    normalize_cells : factorize each cell's direction (its activations over their L2 norm), so that what a cell
        holds, not how strongly, decides its concept; a concept's map is then its code times the cell's norm.
    strategy : "dataset" (default): one mini-batch NMF over every cell of every image, streaming. "image-parts":
        each image's cells factorized on their own (NMF, ``n_concepts`` components), the components' unit
        directions pooled (per class with ``per_class``) and clustered by k-means; the concepts are the cluster
        centres, and cells are coded on their directions (as with ``normalize_cells``). It keeps one
        (n_concepts, C) array per image until the clustering.
    coding : how `transform` gives a new image's cells to the concepts. "cells" (default): each cell's non-negative
        code on the fixed concepts, as NMF's transform does. "image-parts": the image's own cells factorized (NMF,
        one component per concept), each component given whole to the concept whose direction it matches, one
        component per concept (the assignment that maximises the summed cosine); a concept's map is then its
        component's map. The image's own regions make the maps' edges, and the concepts name the regions.

    After ``fit(dataset)``: ``components_`` (n_concepts, C) (a dict by class with ``per_class``), ``layer_``,
    ``grid_`` (h, w), ``n_images_``, ``classes_``.
    """

    def __init__(self, model, n_concepts: int = 12, layer: Optional[str] = None, per_class: bool = False,
                 random_state: Optional[int] = None, batch_size: int = 16, n_epochs: int = 2,
                 normalize_cells: bool = False, strategy: str = "dataset", coding: str = "cells"):
        if not isinstance(n_concepts, (int, np.integer)) or isinstance(n_concepts, bool) or n_concepts < 1:
            raise ValueError(f"n_concepts must be a positive integer, got {n_concepts!r}.")
        for name, value in (("batch_size", batch_size), ("n_epochs", n_epochs)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        self.model = model
        self.n_concepts = int(n_concepts)
        self.layer = layer
        self.per_class = bool(per_class)
        self.random_state = random_state
        self.batch_size = int(batch_size)
        self.n_epochs = int(n_epochs)
        self.normalize_cells = bool(normalize_cells)
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}.")
        self.strategy = strategy
        if coding not in CODINGS:
            raise ValueError(f"coding must be one of {', '.join(CODINGS)}; got {coding!r}.")
        self.coding = coding

    def __repr__(self) -> str:
        return (f"ConceptBasis(n_concepts={self.n_concepts}, layer={self.layer!r}, per_class={self.per_class}, "
                f"random_state={self.random_state}" + (", normalize_cells=True" if self.normalize_cells else "")
                + (f", strategy={self.strategy!r}" if self.strategy != "dataset" else "")
                + (f", coding={self.coding!r})" if self.coding != "cells" else ")"))

    # ------------------------------------------------------------------ fitting
    def _cells(self, images: Sequence[Any]) -> torch.Tensor:
        """(B, n, C) non-negative activations of the images' grid cells."""
        acts = tap_activations(self.model, list(images), self.layer)
        B, C, h, w = acts.shape
        self.grid_ = (int(h), int(w))
        return acts.reshape(B, C, h * w).transpose(1, 2).clamp_min(0).cpu()

    def _directions(self, cells: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(rows to factorize, the scale to put back on their codes): the cells as they are, or with
        ``normalize_cells`` their directions and norms."""
        if not (self.normalize_cells or self.strategy == "image-parts"):
            return cells, np.ones(cells.shape[:-1] + (1,))
        return _unit_rows(cells), np.linalg.norm(cells, axis=-1, keepdims=True)

    def _batches(self, dataset: Iterable) -> Iterable[Tuple[List[Any], List[Optional[str]]]]:
        images, classes = [], []
        for item in dataset:
            image, cls, _ = _image_class_parts(item)
            if image is None:
                continue
            images.append(image)
            classes.append(cls)
            if len(images) == self.batch_size:
                yield images, classes
                images, classes = [], []
        if images:
            yield images, classes

    def fit(self, dataset: Iterable) -> "ConceptBasis":
        """Fit the concepts on every readable image of ``dataset`` (PartsWorld scenes, dataset items, or images
        with ``per_class=False``), streaming: one batch of images' cells in memory at a time."""
        from sklearn.decomposition import MiniBatchNMF
        self.layer_ = self.model.resolve_layer(self.layer)
        if self.strategy == "image-parts":
            return self._fit_image_parts(dataset)
        estimators: Dict[Optional[str], Any] = {}
        n_images = 0
        for epoch in range(self.n_epochs):
            for images, classes in self._batches(_images_only(dataset)):
                cells = self._directions(self._cells(images).numpy().astype(np.float64))[0]
                n_images += len(images) if epoch == 0 else 0
                keys = classes if self.per_class else [None] * len(images)
                for key in dict.fromkeys(keys):
                    if self.per_class and key is None:
                        raise ValueError("per_class=True needs a class for every image (a PartsWorld scene or a "
                                         "dataset item with labels); this image has none.")
                    rows = cells[[i for i, k in enumerate(keys) if k == key]].reshape(-1, cells.shape[-1])
                    est = estimators.get(key)
                    if est is None:
                        est = estimators[key] = MiniBatchNMF(self.n_concepts, init="nndsvda", batch_size=len(rows),
                                                             random_state=self.random_state, max_iter=1)
                    est.partial_fit(rows)
        if not estimators:
            raise ValueError("The dataset has no readable image to fit concepts on.")
        self.n_images_ = n_images
        self.estimators_ = estimators
        self.classes_ = sorted(k for k in estimators if k is not None)
        self.components_ = ({k: e.components_.astype(np.float32) for k, e in estimators.items()} if self.per_class
                            else estimators[None].components_.astype(np.float32))
        return self

    def _fit_image_parts(self, dataset: Iterable) -> "ConceptBasis":
        """strategy="image-parts": per-image NMF components, their directions clustered across images."""
        from sklearn.cluster import KMeans
        pooled: Dict[Optional[str], List[np.ndarray]] = {}
        n_images = 0
        for images, classes in self._batches(_images_only(dataset)):
            cells = self._cells(images).numpy().astype(np.float64)
            for b, cls in enumerate(classes):
                if self.per_class and cls is None:
                    raise ValueError("per_class=True needs a class for every image (a PartsWorld scene or a "
                                     "dataset item with labels); this image has none.")
                k = min(self.n_concepts, *cells[b].shape)
                H = _image_nmf(cells[b], k, self.random_state)[1]
                pooled.setdefault(cls if self.per_class else None, []).append(_unit_rows(H))
                n_images += 1
        if not pooled:
            raise ValueError("The dataset has no readable image to fit concepts on.")
        centres = {}
        for key, parts in pooled.items():
            rows = np.concatenate(parts)
            if len(rows) < self.n_concepts:
                raise ValueError(f"{len(rows)} image components{'' if key is None else f' of class {key!r}'} "
                                 f"cannot make {self.n_concepts} concepts: give more images or fewer concepts.")
            km = KMeans(self.n_concepts, n_init=4, random_state=self.random_state).fit(rows)
            centres[key] = np.clip(km.cluster_centers_, 0, None).astype(np.float32)
        self.n_images_ = n_images
        self.classes_ = sorted(k for k in centres if k is not None)
        self.components_ = centres if self.per_class else centres[None]
        return self

    def for_class(self, cls: str) -> "ConceptBasis":
        """The concepts of one class of a per-class basis, as a shared basis of their own: what `ConceptGallery`,
        `name_parts` and `transform` without classes take. A shared basis returns itself."""
        self._check_fitted()
        if not self.per_class:
            return self
        one = copy.copy(self)
        one.per_class, one.components_, one.classes_ = False, self._basis(cls), []
        one.__dict__.pop("model_names_", None)
        return one

    def _check_fitted(self):
        if not hasattr(self, "components_"):
            raise RuntimeError("Call fit(dataset) first (or ConceptBasis.load(path)).")

    def _basis(self, cls: Optional[str]) -> np.ndarray:
        if not self.per_class:
            return self.components_
        if cls not in self.components_:
            raise ValueError(f"These concepts were fitted per class ({', '.join(self.classes_)}); give each image's "
                             f"class in classes=[...] (got {cls!r}).")
        return self.components_[cls]

    # ------------------------------------------------------------------ using them
    def transform(self, images: Any, classes: Optional[Sequence[str]] = None, size: str = "input") -> np.ndarray:
        """Each concept's map in each image: (B, n_concepts, H, W) float32 at the model's input size (``size=
        "input"``) or at the layer's grid (``size="grid"``). The map of concept k at a cell is the cell's
        coefficient on concept k (non-negative least squares against the fixed concepts)."""
        self._check_fitted()
        images = images if isinstance(images, (list, tuple)) else [images]
        if self.per_class and (classes is None or len(classes) != len(images)):
            raise ValueError("Concepts fitted per class need classes=[...], one class per image.")
        raw = self._cells(images).numpy().astype(np.float64)  # (B, n, C)
        bases = [self._basis(classes[b] if self.per_class else None) for b in range(len(images))]
        h, w = self.grid_
        if self.coding == "image-parts":
            out = np.stack([_matched_image_parts(raw[b], bases[b], self.random_state) for b in range(len(images))])
        else:
            cells, scale = self._directions(raw)  # (B, n, C), (B, n, 1)
            out = np.stack([_nnls_codes(cells[b], bases[b]) for b in range(len(images))]) * scale  # (B, n, K)
        maps = out.transpose(0, 2, 1).reshape(len(images), -1, h, w).astype(np.float32)
        if size == "grid":
            return maps
        if size != "input":
            raise ValueError(f"size must be 'input' or 'grid', got {size!r}.")
        return upsample(torch.from_numpy(maps), tuple(self.model.image_size)).clamp_min(0).numpy()

    def importance(self, images: Any, prompts: Union[str, Sequence[str]], classes: Optional[Sequence[str]] = None,
                   blur_sigma: float = 10.0, score: str = "cosine") -> Dict[str, np.ndarray]:
        """How much of each prompt's score each concept's region alone restores, by DecomCAM's masked scoring:
        the image masked by the concept's (min-max normalised) map over its blurred reference.

        Returns "contributions" (B, T, n_concepts): s(x_k, t) - s(r, t); "shares" (B, T, n_concepts): the
        contributions over s(x, t) - s(r, t), the gap the whole image restores (NaN where that gap is <= 0);
        "score" (B, T) and "reference_score" (B, T).
        """
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        images = images if isinstance(images, (list, tuple)) else [images]
        maps = self.transform(images, classes)  # (B, K, H, W)
        masks = np.repeat(maps[:, None], len(prompts), axis=1)  # the same regions for every prompt
        out = DecomCAM(self.model, blur_sigma=blur_sigma, score=score).score_masks(images, prompts, masks)
        d = out["contributions"].numpy()
        full, base = out["score"].numpy(), out["reference_score"].numpy()
        gap = (full - base)[..., None]
        shares = np.where(gap > 0, d / np.where(gap > 0, gap, 1), np.nan)
        return {"contributions": d, "shares": shares, "score": full, "reference_score": base}

    # ------------------------------------------------------------------ parts
    def part_report(self, dataset: Iterable, random_state: int = 0) -> PartStudy:
        """Concepts against ground-truth parts on ``dataset`` (items or scenes with part masks): each object pixel
        labelled by its strongest concept, scored within image, within class and pooled, beside the controls of
        `decomviz.metrics.part_study` (position partition with as many regions as concepts, shuffled labels,
        an even map, the class alone, the true parts at the layer's grid). With ``per_class``, images of a class
        the concepts were not fitted on are left out; ``report.skipped_unknown_class`` counts them."""
        self._check_fitted()
        objects, images, classes = [], [], []
        unknown = 0
        for item in dataset:
            image, cls, parts = _image_class_parts(item)
            if image is None or not parts:
                continue
            if self.per_class and cls not in self.components_:  # no concepts of this class were fitted
                unknown += 1
                continue
            objects.append(PartObject.from_masks(cls, parts, RESOLUTION))
            images.append(image)
            classes.append(cls)
        if not objects:
            raise ValueError("part_report needs images with ground-truth part masks (PartsWorld scenes, or a dataset "
                             "with parts such as dv.datasets.COCOParts); this dataset has none.")
        maps = []
        for i in range(0, len(images), self.batch_size):
            maps.extend(self.transform(images[i:i + self.batch_size],
                                       classes[i:i + self.batch_size] if self.per_class else None, size="grid"))
        study = part_study(objects, {"concepts": maps}, self.n_concepts, self.grid_, random_state)
        study.skipped_unknown_class = unknown  # images of classes the per-class concepts were not fitted on
        return study

    def name_parts(self, vocabulary: Sequence[str], images: Sequence[Any], template: str = "a photo of a {}",
                   part_template: str = "the {part} of a {class}") -> List[Dict]:
        """Name each concept by the text encoder: the mean embedding of ``images`` masked by the concept's map (over
        the blurred reference) against a prompt per vocabulary entry. An entry "class/part", as ground-truth names
        are, becomes ``part_template`` ("the wheel of a car"); any other entry fills ``template``. The result is
        kept in ``model_names_``, apart from any ground-truth naming."""
        self._check_fitted()
        if self.per_class:
            raise ValueError("name_parts names the concepts of one shared basis; with per_class=True name each "
                             "class's concepts from its own images: basis.for_class('house').name_parts(...).")
        if not vocabulary:
            raise ValueError("Give a non-empty vocabulary, e.g. ['car/wheel', 'house/roof'] or ['wheel', 'roof'].")
        prompts = [_prompt(v, template, part_template) for v in vocabulary]
        images = list(images)
        maps = torch.from_numpy(self.transform(images))
        x = self.model.prepare(images).tensor
        B, K = maps.shape[:2]
        with torch.no_grad():
            ref = blurred_reference(x, 10.0)
            masks = minmax(maps.to(x.device)).reshape(B * K, 1, *maps.shape[-2:])
            emb = embed_masked(self.model.embed, x, ref, masks, torch.arange(B, device=x.device).repeat_interleave(K),
                               self.batch_size).reshape(B, K, -1).mean(0)
            emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            text = self.model.encode_text(prompts).to(emb.device)
            probs = (self.model.logit_scale * emb @ text.T).softmax(-1).cpu()
        out = []
        for k in range(K):
            best = int(probs[k].argmax())
            out.append({"concept": k, "name": vocabulary[best], "prompt": prompts[best],
                        "confidence": float(probs[k, best])})
        self.model_names_ = out
        return out

    # ------------------------------------------------------------------ files
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the concepts to an .npz file without pickles: the bases and a JSON record of how they were made."""
        self._check_fitted()
        path = Path(os.fspath(path))
        if path.suffix.lower() != ".npz":
            raise ValueError(f"ConceptBasis.save writes a NumPy .npz archive; name the file with .npz (got '{path}').")
        keys = self.classes_ if self.per_class else [None]
        arrays = {f"basis_{i}": (self.components_[k] if self.per_class else self.components_)
                  for i, k in enumerate(keys)}
        meta = {"format": _FORMAT, "n_concepts": self.n_concepts, "layer": self.layer_, "per_class": self.per_class,
                "classes": self.classes_, "grid": list(self.grid_), "n_images": self.n_images_,
                "random_state": self.random_state, "model": getattr(self.model, "name", None),
                "normalize_cells": self.normalize_cells, "strategy": self.strategy, "coding": self.coding}
        np.savez(path, meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8), **arrays)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], model) -> "ConceptBasis":
        """Concepts written by `save`, for ``model`` (the layer must exist in it, with the same channels)."""
        with np.load(os.fspath(path), allow_pickle=False) as f:
            if "meta" not in f.files:
                raise ValueError(f"'{path}' is not a file written by ConceptBasis.save (no 'meta' entry).")
            meta = json.loads(bytes(f["meta"]).decode("utf-8"))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"'{path}' holds format {meta.get('format')!r}; this decomviz reads {_FORMAT!r}.")
            bases = [f[f"basis_{i}"].astype(np.float32) for i in range(max(1, len(meta["classes"])) if
                                                                        meta["per_class"] else 1)]
        basis = cls(model, meta["n_concepts"], meta["layer"], meta["per_class"], meta["random_state"],
                    normalize_cells=bool(meta.get("normalize_cells", False)),
                    strategy=meta.get("strategy", "dataset"), coding=meta.get("coding", "cells"))
        basis.layer_ = model.resolve_layer(meta["layer"])
        basis.grid_ = tuple(meta["grid"])
        basis.n_images_ = meta["n_images"]
        basis.classes_ = list(meta["classes"])
        basis.components_ = dict(zip(basis.classes_, bases)) if meta["per_class"] else bases[0]
        return basis


def _images_only(dataset: Iterable) -> Iterable:
    """Bare images (PIL, paths, arrays) become items without a class; scenes and items pass as they are."""
    for item in dataset:
        if hasattr(item, "image") or hasattr(item, "objects"):
            yield item
        else:
            yield _Bare(item)


class _Bare:
    def __init__(self, image):
        self.image, self.labels, self.parts, self.error = image, [], {}, None


def _prompt(entry: str, template: str, part_template: str) -> str:
    if "/" in entry:
        cls, part = entry.split("/", 1)
        return part_template.replace("{class}", cls).replace("{part}", part)
    return template.format(entry)


def _nnls_codes(cells: np.ndarray, basis: np.ndarray, n_iter: int = 200) -> np.ndarray:
    """Non-negative codes W (n, K) with cells (n, C) ~ W basis (K, C): multiplicative updates from a least-squares
    start, the basis fixed (what NMF's transform solves)."""
    H = basis.astype(np.float64)
    HHt = H @ H.T
    XHt = cells @ H.T
    W = np.clip(np.linalg.lstsq(HHt, XHt.T, rcond=None)[0].T, 1e-6, None)
    for _ in range(n_iter):
        W *= XHt / np.maximum(W @ HHt, 1e-12)
    return W


def _matched_image_parts(cells: np.ndarray, basis: np.ndarray, random_state: Optional[int]) -> np.ndarray:
    """Codes (n, K) of one image's cells (n, C): the image's own NMF components (as many as concepts, or fewer
    where the image has fewer cells or channels), each put whole on the concept it matches by cosine, one component
    per concept; a component's code is its NMF coefficient times its norm, so codes are in the cells' units."""
    from scipy.optimize import linear_sum_assignment
    K = len(basis)
    k = min(K, *cells.shape)
    codes = np.zeros((len(cells), K))
    if not np.any(cells > 0):
        return codes
    W, H = _image_nmf(cells, k, random_state)
    norms = np.linalg.norm(H, axis=1)
    rows, cols = linear_sum_assignment(-(_unit_rows(H) @ _unit_rows(basis.astype(np.float64)).T))
    for i, j in zip(rows, cols):
        codes[:, j] = W[:, i] * norms[i]
    return codes


def _image_nmf(cells: np.ndarray, k: int, random_state: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    """(W (n, k), H (k, C)) of one image's cells. 300 iterations find an image's few regions; sklearn's warning that
    they did not converge to its tolerance would come once per image, so it is silenced here."""
    import warnings

    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning
    nmf = NMF(k, init="nndsvda", max_iter=300, tol=1e-4, random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        W = nmf.fit_transform(cells)
    return W, nmf.components_


def _unit_rows(a: np.ndarray) -> np.ndarray:
    """Each row (last axis) over its L2 norm; all-zero rows stay zero."""
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
