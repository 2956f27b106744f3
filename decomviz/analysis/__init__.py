"""Dataset-scale analysis: extract OSSMs to an on-disk bank and read it back."""
from .bank import OSSMBank
from .datasets import CSVItems, ImageFolderItems, Item, PartsWorldItems
from .extraction import explain_batch, extract
from .clusters import ComponentClusters, PartReport, dominant_parts

__all__ = ["OSSMBank", "extract", "explain_batch", "Item", "PartsWorldItems", "ImageFolderItems", "CSVItems",
           "ComponentClusters", "PartReport", "dominant_parts"]
