"""`MaskFolder`: images with per-image PNG label maps and a JSON of label names (the shape Pascal-Part and
ADE20K part annotations are converted to).

Layout::

    root/labels.json            the label names, index = pixel value (see below)
    root/images/<name>.<ext>    the images (any format PIL reads; sub-folders allowed)
    root/masks/<name>.png       one label map per image, same relative name with .png, same size as the image

``labels.json`` is a list of names (``["background", "car/wheel", "car/body"]``) or an object with ``"labels"``
(that list, or ``{"0": "background", ...}``), optional ``"ignore"`` (pixel values that are no label, e.g.
``[255]``) and optional ``"image_labels"`` (``{"<name>.<ext>": ["car", "car"]}``: the objects each image shows).
A name that is empty, null or "background" is no part; part names are "object/part".
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from ..images import ImageInputError, read_label_map
from .coco import AnnotationError, load_json
from .items import IMAGE_SUFFIXES, Item, fail, file_state, read_image

NOT_A_PART = ("", "background")


class MaskFolder:
    """A folder of images, their PNG label maps and a JSON of label names (see the module's layout).

    Parameters
    ----------
    root : the folder holding ``labels.json``, ``images/`` and ``masks/``.
    labels, images, masks : their names inside ``root``, when they differ.

    Items: ``id`` is the image's path relative to ``images/``; ``parts`` "object/part" -> bool (h, w) mask (the
    pixels of every label with that name); ``labels`` the image's entry in "image_labels", else the objects its
    parts belong to (in label order). ``part_vocabulary``: the part names of ``labels.json`` in index order. A
    label map that is missing, unreadable, of another size than its image, or holds a value ``labels.json`` does
    not name makes that item failed, with the reason (a failed row of the bank).
    """

    def __init__(self, root, labels: str = "labels.json", images: str = "images", masks: str = "masks"):
        self.root = Path(root)
        self.labels_path = self.root / labels
        self.images_dir, self.masks_dir = self.root / images, self.root / masks
        self._names = (labels, images, masks)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"No image folder '{self.images_dir}': a mask folder holds {images}/, {masks}/ "
                                    f"and {labels}.")
        data = load_json(self.labels_path, "Label names file")
        where = f"'{self.labels_path}'"
        if isinstance(data, list):
            data = {"labels": data}
        if not isinstance(data, dict) or "labels" not in data:
            raise AnnotationError(f"{where} must be a list of label names (index = pixel value) or an object with "
                                  "a 'labels' list.")
        names = data["labels"]
        if isinstance(names, dict):
            try:
                table = {int(k): v for k, v in names.items()}
            except ValueError:
                raise AnnotationError(f"{where}: the keys of 'labels' are pixel values (integers); got "
                                      f"{sorted(names)[:5]}.") from None
            names = [table.get(v) for v in range(max(table, default=-1) + 1)]
        if not isinstance(names, list):
            raise AnnotationError(f"{where}: 'labels' must be a list or an object of names.")
        for v, name in enumerate(names):
            if name is not None and not isinstance(name, str):
                raise AnnotationError(f"{where}: label {v} is {name!r}; a label name is a string (or null).")
        self.label_names: List[Any] = names
        self.ignore = {int(v) for v in data.get("ignore", [])}
        self.image_labels: Dict[str, List[str]] = dict(data.get("image_labels") or {})
        self.part_vocabulary: List[str] = list(dict.fromkeys(
            n for n in names if n is not None and n.strip().lower() not in NOT_A_PART))
        self.files = sorted(p for p in self.images_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"No image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under '{self.images_dir}'.")

    @classmethod
    def from_description(cls, d: Dict[str, Any], root=None) -> "MaskFolder":
        """The dataset a bank recorded (``describe()``), looked for in ``root`` when given."""
        return cls(root if root is not None else d["root"], *d.get("names", ("labels.json", "images", "masks")))

    def __repr__(self) -> str:
        return f"MaskFolder('{self.root}', images={len(self)}, parts={len(self.part_vocabulary)})"

    def __len__(self) -> int:
        return len(self.files)

    def id_of(self, i: int) -> str:
        """The id of item ``i`` (its path under images/) without reading it."""
        return self.files[i].relative_to(self.images_dir).as_posix()

    def mask_path(self, i: int) -> Path:
        """Where the label map of item ``i`` is."""
        return (self.masks_dir / self.files[i].relative_to(self.images_dir)).with_suffix(".png")

    def describe(self) -> Dict[str, Any]:
        return {"kind": "masks", "root": str(self.root.resolve()), "names": list(self._names)}

    def fingerprint(self, i: int) -> str:
        return f"{self.id_of(i)}\t{file_state(self.files[i])}\t{file_state(self.mask_path(i))}"

    def __getitem__(self, i: int) -> Item:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} images")
        i = i % len(self)
        item = read_image(Item(i, self.id_of(i)), self.files[i])
        if item.error is not None:
            return item
        path = self.mask_path(i)
        try:
            lab = read_label_map(path)
        except ImageInputError as err:
            return fail(item, f"the label map of '{item.id}': {err}")
        W, H = item.image.size
        if lab.shape != (H, W):
            return fail(item, f"the label map '{path}' is {lab.shape[1]}x{lab.shape[0]} pixels but its image "
                              f"'{item.id}' is {W}x{H}")
        values = [int(v) for v in np.unique(lab)]
        unknown = [v for v in values if v not in self.ignore and (v >= len(self.label_names) or v < 0)]
        if unknown:
            return fail(item, f"the label map '{path}' holds the value(s) {unknown[:5]}, which "
                              f"'{self.labels_path.name}' does not name (labels 0..{len(self.label_names) - 1}; "
                              "add them, or list them under \"ignore\")")
        classes = []
        for v in values:
            name = None if v in self.ignore else self.label_names[v]
            if name is None or name.strip().lower() in NOT_A_PART:
                continue
            mask = lab == v
            item.parts[name] = item.parts[name] | mask if name in item.parts else mask
            classes.append(name.split("/", 1)[0] if "/" in name else None)
        own = self.image_labels.get(item.id)
        item.labels = [str(x) for x in own] if own is not None else list(dict.fromkeys(c for c in classes if c))
        return item
