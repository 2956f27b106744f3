"""Datasets for extraction: each yields `Item`s (an id, an image or the error that stopped it, labels, parts)."""
from __future__ import annotations

import csv
import hashlib
import os
import string
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..data.items import IMAGE_SUFFIXES, Item, file_state as _file_state, read_image as _read

__all__ = ["Item", "IMAGE_SUFFIXES", "PartsWorldItems", "ImageFolderItems", "CSVItems", "as_items", "item_id",
           "check_templates", "check_parts_named", "resolve_prompts", "template_fields", "part_pairs", "fingerprint",
           "TEMPLATE_FIELDS", "safe_text", "comparable_dataset"]


def safe_text(value) -> str:
    """Text that can be stored anywhere (Parquet, JSON, HTML): a file name or argument whose bytes are not UTF-8
    (decoded by Python with surrogate escapes) gets U+FFFD for each such byte, instead of failing when written."""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def comparable_dataset(record: Any) -> Any:
    """A dataset record as resuming compares it: a folder or CSV by its absolute path (the same folder typed
    another way, or from another directory, is the same dataset); records without one (older banks) by their
    path resolved from here."""
    if not isinstance(record, dict) or record.get("kind") not in ("folder", "csv"):
        return record
    key = "root" if record["kind"] == "folder" else "path"
    out = {k: v for k, v in record.items() if k not in (key, key + "_absolute")}
    typed = record.get(key)
    out[key + "_absolute"] = record.get(key + "_absolute") or (str(Path(typed).resolve()) if typed else None)
    return out


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
        labels = [safe_text(rel.parts[0])] if len(rel.parts) > 1 else []
        return _read(Item(i, safe_text(rel), labels=labels), path)

    def describe(self) -> Dict[str, Any]:
        # the folder, not its content: what its files are is in each shard's fingerprint (see `fingerprint`); the
        # folder as typed and as an absolute path (a bank read from another directory still finds its images)
        return {"kind": "folder", "root": safe_text(self.root), "root_absolute": safe_text(self.root.resolve())}

    def fingerprint(self, i: int) -> str:
        path = self.files[i]
        return f"{path.relative_to(self.root)}\t{_file_state(path)}"

    def id_of(self, i: int) -> str:
        """The id of item ``i`` without reading its file."""
        return safe_text(self.files[i].relative_to(self.root))


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
        return {"kind": "csv", "path": safe_text(self.csv_path), "path_absolute": safe_text(self.csv_path.resolve())}

    def _full(self, path: str) -> Path:
        return Path(path) if os.path.isabs(path) else self.csv_path.parent / path

    def id_of(self, i: int) -> str:
        """The id of item ``i`` without reading its file."""
        return self.entries[i][0]

    def fingerprint(self, i: int) -> str:
        path, g = self.entries[i]
        return "\t".join([path, _file_state(self._full(path)), "|".join(g["labels"]), "|".join(g["prompts"])])


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
                    "(sub-folders = classes), a CSV file with a 'path' column, a dv.datasets.COCOParts or "
                    "MaskFolder, or an object with __len__, __getitem__ (an Item) and describe() (see "
                    "docs/datasets.md).")


def check_parts_named(items: Sequence[Item], vocabulary: Sequence[str]) -> None:
    """Refuse items with ground-truth parts when there is no part vocabulary to store them under: that would
    give a bank silently without ground truth."""
    if vocabulary:
        return
    with_parts = next((it for it in items if it.error is None and it.parts), None)
    if with_parts is not None:
        raise ValueError(f"Item {with_parts.id} has ground-truth parts ({', '.join(list(with_parts.parts)[:3])}), "
                         "but the dataset has no part_vocabulary to store them under: give the dataset a "
                         "part_vocabulary attribute (every 'object/part' name, in a fixed order), or pass "
                         "part_vocabulary=[...] to the Extractor.")


def item_id(items, i: int) -> str:
    """The id of item ``i``, without reading its image where the dataset can say (``id_of``)."""
    id_of = getattr(items, "id_of", None)
    return id_of(i) if id_of is not None else items[i].id


#: The fields a prompt template may have: '{}' or '{class}' (each label of an image), '{part}' (each of its parts).
TEMPLATE_FIELDS = ("", "class", "part")
_FIELDS_HELP = ("a template takes '{}' or '{class}' (filled with each image's label, e.g. 'a photo of a {class}') "
                "and '{part}' (each part the image shows, e.g. 'the {part} of a {class}')")


def template_fields(prompt: str) -> List[str]:
    """The fields of a prompt template ([] for a plain prompt, used as it is); ValueError for a template that
    cannot be filled (an unknown or numbered field, an unmatched brace next to a field)."""
    if not isinstance(prompt, str):
        raise ValueError(f"Prompts must be strings, got {type(prompt).__name__}: {prompt!r}.")
    if "{" not in prompt and "}" not in prompt:
        return []
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(prompt) if f is not None]
    except ValueError as err:
        if any(m in prompt for m in ("{}", "{class}", "{part}")):
            raise ValueError(f"Prompt {prompt!r} is not a valid template ({err}): write a literal brace as '{{{{' or "
                             "'}}'.") from None
        return []  # braces that are no template: the prompt is used as it is
    for f, spec, conv in fields:
        if f not in TEMPLATE_FIELDS or spec or conv:
            shown = "{" + f + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            raise ValueError(f"Prompt {prompt!r} has the field {shown}; {_FIELDS_HELP}. Write a literal brace as "
                             "'{{' or '}}'.")
    return list(dict.fromkeys(f for f, _, _ in fields))


def check_templates(prompts) -> None:
    """Refuse prompt templates that cannot be filled (see `template_fields`), before any work."""
    for p in [prompts] if isinstance(prompts, str) else list(prompts or []):
        template_fields(p)


def part_pairs(item: Item) -> List[tuple]:
    """(class, part) of each part the item shows (a mask with a pixel), in name order (the same whatever order
    a format stores them in); "class/part" names split at the first '/', a name without one has the class ''."""
    out = []
    for key, mask in item.parts.items():
        if np.asarray(mask).any():
            cls, _, part = key.partition("/") if "/" in key else ("", "", key)
            out.append((cls, part))
    return sorted(set(out))


def resolve_prompts(item: Item, prompts: Optional[Sequence[str]]) -> List[str]:
    """The prompts of one item: its own (CSV), a fixed list, or templates filled from its labels and parts:
    '{}' / '{class}' once per label; '{part}' (with or without '{class}') once per part it shows."""
    if item.prompts:
        return list(item.prompts)
    if prompts is None:
        raise ValueError(f"Item {item.id} has no prompts of its own: pass prompts=[...] or a template such as "
                         "'a photo of a {class}'.")
    if isinstance(prompts, str):
        prompts = [prompts]
    out: List[str] = []
    for p in prompts:
        fields = template_fields(p)
        if "part" in fields:
            pairs = part_pairs(item)
            if not pairs:
                raise ValueError(f"Template {p!r} needs parts, but item {item.id} has none.")
            if set(fields) & {"", "class"} and any(not c for c, _ in pairs):
                raise ValueError(f"Template {p!r} needs the class of each part, but item {item.id} has parts named "
                                 "without one; name parts 'class/part'.")
            out += [p.format(c, **{"class": c, "part": part}) for c, part in pairs]
        elif fields:
            if not item.labels:
                raise ValueError(f"Template {p!r} needs labels, but item {item.id} has none.")
            out += [p.format(label, **{"class": label}) for label in dict.fromkeys(item.labels)]
        else:
            out.append(p)
    return list(dict.fromkeys(out))
