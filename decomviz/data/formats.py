"""The part-dataset formats decomviz reads, by the "kind" their `describe()` records: how a bank's views open the
dataset a bank was extracted from again (for its images and ground-truth parts)."""
from __future__ import annotations

from typing import Any, Dict

from .coco import COCOParts
from .maskfolder import MaskFolder

#: Dataset classes by the "kind" of their description; each has ``from_description(d, root=None)``.
READERS = {"coco": COCOParts, "masks": MaskFolder}


def reopen(description: Dict[str, Any], root=None):
    """The dataset that ``description`` (a ``describe()`` a bank recorded) names, its files looked for in
    ``root`` when given (a dataset moved to another folder)."""
    kind = description.get("kind")
    if kind not in READERS:
        raise ValueError(f"A dataset of kind {kind!r} cannot be opened from its description; the kinds that can "
                         f"are {', '.join(READERS)}.")
    return READERS[kind].from_description(description, root)
