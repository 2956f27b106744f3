"""PartsWorld: synthetic scenes of simple objects made of named, coloured parts, with exact masks.

Every scene is drawn with numpy and PIL from ``np.random.default_rng([seed, index])`` alone, so
``world[i]`` is the same scene whatever order or process asks for it (DataLoader workers included).

Ground truth per scene: one boolean mask per object and per *visible* part (a later part drawn over
an earlier part of the same object takes those pixels), the class of each object, the colour name of
each part, and a caption such as ``"a house with a red roof and a blue door next to a car with black
wheels"`` that :func:`parse_caption` turns back into ``[("house", {"roof": "red", "door": "blue"}),
("car", {"wheels": "black"})]``.

Objects never overlap each other and distractor blobs (shapes that belong to no object and to no
mask) never overlap objects, so an object's mask is exactly the pixels drawn for it. Parts are drawn
flat in their palette colour, without anti-aliasing: every pixel of a part mask has exactly the RGB of
``world.colors[part.color]``.

A scene can be rendered again with one change, its ground truth following (interventions):
``scene.without_part(i)``, ``scene.without_object(j)`` and ``scene.with_part_color(i, "red")``.

>>> world = PartsWorld(100, seed=0)
>>> scene = world[1]
>>> scene.image.size, scene.caption, [p.name for p in scene.parts]
((224, 224), 'a fish with a white fin and a brown eye', ['tail', 'fin', 'body', 'eye'])
>>> scene.without_part(3).caption, scene.with_part_color(1, "red").caption
('a fish with a white fin', 'a fish with a red fin and a brown eye')

Modules: :mod:`.palette` (colour names and RGB), :mod:`.shapes` (shape primitives and the per-class
part builders), :mod:`.captions` (phrases and their parser), :mod:`.background` (background textures),
:mod:`.drawing` (what a scene draws, rasterized; interventions as edits of it), :mod:`.scene` (the
scene and its ground truth), :mod:`.world` (:class:`PartsWorld`, which lays scenes out).
"""
from .captions import PLURAL_PARTS, article, object_phrase, parse_caption
from .palette import PALETTE
from .scene import Scene, SceneObject, ScenePart, partsworld_collate
from .shapes import CLASSES, PARTS
from .world import PartsWorld

__all__ = ["CLASSES", "PALETTE", "PARTS", "PLURAL_PARTS", "PartsWorld", "Scene", "SceneObject", "ScenePart",
           "article", "object_phrase", "parse_caption", "partsworld_collate"]
