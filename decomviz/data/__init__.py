"""Datasets: PartsWorld, synthetic scenes with object and part masks."""
from .partsworld import (CLASSES, PALETTE, PARTS, PLURAL_PARTS, PartsWorld, Scene, SceneObject, ScenePart, article,
                         object_phrase, parse_caption, partsworld_collate)

__all__ = ["CLASSES", "PALETTE", "PARTS", "PLURAL_PARTS", "PartsWorld", "Scene", "SceneObject", "ScenePart",
           "article", "object_phrase", "parse_caption", "partsworld_collate"]
