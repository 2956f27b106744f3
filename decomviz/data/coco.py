"""`COCOParts`: part annotations in the COCO format, as PartImageNet and PACO publish them.

A COCO file holds ``images`` (``id``, ``file_name``, ``width``, ``height``), ``categories`` (``id``, ``name``,
optional ``supercategory``) and ``annotations`` (``image_id``, ``category_id``, ``segmentation`` as polygons or
RLE, ``iscrowd``). A category is an object part when its name says so, "object/part" or PACO's "object:part", or,
with ``object_from="supercategory"`` (PartImageNet), when it has a supercategory: "Quadruped Head" under
"Quadruped" is "Quadruped/Head". Other categories are objects: their annotations give the image's labels.
Masks are decoded with pycocotools, exactly as its ``COCO.annToMask`` rasterises them.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .items import Item, fail, file_state, read_image

CROWD = ("include", "ignore")
OBJECT_FROM = ("name", "supercategory")
#: How far (pixels) a polygon's point may lie outside its image before the polygon is refused.
POLYGON_SLACK = 1.0


class AnnotationError(ValueError):
    """An annotation file that cannot be read as a whole; the message names the file and the entry."""


def load_json(path: Path, what: str) -> Any:
    """The JSON in ``path``, or an AnnotationError that names the file and what is wrong with it."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: '{path}'.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise AnnotationError(f"'{path}' is not UTF-8 text (byte {err.start}); save it as UTF-8 JSON.") from None
    except json.JSONDecodeError as err:
        raise AnnotationError(f"'{path}' is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}."
                              ) from None


def category_part(cat: Dict[str, Any], object_from: str = "name") -> Optional[str]:
    """The "object/part" name of a COCO category, or None when it is an object category."""
    name = str(cat["name"])
    if object_from == "supercategory":
        sup = str(cat.get("supercategory") or "").strip()
        if sup and sup != name:
            short = name[len(sup):].strip(" :/_-") if name.startswith(sup) else name
            return f"{sup}/{short or name}"
    for sep in ("/", ":"):
        if sep in name:
            obj, _, part = name.partition(sep)
            return f"{obj.strip()}/{part.strip()}"
    return None


