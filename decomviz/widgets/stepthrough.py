"""StepThrough: DecomCAM as a sequence of steps a teacher clicks through, each drawn from one Explanation."""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Callable, Dict, List, Union

import ipywidgets as widgets
import plotly.graph_objects as go

from ..explanation import Explanation
from ..viz import steps as F
from ..viz.caveats import explain_caveats
from .figure_widget import FigureWidget


def split_sentence(decomposition: str, K: int) -> str:
    """One sentence on how X was split, for each decomposition DecomCAM offers."""
    if decomposition == "nmf":
        return (f"A non-negative matrix factorization splits the positive part of X into {K} components that can "
                "only add up, never cancel (parts-like, not orthogonal), ordered by their size σ_k = ‖W_k‖‖H_k‖; "
                "the line shows each one's share of X, added up.")
    if decomposition == "svd":
        return (f"A truncated SVD splits X into {K} orthogonal components, ordered by singular value σ_k; the "
                "line shows how much of X the first k of them explain.")
    return (f"Your decomposition function {decomposition} split X into {K} component maps, ordered as it "
            "returned them; σ_k is the size of map k.")


@dataclass
class Step:
    """One step: a short key, a title, the one sentence that says what it does, and its figure builder."""

    key: str
    title: str
    sentence: str
    build: Callable[[], go.Figure]


