"""Datasets for extraction: each yields `Item`s (an id, an image or the error that stopped it, labels, parts)."""
from __future__ import annotations

import csv
import hashlib
import os
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..images import ImageInputError, from_bytes, to_rgb

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class Item:
    """One image of a dataset. `image` is None when it could not be read; `error` then says why."""

    index: int
    id: str
    image: Any = None
    labels: List[str] = field(default_factory=list)
    prompts: Optional[List[str]] = None  # per-image prompts (CSV), else the extraction's prompt spec applies
    parts: Dict[str, np.ndarray] = field(default_factory=dict)  # "class/part" -> bool mask (ground truth)
    error: Optional[str] = None


def _file_state(path: Path) -> str:
    """What identifies a file's content cheaply: its size and modification time (ns), or that it is missing."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def fingerprint(items, lo: int, hi: int) -> Optional[str]:
    """A digest of what items lo..hi-1 are (ids, file sizes and times, labels, prompts), or None for a dataset
    that cannot say (then only its `describe()` identifies it)."""
    fp = getattr(items, "fingerprint", None)
    if fp is None:
        return None
    h = hashlib.sha256()
    for i in range(lo, hi):
        h.update(fp(i).encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


class PartsWorldItems:
    """PartsWorld scenes as items, with every visible part's mask under "class/part"."""

    def __init__(self, world):
        self.world = world
        self.part_vocabulary = [f"{c}/{p}" for c in world.classes for p in world.parts[c]]

    def __len__(self):
        return len(self.world)

    def __getitem__(self, i: int) -> Item:
        scene = self.world[i]
        parts: Dict[str, np.ndarray] = {}
        for part in scene.parts:
            key = f"{scene.objects[part.object].label}/{part.name}"
            parts[key] = parts[key] | part.mask if key in parts else part.mask
        return Item(i, f"partsworld-{self.world.seed}-{i}", scene.image, [o.label for o in scene.objects],
                    parts=parts)

    def describe(self) -> Dict[str, Any]:
        w = self.world
        # every constructor argument: a rerun into the same folder must not resume a bank of other scenes
        return {"kind": "partsworld", "n": len(w), "seed": w.seed, "size": w.size, "n_objects": list(w.n_objects),
                "distractors": w.distractors, "classes": list(w.classes), "rotation": w.rotation,
                "scale": None if w.scale is None else list(w.scale), "flip": w.flip,
                "caption_parts": list(w.caption_parts)}

    def fingerprint(self, i: int) -> str:
        return f"partsworld-{self.world.seed}-{i}"  # scenes are a function of describe() and the index

    def id_of(self, i: int) -> str:
        """The id of item ``i`` without rendering it."""
        return f"partsworld-{self.world.seed}-{i}"


class ImageFolderItems:
    """An image folder whose sub-folder names are the classes (files in sorted order); unreadable files
    become failed items instead of stopping the run."""

    def __init__(self, root):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"Image folder not found: '{self.root}'.")
        self.files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"No image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under '{self.root}'.")
        self.part_vocabulary: List[str] = []

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i: int) -> Item:
        path = self.files[i]
        rel = path.relative_to(self.root)
        labels = [rel.parts[0]] if len(rel.parts) > 1 else []
        return _read(Item(i, str(rel), labels=labels), path)

    def describe(self) -> Dict[str, Any]:
        # the folder, not its content: what its files are is in each shard's fingerprint (see `fingerprint`)
        return {"kind": "folder", "root": str(self.root)}

    def fingerprint(self, i: int) -> str:
        path = self.files[i]
        return f"{path.relative_to(self.root)}\t{_file_state(path)}"

    def id_of(self, i: int) -> str:
        """The id of item ``i`` without reading its file."""
        return str(self.files[i].relative_to(self.root))


