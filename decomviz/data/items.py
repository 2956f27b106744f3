"""What a dataset is to decomviz: a sequence of `Item`s (an id, an image or the error that stopped it, labels,
part masks by "object/part" name) with `describe()`; the `Dataset` protocol that says so; and the helpers the
loaders share (reading an image without letting one bad file stop a run, checking a mask against its image).

A dataset is any object with ``__len__``, ``__getitem__(i) -> Item`` and ``describe() -> dict``. Optional:
``part_vocabulary`` (every "object/part" name its items may carry, in a fixed order: required when items have
parts), ``id_of(i)`` (an item's id without reading its image) and ``fingerprint(i)`` (what identifies the item's
files, so that a resumed extraction notices a change).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, runtime_checkable

import numpy as np

from ..images import ImageInputError, from_bytes, to_rgb

#: File name endings read as images by the folder datasets.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class Item:
    """One image of a dataset.

    Attributes
    ----------
    index : int
        Its position in the dataset (``dataset[index]``); a bank's ``image_index``.
    id : str
        What names it (a file's path relative to the dataset's root, for the file formats).
    image : PIL.Image.Image or None
        The image as given (its own size and geometry), or None when it could not be read; `error` then says why.
    labels : list of str
        The classes of the objects it shows (one per object; a class may repeat).
    prompts : list of str, optional
        Its own prompts (a CSV's), used instead of the extraction's prompts.
    parts : dict of str to numpy.ndarray
        Ground truth: "object/part" -> bool (h, w) mask in the image's own geometry (the union over the image's
        objects of that class).
    error : str, optional
        Why the item cannot be used (an unreadable image, a broken annotation); it becomes a failed row.
    """

    index: int
    id: str
    image: Any = None
    labels: List[str] = field(default_factory=list)
    prompts: Optional[List[str]] = None
    parts: Dict[str, np.ndarray] = field(default_factory=dict)
    error: Optional[str] = None


@runtime_checkable
class Dataset(Protocol):
    """What `dv.extract`, the Extractor and the bank views take as a dataset: ``len(ds)``, ``ds[i]`` (an `Item`)
    and ``ds.describe()`` (a JSON-able dict that identifies it; its "kind" tells the bank views how to open it
    again). A dataset whose items carry parts also has ``part_vocabulary``, the list of "object/part" names."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Item: ...

    def describe(self) -> Dict[str, Any]: ...


def read_image(item: Item, source) -> Item:
    """The item with its image read from ``source`` (a path, PIL image, array, encoded bytes, or a dict with
    "bytes" or "path" such as a Hugging Face Image column), or with the reason it could not be read in
    ``item.error``: one bad file never stops a run."""
    try:
        if isinstance(source, dict) and ("bytes" in source or "path" in source):
            source = source.get("bytes") or source.get("path")
        item.image = from_bytes(bytes(source), item.id) if isinstance(source, (bytes, bytearray)) else to_rgb(source)
    except ImageInputError as err:
        item.error = str(err)
    except Exception as err:  # anything else a decoder may raise (MemoryError included)
        item.error = f"'{source}' could not be read: {type(err).__name__}: {err}"
    return item


def file_state(path: Path) -> str:
    """What identifies a file's content cheaply: its size and modification time (ns), or that it is missing."""
    try:
        st = Path(path).stat()
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def fail(item: Item, problem: str) -> Item:
    """The item marked as failed with ``problem`` (added to an earlier problem, if any), its image and parts
    dropped."""
    item.error = problem if item.error is None else f"{item.error}; {problem}"
    item.image, item.parts = None, {}
    return item