class COCOParts:
    """A COCO-style annotation file of objects and their parts, over a folder of images.

    Parameters
    ----------
    annotations_json : path of the COCO JSON file.
    images_root : folder that the images' ``file_name`` entries are relative to.
    crowd : "include" (crowd regions, ``iscrowd=1``, count as their category's pixels: a part's mask is the union
        of its instances anyway) or "ignore" (left out of the masks and labels).
    object_from : "name" (part categories are named "object/part" or "object:part") or "supercategory" (every
        category with a supercategory is a part of it, as in PartImageNet).

    Items: ``id`` is the image's ``file_name``; ``labels`` the classes of its object annotations (one per
    object), or, without object annotations, the classes its parts belong to; ``parts`` "object/part" -> bool
    (height, width) mask, the union of that category's annotations in the image. ``part_vocabulary``: every part
    category, in the file's order. A structural fault of the file (not JSON, a missing list, an annotation of an
    image that is not listed) raises an `AnnotationError` naming the file and the entry; a fault of one image's
    entries (an unknown category, a polygon outside the image, an RLE of another size, an unreadable image)
    makes that item failed, with the reason, so it becomes a failed row of the bank.
    """

    def __init__(self, annotations_json, images_root, crowd: str = "include", object_from: str = "name"):
        if crowd not in CROWD:
            raise ValueError(f"crowd must be one of {', '.join(CROWD)}; got {crowd!r}.")
        if object_from not in OBJECT_FROM:
            raise ValueError(f"object_from must be one of {', '.join(OBJECT_FROM)}; got {object_from!r}.")
        self.annotations_path = Path(annotations_json)
        self.images_root = Path(images_root)
        self.crowd, self.object_from = crowd, object_from
        if not self.images_root.is_dir():
            raise FileNotFoundError(f"Image folder not found: '{self.images_root}' (the images_root of "
                                    f"'{self.annotations_path}').")
        data = load_json(self.annotations_path, "COCO annotation file")
        where = f"'{self.annotations_path}'"
        if not isinstance(data, dict):
            raise AnnotationError(f"{where} holds a JSON {type(data).__name__}; a COCO file is an object with "
                                  "'images', 'annotations' and 'categories' lists.")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise AnnotationError(f"{where} has no '{key}' list; a COCO file has 'images', 'annotations' and "
                                      "'categories'.")
        self.categories: Dict[Any, Dict[str, Any]] = {}
        for n, cat in enumerate(data["categories"]):
            if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
                raise AnnotationError(f"{where}, categories[{n}]: a category needs an 'id' and a 'name'; got {cat!r}.")
            if cat["id"] in self.categories:
                raise AnnotationError(f"{where}, categories[{n}]: the id {cat['id']!r} is used twice.")
            self.categories[cat["id"]] = {**cat, "part": category_part(cat, object_from)}
        self.part_vocabulary: List[str] = list(dict.fromkeys(
            c["part"] for c in self.categories.values() if c["part"] is not None))
        self.images: List[Dict[str, Any]] = []
        position: Dict[Any, int] = {}
        for n, img in enumerate(data["images"]):
            if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
                raise AnnotationError(f"{where}, images[{n}]: an image needs an 'id' and a 'file_name'; got {img!r}.")
            if img["id"] in position:
                raise AnnotationError(f"{where}, images[{n}]: the image id {img['id']!r} is used twice.")
            position[img["id"]] = n
            self.images.append(img)
        self.annotations: List[List[Tuple[int, Dict[str, Any]]]] = [[] for _ in self.images]
        for n, ann in enumerate(data["annotations"]):
            if not isinstance(ann, dict) or ann.get("image_id") not in position:
                got = ann.get("image_id") if isinstance(ann, dict) else ann
                raise AnnotationError(f"{where}, annotations[{n}] (id {_id(ann)}): its image_id {got!r} is not "
                                      "one of the file's images.")
            self.annotations[position[ann["image_id"]]].append((n, ann))

    @classmethod
    def from_description(cls, d: Dict[str, Any], root=None) -> "COCOParts":
        """The dataset a bank recorded (``describe()``), its images looked for in ``root`` when given."""
        return cls(d["annotations"], root if root is not None else d["images_root"], crowd=d.get("crowd", "include"),
                   object_from=d.get("object_from", "name"))

    def __repr__(self) -> str:
        return (f"COCOParts('{self.annotations_path}', '{self.images_root}', images={len(self)}, "
                f"parts={len(self.part_vocabulary)})")

    def __len__(self) -> int:
        return len(self.images)

    def id_of(self, i: int) -> str:
        """The id of item ``i`` (its file name) without reading its image."""
        return self.images[i]["file_name"]

    def describe(self) -> Dict[str, Any]:
        return {"kind": "coco", "annotations": str(self.annotations_path.resolve()),
                "images_root": str(self.images_root.resolve()), "crowd": self.crowd, "object_from": self.object_from}

    def fingerprint(self, i: int) -> str:
        """The image file's size and time, and a digest of the image's entry and annotations."""
        img = self.images[i]
        digest = hashlib.sha256(json.dumps([img, self.annotations[i]], sort_keys=True, default=str).encode())
        return f"{img['file_name']}\t{file_state(self.images_root / img['file_name'])}\t{digest.hexdigest()[:16]}"

    def __getitem__(self, i: int) -> Item:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} images")
        i = i % len(self)
        img = self.images[i]
        item = read_image(Item(i, img["file_name"]), self.images_root / img["file_name"])
        if item.error is not None:
            return item
        W, H = item.image.size
        head = f"'{self.annotations_path.name}', image {img['id']!r} ('{img['file_name']}')"
        declared = (img.get("width"), img.get("height"))
        if None not in declared and tuple(declared) != (W, H):
            return fail(item, f"{head}: the file is {W}x{H} pixels but the annotations say "
                              f"{declared[0]}x{declared[1]}")
        problems, labels, part_classes = [], [], []
        for n, ann in self.annotations[i]:
            where = f"{head}, annotations[{n}] (id {_id(ann)})"
            cat = self.categories.get(ann.get("category_id"))
            if cat is None:
                problems.append(f"{where}: unknown category_id {ann.get('category_id')!r}")
                continue
            if ann.get("iscrowd") and self.crowd == "ignore":
                continue
            try:
                mask = decode_segmentation(ann.get("segmentation"), H, W)
            except ValueError as err:
                problems.append(f"{where}: {err}")
                continue
            key = cat["part"]
            if key is None:
                labels.append(str(cat["name"]))
            else:
                item.parts[key] = item.parts[key] | mask if key in item.parts else mask
                part_classes.append(key.split("/", 1)[0])
        if problems:
            return fail(item, "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5
                                                          else ""))
        item.labels = labels or list(dict.fromkeys(part_classes))
        return item


