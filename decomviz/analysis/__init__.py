"""Dataset-scale analysis: extract OSSMs to an on-disk bank (locally or with Ray), read it lazily, cluster it."""
from .bank import OSSMBank
from .datasets import CSVItems, ImageFolderItems, Item, PartsWorldItems
from .extractor import Extractor, explain_batch
from .extraction import extract
from .schema import bank_schema
from .clusters import ComponentClusters, PartReport, dominant_parts
from .concepts import ConceptBasis
from .attach import attach_parts

__all__ = ["OSSMBank", "extract", "Extractor", "bank_schema", "explain_batch", "Item", "PartsWorldItems",
           "ImageFolderItems", "CSVItems", "ComponentClusters", "PartReport", "dominant_parts", "ConceptBasis",
           "attach_parts"]
