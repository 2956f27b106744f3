"""ipywidgets views over Explanations. Each keeps its logic in plain methods that callbacks call and tests can
call without a browser.

- `Explorer(model)`: pick an image, type prompts, choose a method and its knobs, run (in the background).
- `ComponentScrubber(explanation, model=None)`: choose which OSSMs make up the map; measure what they restore.
- `StepThrough(explanation)`: DecomCAM step by step, for teaching.
"""
from .explorer import Explorer
from .scrubber import ComponentScrubber
from .stepthrough import StepThrough

__all__ = ["Explorer", "ComponentScrubber", "StepThrough"]
