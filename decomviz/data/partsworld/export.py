"""PartsWorld scenes written in the formats researchers' part datasets come in, so that the loaders of
`decomviz.datasets` read them back exactly: COCO (``annotations.json`` + ``images/``, masks as compressed RLE,
exact pixel for pixel) and a mask folder (``labels.json`` + ``images/`` + ``masks/``, PNG label maps).

Part names are "class/part" in both, as PartsWorld items carry them; images are PNG (lossless), named by scene
index (``00012.png``), so that item ``i`` of the dataset read back is scene ``i``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

FORMATS = ("coco", "masks")


def vocabulary(world) -> List[str]:
    """Every "class/part" name of the world's classes, in the order PartsWorld items use."""
    return [f"{c}/{p}" for c in world.classes for p in world.parts[c]]


def _file(i: int) -> str:
    return f"{i:05d}.png"


def _scene_parts(scene) -> Dict[str, np.ndarray]:
    """The scene's parts by "class/part" (the union over its objects of a class), as PartsWorld items have them."""
    out: Dict[str, np.ndarray] = {}
    for p in scene.parts:
        key = f"{scene.objects[p.object].label}/{p.name}"
        out[key] = out[key] | p.mask if key in out else p.mask
    return out


def export_world(world, path, format: str = "coco", indices: Optional[Sequence[int]] = None) -> Path:
    """Write scenes of ``world`` (all, or ``indices``) to the folder ``path`` in ``format``; return ``path``.

    format="coco": ``path/annotations.json`` and ``path/images/``, read back by
    ``COCOParts(path / "annotations.json", path / "images")``. format="masks": ``path/labels.json``,
    ``path/images/`` and ``path/masks/``, read back by ``MaskFolder(path)`` (a label map cannot hold a part
    hidden by others, one with no pixel; the COCO file keeps those as empty masks).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}.")
    path = Path(path)
    images = path / "images"
    images.mkdir(parents=True, exist_ok=True)
    indices = range(len(world)) if indices is None else [int(i) for i in indices]
    vocab = vocabulary(world)
    if format == "coco":
        _write_coco(world, path, indices, vocab)
    else:
        _write_masks(world, path, indices, vocab)
    return path


def _write_coco(world, path: Path, indices, vocab: List[str]) -> None:
    from pycocotools import mask as mask_utils

    from ..coco import encode_mask
    class_id = {c: k + 1 for k, c in enumerate(world.classes)}
    part_id = {name: len(class_id) + k + 1 for k, name in enumerate(vocab)}
    categories = [{"id": class_id[c], "name": c, "supercategory": "object"} for c in world.classes]
    categories += [{"id": part_id[n], "name": n, "supercategory": n.split("/")[0]} for n in vocab]
    images: List[Dict[str, Any]] = []
    annotations: List[Dict[str, Any]] = []

    def annotate(i: int, category: int, mask: np.ndarray, **extra) -> int:
        rle = encode_mask(mask)
        bbox = mask_utils.toBbox({"size": rle["size"], "counts": rle["counts"].encode("ascii")})
        annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": category, "segmentation": rle,
                            "area": int(mask.sum()), "bbox": [float(v) for v in bbox], "iscrowd": 0, **extra})
        return len(annotations)

    for i in indices:
        scene = world[i]
        scene.image.save(path / "images" / _file(i))
        images.append({"id": i, "file_name": _file(i), "width": scene.image.width, "height": scene.image.height})
        objects = [annotate(i, class_id[o.label], o.mask) for o in scene.objects]
        for p in scene.parts:
            label = scene.objects[p.object].label
            annotate(i, part_id[f"{label}/{p.name}"], p.mask, object_annotation_id=objects[p.object])
    info = {"description": f"{world!r}, exported by decomviz", "partsworld": _record(world)}
    data = {"info": info, "images": images, "annotations": annotations, "categories": categories}
    (path / "annotations.json").write_text(json.dumps(data))


def _write_masks(world, path: Path, indices, vocab: List[str]) -> None:
    (path / "masks").mkdir(parents=True, exist_ok=True)
    value = {name: k + 1 for k, name in enumerate(vocab)}
    dtype = np.uint8 if len(vocab) < 256 else np.uint16
    image_labels = {}
    for i in indices:
        scene = world[i]
        scene.image.save(path / "images" / _file(i))
        lab = np.zeros((scene.image.height, scene.image.width), dtype)
        for key, mask in _scene_parts(scene).items():
            lab[mask] = value[key]
        Image.fromarray(lab).save(path / "masks" / _file(i))
        image_labels[_file(i)] = [o.label for o in scene.objects]
    data = {"labels": ["background"] + vocab, "image_labels": image_labels, "partsworld": _record(world)}
    (path / "labels.json").write_text(json.dumps(data, indent=1))


def _record(world) -> Dict[str, Any]:
    return {"n": len(world), "seed": world.seed, "size": world.size, "n_objects": list(world.n_objects),
            "classes": list(world.classes)}
