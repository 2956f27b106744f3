"""The Explorer's line of prompt words, each shaded by its share of the score (`dv.token_attribution`)."""
from __future__ import annotations

import html
from typing import Any, Optional, Sequence

import ipywidgets as widgets

from ..methods.tokens import TokenAttribution, token_attribution
from ..viz.static_report import prompt_shading

#: Points of the integrated-gradients path in the Explorer: the text towers decomviz bundles take a few ms each;
#: 16 keep the shares' sum within a few per cent of the score's change (tests/test_token_attribution.py).
EXPLORER_STEPS = 16


class PromptWords:
    """Computes and shows which words of each prompt drive its score, for one run of the Explorer.

    ``toggle`` (a Checkbox) turns it off; ``compute`` runs in the run's worker thread and returns what ``html``
    shows. A text tower decomviz cannot read (no token embedding) gives a note instead of shading.
    """

    def __init__(self, model, steps: int = EXPLORER_STEPS):
        self.model = model
        self.steps = steps
        self.toggle = widgets.Checkbox(value=True, indent=False, description="shade the prompt's words",
                                       tooltip="each word's share of the score, by integrated gradients over the "
                                               "prompt's token embeddings (red raises it, blue lowers it)")

    def compute(self, image: Any, prompts: Sequence[str]) -> Optional[Any]:
        """A TokenAttribution of one image against the prompts, the reason as a str where none can be made, or
        None when the toggle is off."""
        if not self.toggle.value:
            return None
        try:
            return token_attribution(self.model, image, list(prompts), steps=self.steps)
        except ValueError as err:  # a text tower without a token embedding decomviz knows
            return f"No word shares: {err}"
        except Exception as err:  # the shading is an extra: it never costs the run its maps
            return f"No word shares: {type(err).__name__}: {err}"

    @staticmethod
    def html(result: Optional[Any], prompt: int) -> str:
        """The shaded prompt of one prompt of the run (its score's change from the word-less prompt in the
        caption), the note where shares could not be made, '' when off."""
        if result is None:
            return ""
        if isinstance(result, str):
            return f"<p style='color:#666;font-size:13px'>{html.escape(result)}</p>"
        att: TokenAttribution = result
        pairs = att.pairs(0, prompt)
        change = float(att.score[0, prompt] - att.baseline_score[0, prompt])
        caption = (f"each word's share of the score ({change:+.4f} from the same prompt with its words' embeddings "
                   f"zeroed; red raises it, blue lowers it)")
        return prompt_shading([w for w, _ in pairs], [v for _, v in pairs], caption=caption)