class CSVItems:
    """A CSV with a `path` column (relative to the CSV's folder or absolute) and optional `prompt` and
    `label` columns; several prompts for one image go in several rows or are separated by '|'."""

    def __init__(self, csv_path):
        self.csv_path = Path(csv_path)
        if not self.csv_path.is_file():
            raise FileNotFoundError(f"CSV not found: '{self.csv_path}'.")
        try:
            with open(self.csv_path, newline="", encoding="utf-8-sig") as f:
                rows = list(csv.DictReader(f))
        except UnicodeDecodeError as err:
            raise ValueError(f"'{self.csv_path}' is not UTF-8 text (byte {err.start}: {err.reason}); save the CSV as "
                             "UTF-8.") from None
        except csv.Error as err:
            raise ValueError(f"'{self.csv_path}' is not a valid CSV file ({err}).") from None
        if not rows or "path" not in rows[0]:
            raise ValueError(f"'{self.csv_path}' needs a header with a 'path' column (and optionally 'prompt', 'label').")
        grouped: Dict[str, Dict[str, List[str]]] = {}
        for n, row in enumerate(rows, start=2):
            if not row.get("path"):
                raise ValueError(f"'{self.csv_path}', line {n}: the 'path' column is empty.")
            g = grouped.setdefault(row["path"], {"prompts": [], "labels": []})
            if row.get("prompt"):
                g["prompts"] += [p.strip() for p in row["prompt"].split("|") if p.strip()]
            if row.get("label"):
                g["labels"].append(row["label"].strip())
        self.entries = list(grouped.items())
        self.part_vocabulary: List[str] = []

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, i: int) -> Item:
        path, g = self.entries[i]
        return _read(Item(i, path, labels=list(dict.fromkeys(g["labels"])), prompts=g["prompts"] or None),
                     self._full(path))

    def describe(self) -> Dict[str, Any]:
        return {"kind": "csv", "path": str(self.csv_path)}

    def _full(self, path: str) -> Path:
        return Path(path) if os.path.isabs(path) else self.csv_path.parent / path

    def id_of(self, i: int) -> str:
        """The id of item ``i`` without reading its file."""
        return self.entries[i][0]

    def fingerprint(self, i: int) -> str:
        path, g = self.entries[i]
        return "\t".join([path, _file_state(self._full(path)), "|".join(g["labels"]), "|".join(g["prompts"])])


def _read(item: Item, path) -> Item:
    """The item with its image (a path, PIL image, array or encoded bytes), or with the reason it could not be
    read: one bad file never stops a run."""
    try:
        if isinstance(path, dict) and ("bytes" in path or "path" in path):  # e.g. a Hugging Face Image column
            path = path.get("bytes") or path.get("path")
        item.image = from_bytes(bytes(path), item.id) if isinstance(path, (bytes, bytearray)) else to_rgb(path)
    except ImageInputError as err:
        item.error = str(err)
    except Exception as err:  # anything else a decoder may raise (MemoryError included)
        item.error = f"'{path}' could not be read: {type(err).__name__}: {err}"
    return item


def as_items(dataset):
    """PartsWorld, a folder path, a CSV path, or an object already yielding Items."""
    from ..data import PartsWorld
    if isinstance(dataset, PartsWorld):
        return PartsWorldItems(dataset)
    if isinstance(dataset, (str, os.PathLike)):
        path = Path(dataset)
        if path.suffix.lower() == ".csv":
            return CSVItems(path)
        return ImageFolderItems(path)
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__") and hasattr(dataset, "describe"):
        return dataset
    raise TypeError(f"Cannot extract from a {type(dataset).__name__}: pass a dv.PartsWorld, an image folder "
                    "(sub-folders = classes) or a CSV file with a 'path' column.")


def item_id(items, i: int) -> str:
    """The id of item ``i``, without reading its image where the dataset can say (``id_of``)."""
    id_of = getattr(items, "id_of", None)
    return id_of(i) if id_of is not None else items[i].id


def check_templates(prompts) -> None:
    """Refuse prompt templates that cannot be filled: a template takes one kind of field, '{}' (each image's
    label); other braces must be doubled."""
    for p in [prompts] if isinstance(prompts, str) else list(prompts or []):
        if not isinstance(p, str):
            raise ValueError(f"Prompts must be strings, got {type(p).__name__}: {p!r}.")
        if "{}" not in p:  # a plain prompt: used as it is
            continue
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(p) if f is not None]
        except ValueError as err:
            raise ValueError(f"Prompt {p!r} is not a valid template ({err}): write a literal brace as '{{{{' or "
                             "'}}'.") from None
        named = [f for f in fields if f != ""]
        if named:
            raise ValueError(f"Prompt {p!r} has the field {{{named[0]}}}; a template takes only '{{}}', filled with "
                             "each image's label (e.g. 'a photo of a {}'). Write a literal brace as '{{' or '}}'.")


def resolve_prompts(item: Item, prompts: Optional[Sequence[str]]) -> List[str]:
    """The prompts of one item: its own (CSV), a fixed list, or a template filled with each of its labels."""
    if item.prompts:
        return list(item.prompts)
    if prompts is None:
        raise ValueError(f"Item {item.id} has no prompts of its own: pass prompts=[...] or a template such as "
                         "'a photo of a {}'.")
    if isinstance(prompts, str):
        prompts = [prompts]
    out: List[str] = []
    for p in prompts:
        if "{}" in p:
            if not item.labels:
                raise ValueError(f"Template {p!r} needs labels, but item {item.id} has none.")
            out += [p.format(label) for label in dict.fromkeys(item.labels)]
        else:
            out.append(p)
    return list(dict.fromkeys(out))
