"""ipywidgets views over Explanations and banks. Each keeps its logic in plain methods that callbacks call and
tests can call without a browser.

- `Explorer(model)`: pick an image, type prompts, choose a method and its knobs, run (in the background).
- `ComponentScrubber(explanation, model=None)`: choose which OSSMs make up the map; measure what they restore.
- `StepThrough(explanation)`: DecomCAM step by step, for teaching.
- `ClusterGallery`, `PartInspector` (in `decomviz.widgets.clusters`): dataset-scale views of a bank.
- `ConceptGallery(basis, images)` (in `decomviz.widgets.concepts`): concepts shared across a dataset.
"""
from .explorer import Explorer
from .scrubber import ComponentScrubber
from .stepthrough import StepThrough

__all__ = ["Explorer", "ComponentScrubber", "StepThrough", "ClusterGallery", "PartInspector", "ConceptGallery"]


def __getattr__(name):  # the bank views load on first use (they pull in the analysis package)
    if name in ("ClusterGallery", "PartInspector"):
        from . import clusters
        return getattr(clusters, name)
    if name == "ConceptGallery":
        from .concepts import ConceptGallery
        return ConceptGallery
    raise AttributeError(f"module 'decomviz.widgets' has no attribute {name!r}")