class StepThrough(widgets.VBox):
    """Walk through how DecomCAM turned one (image, prompt) pair into its saliency map.

    Previous / Next buttons and a step dropdown; every step shows one sentence and one figure, read from the
    explanation (nothing is recomputed, no model is needed). Steps: the input and its score, the channel
    weights alpha, the kept channels and their Grad-CAM map, the spectrum of X, the OSSMs, the blurred
    reference, the masked inputs, the contributions and weights, and the final map.

    Methods: `next()`, `previous()`, `go_to(step)` (index or key), `step` (current index), `current` (the
    Step), `figure` (the FigureWidget on show), `steps` (all of them).
    """

    def __init__(self, explanation: Explanation, image: int = 0, prompt: Union[int, str] = 0):
        if not isinstance(explanation, Explanation):
            raise TypeError(f"StepThrough needs a decomviz Explanation, got {type(explanation).__name__}.")
        if explanation.n_components == 0 or explanation.alpha is None:
            raise ValueError(f"StepThrough walks through DecomCAM; a {explanation.method} explanation lacks its "
                             "intermediate results. Explain the image with dv.DecomCAM(model).")
        self.explanation = explanation
        self.pair = explanation.select(image, prompt)
        self.image_index = int(image)
        self.prompt = self.pair.prompts[0]
        self.steps: List[Step] = self._make_steps()
        self._figures: Dict[int, go.FigureWidget] = {}
        self.step = 0

        self.previous_button = widgets.Button(description="◀ Previous", layout=widgets.Layout(width="110px"),
                                              tooltip="previous step")
        self.next_button = widgets.Button(description="Next ▶", layout=widgets.Layout(width="110px"),
                                          tooltip="next step")
        self.dropdown = widgets.Dropdown(options=[(f"{i + 1}. {s.title}", i) for i, s in enumerate(self.steps)],
                                         value=0, description="step", layout=widgets.Layout(width="360px"))
        self.counter = widgets.HTML()
        self.sentence = widgets.HTML(layout=widgets.Layout(width="100%", max_width="960px"))
        self.view = widgets.Box(layout=widgets.Layout(min_height="300px"))
        caveats = explain_caveats(self.pair)  # maps that cannot mean anything say so above the steps
        warn = "".join(f"<br><span style='color:#8a1c1c;font-weight:600'>⚠ {html.escape(c)}</span>" for c in caveats)
        header = widgets.HTML(f"<b>DecomCAM, step by step</b> · image {self.image_index} · "
                              f"“{html.escape(self.prompt)}”{warn}")

        self.previous_button.on_click(lambda _: self.previous())
        self.next_button.on_click(lambda _: self.next())
        self.dropdown.observe(lambda change: self.go_to(change["new"]), names="value")

        super().__init__([header, widgets.HBox([self.previous_button, self.dropdown, self.next_button,
                                                self.counter], layout=widgets.Layout(align_items="center")),
                          self.sentence, self.view])
        self.add_class("decomviz-stepthrough")
        self.go_to(0)

    # ------------------------------------------------------------------ navigation
    @property
    def current(self) -> Step:
        return self.steps[self.step]

    @property
    def figure(self) -> go.FigureWidget:
        return self._figure(self.step)

    def next(self) -> int:
        """Go to the next step (stays on the last); returns the step index."""
        return self.go_to(min(self.step + 1, len(self.steps) - 1))

    def previous(self) -> int:
        """Go to the previous step (stays on the first); returns the step index."""
        return self.go_to(max(self.step - 1, 0))

    def go_to(self, step: Union[int, str]) -> int:
        """Show a step, given by index or key (see ``[s.key for s in steps]``)."""
        if isinstance(step, str):
            keys = [s.key for s in self.steps]
            if step not in keys:
                raise KeyError(f"No step {step!r}; steps are {', '.join(keys)}.")
            step = keys.index(step)
        step = int(step)
        if not 0 <= step < len(self.steps):
            raise IndexError(f"Step {step} is outside 0..{len(self.steps) - 1}.")
        self.step = step
        s = self.steps[step]
        if self.dropdown.value != step:
            self.dropdown.value = step  # its callback calls go_to again, which is a no-op
        self.counter.value = f"{step + 1} / {len(self.steps)}"
        self.sentence.value = (f"<div class='decomviz-sentence' style='font-size:1.05em;margin:6px 0;"
                               "white-space:normal;word-break:normal;overflow-wrap:normal;hyphens:manual'>"
                               f"<b>{html.escape(s.title)}.</b> {html.escape(s.sentence)}</div>")
        self.previous_button.disabled = step == 0
        self.next_button.disabled = step == len(self.steps) - 1
        fig = self._figure(step)
        if tuple(self.view.children) != (fig,):
            self.view.children = (fig,)
        return step

    def _figure(self, i: int) -> go.FigureWidget:
        if i not in self._figures:
            self._figures[i] = FigureWidget(self.steps[i].build())
        return self._figures[i]

    # ------------------------------------------------------------------ the steps
    def _make_steps(self) -> List[Step]:
        e = self.pair
        p = e.params
        K = e.n_components
        C = e.alpha.shape[-1]
        P = e.channels.shape[-1] if e.channels is not None else C
        grid = p.get("grid") or list(e.gradcam_lowres.shape[-2:])
        layer = p.get("layer", "the tapped layer")
        kind = p.get("score", "cosine")
        base = float(e.base_score.reshape(-1)[0]) if e.base_score is not None else float("nan")
        steps = [
            Step("input", "The question",
                 f"DecomCAM explains why the model gives this image a {kind} score of {base:.4f} for the prompt "
                 f"“{self.prompt}”.",
                 lambda: F.input_figure(e)),
            Step("alpha", "Gradients give channel weights",
                 f"Back-propagating the score to {layer} gives each of its {C} channels a weight α_c, the mean of "
                 f"its gradient over the {grid[0]}×{grid[1]} grid; the {P} channels with the largest α are kept "
                 "(red).",
                 lambda: F.alpha_figure(e)),
            Step("channels", "The kept channels",
                 f"Each kept channel's activation map, multiplied by its α, becomes one column of a matrix X with "
                 f"one row per grid cell ({grid[0] * grid[1]} × {P}); adding up the columns gives this Grad-CAM "
                 "map.",
                 lambda: F.kept_channels_figure(e)),
            Step("svd", "Decompose X", split_sentence(p.get("decomposition", "svd"), K),
                 lambda: F.svd_figure(e)),
            Step("ossms", "Orthogonal sub-saliency maps" if p.get("decomposition", "svd") == "svd"
                 else "Sub-saliency maps",
                 "Each component's spatial part, ReLU(u_k σ_k) on the grid (top), upsampled to the image "
                 "(bottom), is one sub-saliency map: a region the gradient-weighted channels agree on.",
                 lambda: F.ossm_grid_figure(e)),
        ]
        if e.reference_images is not None and e.reference_score is not None:
            sigma = p.get("blur_sigma", 10)
            steps += [
                Step("reference", "A blurred reference",
                     f"To measure what each region is worth, DecomCAM blurs the image (Gaussian, σ = {sigma} px at "
                     "224 px), which removes the detail the model relies on, and scores that reference.",
                     lambda: F.reference_figure(e)),
                Step("masked", "Masked inputs",
                     "Each OSSM, scaled to [0, 1], becomes a mask M_k that keeps the image where the component is "
                     "and the blurred reference elsewhere: x_k = M_k·x + (1 − M_k)·r.",
                     lambda: F.masked_inputs_figure(e)),
                Step("contributions", "Contributions and weights",
                     "The contribution d_k = s(x_k, t) − s(r, t) is how much component k alone restores the score; "
                     "the weight w_k = max(d_k, 0) / max_j d_j.",
                     lambda: F.contributions_figure(e)),
            ]
        steps.append(Step("final", "The final map",
                          "The saliency is the weighted sum of the OSSMs, Σ w_k·OSSM_k, clipped at zero and scaled to "
                          "[0, 1]; components that restore nothing drop out.",
                          lambda: F.final_figure(e)))
        return steps