def decode_segmentation(seg, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (a list of polygons, or an RLE: uncompressed counts list or compressed string) as a
    bool (height, width) mask, rasterised by pycocotools; ValueError says what is wrong with it."""
    from pycocotools import mask as mask_utils
    if isinstance(seg, list):
        if not seg:
            return np.zeros((height, width), bool)
        for p, poly in enumerate(seg):
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                raise ValueError(f"polygon {p} must be a list of at least 3 x, y pairs; got "
                                 f"{len(poly) if isinstance(poly, list) else type(poly).__name__} values")
            xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
            if not np.isfinite(xy).all():
                raise ValueError(f"polygon {p} has a coordinate that is not a finite number")
            bad = ((xy[:, 0] < -POLYGON_SLACK) | (xy[:, 0] > width + POLYGON_SLACK) |
                   (xy[:, 1] < -POLYGON_SLACK) | (xy[:, 1] > height + POLYGON_SLACK))
            if bad.any():
                x, y = xy[int(np.argmax(bad))]
                raise ValueError(f"polygon {p} has the point ({x:g}, {y:g}), outside the {width}x{height} image")
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        size = list(seg["size"]) if isinstance(seg["size"], (list, tuple)) else seg["size"]
        if size != [height, width]:
            raise ValueError(f"its RLE has size {seg['size']!r} (height, width), but the image is "
                             f"{height}x{width} (height x width)")
        counts = seg["counts"]
        if isinstance(counts, list):
            if sum(int(c) for c in counts) != height * width:
                raise ValueError(f"its RLE counts add up to {sum(int(c) for c in counts)} pixels, not the image's "
                                 f"{height * width}")
            rle = mask_utils.frPyObjects(seg, height, width)
        elif isinstance(counts, (str, bytes)):
            rle = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        else:
            raise ValueError(f"its RLE counts are a {type(counts).__name__}, neither a list nor a string")
    else:
        raise ValueError("its segmentation is neither a list of polygons nor an RLE ({'size', 'counts'})")
    try:
        with warnings.catch_warnings():  # pycocotools' own use of numpy's __array__ (numpy 2), not the user's
            warnings.simplefilter("ignore", DeprecationWarning)
            mask = mask_utils.decode(rle)
    except Exception as err:  # pycocotools' own errors on a damaged compressed string
        raise ValueError(f"its RLE could not be decoded ({type(err).__name__}: {err})") from None
    return mask.astype(bool).reshape(height, width)


def encode_mask(mask: np.ndarray) -> Dict[str, Any]:
    """A bool (h, w) mask as a compressed COCO RLE ({"size": [h, w], "counts": str}), exact pixel for pixel."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _id(ann) -> str:
    return repr(ann.get("id")) if isinstance(ann, dict) else "?"
