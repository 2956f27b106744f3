"""Datasets: PartsWorld, synthetic scenes with object and part masks."""
from .partsworld import (CLASSES, PALETTE, PARTS, PartsWorld, Scene, SceneObject, ScenePart, object_phrase,
                         parse_caption, partsworld_collate)

__all__ = ["CLASSES", "PALETTE", "PARTS", "PartsWorld", "Scene", "SceneObject", "ScenePart", "object_phrase",
           "parse_caption", "partsworld_collate"]
