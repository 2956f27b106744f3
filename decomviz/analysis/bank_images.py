"""The images behind a bank's rows, as the model saw them (its crop, or the whole image squashed), so that a
low-resolution OSSM can be upsampled and drawn over them; and, for banks of datasets with parts (PartsWorld, COCO,
mask folders), the ground-truth parts in the same geometry."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
from PIL import Image

from ..images import to_model_view, to_rgb
from ..data.formats import READERS, reopen
from .datasets import as_items, item_id
from ..ops import minmax_np, upsample_np


#: The largest image side a bank's record may ask for (a rendered scene, the model's input): a record is data,
#: possibly from someone else, and is bounded before anything is allocated.
MAX_SIDE = 4096


def _bounded(value, what: str, limit: int = MAX_SIDE) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        v = -1
    if not 1 <= v <= limit:
        raise ValueError(f"The bank records {what} = {value!r}, outside 1..{limit:,}: its record is damaged or was not "
                         "written by dv.extract, and is not used.")
    return v


def upsample_ossm(m: np.ndarray, size, mode: str = "bilinear") -> np.ndarray:
    """A low-resolution OSSM (h, w) upsampled to `size` (bilinear, or bicubic clamped at 0), then min-max
    normalised: (H, W) float32 in [0, 1]."""
    mode = mode if mode in ("bilinear", "bicubic") else "bilinear"
    # a copy: bank arrays are read-only views, which torch warns about
    return minmax_np(np.clip(upsample_np(np.array(m, dtype=np.float32), size, mode), 0, None))


class BankImages:
    """The images behind a bank's rows, as the model saw them (`bank.protocol["image_size"]`, cropped or squashed
    as `bank.protocol["resize_mode"]` says).

    PartsWorld banks are re-rendered from `bank.dataset` (scenes are deterministic); COCO and mask-folder banks
    open the dataset the bank recorded again; folder and CSV banks read `root / image_id`. `root` overrides where
    images are looked for (e.g. a bank moved to another machine: the images folder of a COCO dataset, the root
    of a mask folder). `dataset` gives the dataset itself, for a bank of one its record cannot open again (a
    user's own dataset class); the bank's image ids are looked up among its items. `parts(i)` gives the
    ground-truth part masks ("class/part" -> bool mask) of banks with a part vocabulary.

    A bank is data, possibly someone else's: an image id of a folder or CSV bank must lie inside the recorded root
    (the folder; the CSV's folder), else it is refused (give ``root=`` a folder that holds them, if the bank is
    trusted); sizes in its record are bounded (`MAX_SIDE`) before anything is allocated.
    """

    def __init__(self, bank, root=None, cache: int = 64, dataset=None):
        self.bank = bank
        self.dataset = dict(bank.dataset)
        self.kind = self.dataset.get("kind")
        size = (bank.protocol or {}).get("image_size")
        if size and (not isinstance(size, (list, tuple)) or len(size) != 2):
            raise ValueError(f"The bank records image_size = {size!r}, not [height, width]; its record is damaged.")
        self.size: Optional[Tuple[int, int]] = tuple(_bounded(s, "image_size") for s in size) if size else None
        self.resample = (bank.protocol or {}).get("upsample", "bilinear")
        self.mode = "squash" if (bank.protocol or {}).get("resize_mode") == "squash" else "crop"
        self.offsets = "floor" if (bank.protocol or {}).get("crop_offsets") == "floor" else "round"
        self._root_given = root
        self._items = None
        if dataset is not None:  # the dataset itself (a user's own class, which no record can open again)
            self._items = as_items(dataset)
            self._where = {item_id(self._items, j): j for j in range(len(self._items))}
        if root is not None:
            self.root = Path(root)
        elif self.kind == "folder":  # absolute as recorded (a bank opened from another directory), else as typed
            self.root = Path(self.dataset.get("root_absolute") or self.dataset["root"])
        elif self.kind == "csv":
            self.root = Path(self.dataset.get("path_absolute") or self.dataset["path"]).parent
        else:
            self.root = None
        self._world = None
        self._cache: "OrderedDict[int, Any]" = OrderedDict()
        self._cache_size = cache
        df = bank.to_pandas(["image_index", "image_id", "labels"])
        first = df.drop_duplicates("image_index")
        self.ids: Dict[int, str] = dict(zip(first["image_index"].astype(int), first["image_id"]))
        self.labels: Dict[int, str] = dict(zip(first["image_index"].astype(int), first["labels"]))

    @property
    def has_parts(self) -> bool:
        known = self.kind in ("partsworld",) + tuple(READERS) or self._items is not None
        return known and bool(self.bank.part_vocabulary)

    @property
    def items(self):
        """The dataset the bank was extracted from, opened again (COCO and mask-folder banks)."""
        if self._items is None:
            if self.kind not in READERS:
                raise ValueError(f"A bank of a {self.kind!r} dataset cannot open it again; only "
                                 f"{', '.join(READERS)} banks can.")
            self._items = reopen(self.dataset, self._root_given)
            self._where = {item_id(self._items, j): j for j in range(len(self._items))}
        return self._items

    @property
    def world(self):
        if self._world is None:
            if self.kind != "partsworld":
                raise ValueError("Only PartsWorld banks can re-render their scenes.")
            from ..data import PartsWorld
            d = self.dataset
            # banks made before every argument was recorded fall back to PartsWorld's defaults
            extra = {k: d[k] for k in ("distractors", "classes", "rotation", "flip") if k in d}
            for k in ("scale", "caption_parts"):
                if d.get(k) is not None:
                    extra[k] = tuple(d[k])
            self._world = PartsWorld(_bounded(d["n"], "n", 10 ** 9), seed=int(d["seed"]),
                                     size=_bounded(d["size"], "size"), n_objects=tuple(d["n_objects"]), **extra)
        return self._world

    def _load(self, i: int):
        i = int(i)
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        if self.kind == "partsworld":
            scene = self.world[i]
            labels = "|".join(o.label for o in scene.objects)
            if i in self.labels and self.labels[i] != labels:
                raise ValueError(f"Scene {i} re-rendered from the bank's record ({self.dataset}) shows "
                                 f"{labels.replace('|', ', ')}, but the bank has {self.labels[i].replace('|', ', ')}:"
                                 " the bank was made with PartsWorld options its record does not hold.")
            image, parts, caption = scene.image, OrderedDict(), scene.caption
            for p in scene.parts:
                key = f"{scene.objects[p.object].label}/{p.name}"
                parts[key] = parts[key] | p.mask if key in parts else p.mask
        elif self.kind in READERS or self._items is not None:
            items = self.items  # the bank's image ids are looked up (a bank given its parts by attach_parts may
            ident = self.ids.get(i)  # number its images in another order than the dataset)
            if ident is not None and ident not in self._where:
                raise ValueError(f"The bank's image {i} ('{ident}') is not in the dataset {self.dataset}: the dataset"
                                 " changed since the bank was made, or moved (give root=...).")
            item = items[self._where[ident] if ident is not None else i]
            if item.error is not None:
                raise ValueError(f"Image {i} ('{item.id}') cannot be shown: {item.error}")
            image, parts, caption = item.image, OrderedDict(item.parts), item.id
        else:
            if i not in self.ids:
                raise KeyError(f"Image {i} is not in this bank.")
            image, parts, caption = to_rgb(self._inside_root(self.ids[i])), None, self.ids[i]
        out = (self._crop(image), None if parts is None else
               OrderedDict((k, self._crop_mask(m)) for k, m in parts.items()), caption)
        self._cache[i] = out
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return out

    def _inside_root(self, ident: str) -> Path:
        """The file of an image id: inside the root, after resolving '..' and links; refused otherwise."""
        if self.root is None:
            raise ValueError(f"This bank records no folder for its images (dataset {self.dataset}); give root=...")
        root = self.root.resolve()
        path = (root / ident).resolve()
        if path != root and root not in path.parents:
            raise ValueError(f"The bank names the image '{ident}', which lies outside its folder '{root}'; it is "
                             "not opened (a bank is data and never a key to other files). If you trust this bank, "
                             "give root= a folder that holds its images.")
        return path

    def _crop(self, image) -> np.ndarray:
        im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
        px = np.asarray(im.convert("RGB"), np.uint8)
        if self.size is None:
            return px
        return to_model_view(px, self.size, self.mode, Image.BICUBIC, self.offsets)

    def _crop_mask(self, mask: np.ndarray) -> np.ndarray:
        """A part mask in the geometry of the image as the model saw it (area shares, so a part keeps its area)."""
        mask = np.asarray(mask, bool)
        if self.size is None or mask.shape == tuple(self.size):
            return mask
        return to_model_view(mask, self.size, self.mode, offsets=self.offsets)

    def pixels(self, i: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) of image `i` as the model saw it."""
        return self._load(i)[0]

    def parts(self, i: int) -> Optional["OrderedDict[str, np.ndarray]"]:
        """Ground-truth part masks of image `i` ("class/part" -> bool (H, W)), or None without ground truth."""
        return self._load(i)[1]

    def caption(self, i: int) -> str:
        """The scene's caption (PartsWorld) or the image's id (its path in the folder or dataset)."""
        return self._load(i)[2]

    def overlay(self, row: int, image_index: int, ossm: np.ndarray) -> np.ndarray:
        """The OSSM of a bank row (h, w), upsampled to the image and min-max normalised, (H, W) in [0, 1]."""
        H, W = self.pixels(image_index).shape[:2]
        return upsample_ossm(ossm, (H, W), self.resample)
