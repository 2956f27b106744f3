"""Datasets for part-discovery studies (`dv.datasets`): what an item is, and loaders for the formats
researchers' part annotations come in.

- `Item`: one image: ``index``, ``id``, ``image`` (or the ``error`` that stopped it), ``labels``, ``parts``
  ("object/part" -> bool mask in the image's own geometry), optional ``prompts``;
- `Dataset`: the protocol every dataset follows: ``__len__``, ``__getitem__`` (an Item), ``describe()``, and
  ``part_vocabulary`` when its items have parts (see docs/datasets.md);
- `COCOParts(annotations_json, images_root)`: COCO-style part annotations (PartImageNet, PACO): polygons and
  RLE, several objects per image, crowd regions;
- `MaskFolder(root)`: images with PNG label maps and a JSON of label names (Pascal-Part, ADE20K parts);
- `ImageFolder(root)` and `CSVImages(path)`: images with labels and no parts (what ``dv.extract`` makes of a
  folder or CSV path).

``dv.PartsWorld(...).export(path, format="coco" | "masks")`` writes synthetic scenes in both formats.
"""
from .analysis.datasets import CSVItems as CSVImages
from .analysis.datasets import ImageFolderItems as ImageFolder
from .analysis.datasets import PartsWorldItems
from .data.coco import AnnotationError, COCOParts, decode_segmentation, encode_mask
from .data.items import Dataset, Item, read_image
from .data.maskfolder import MaskFolder

__all__ = ["Item", "Dataset", "COCOParts", "MaskFolder", "ImageFolder", "CSVImages", "PartsWorldItems",
           "AnnotationError", "read_image", "decode_segmentation", "encode_mask"]
