"""ComponentScrubber: pick which OSSMs of a DecomCAM explanation make up the map, and see it at once."""
from __future__ import annotations

import html
from typing import Dict, Iterable, List, Optional, Union

import ipywidgets as widgets
import numpy as np
import torch

from ..explanation import Explanation
from ..viz.caveats import explain_caveats
from ..viz.explanation_figures import scrubber_figure
from ..viz.pairs import KEPT_COLOR, OTHER_COLOR
from ._common import message_html
from .figure_widget import FigureWidget

#: the knobs of DecomCAM's second stage that decide how a mask is scored (`DecomCAM.score_masks`)
_SCORING_KNOBS = ("layer", "blur_sigma", "score", "blend", "integration", "contribution", "batch_size", "autocast")
WEIGHTINGS = {"integration weights w_k": "integration", "singular values σ_k": "singular", "uniform": "uniform"}
_ROUND = 4  # decimals of the heat map sent to the browser (keeps each redraw message small)


class ComponentScrubber(widgets.VBox):
    """Scrub the orthogonal sub-saliency maps (OSSMs) of one (image, prompt) pair of a DecomCAM explanation.

    A slider keeps the first k components, one toggle per component adds or removes it, and the heat map
    shows ``explanation.combine(selected)`` at once (no model call). With a ``model``, the "measure" button
    masks the image with the current map exactly as DecomCAM's integration did (`DecomCAM.score_masks` with
    the explanation's recorded knobs: ``M x + (1 - M) r`` or the element-wise max, r the blurred reference, or
    the activations with feature integration) and shows the score it restores next to the full image's score
    and the reference's.

    Parameters
    ----------
    explanation : a DecomCAM `Explanation` (any B, T; K >= 1).
    model : the CLIPModel that made it (optional; enables "measure").
    image, prompt : which pair to show (index, or the prompt text).
    weighting : "integration" (w_k, as in the saliency), "singular" or "uniform".

    Logic lives in plain methods that callbacks call: `set_k`, `toggle`, `set_selected`, `set_weighting`,
    `measure`. The current selection is `selected` (indices); the map shown is `combination()`.
    """

    def __init__(self, explanation: Explanation, model=None, image: int = 0, prompt: Union[int, str] = 0,
                 weighting: str = "integration", opacity: float = 0.5):
        if not isinstance(explanation, Explanation):
            raise TypeError(f"ComponentScrubber needs a decomviz Explanation, got {type(explanation).__name__}.")
        if explanation.n_components == 0:
            raise ValueError(f"A {explanation.method} explanation has no components to scrub: explain the image "
                             "with dv.DecomCAM(model) to get OSSMs.")
        if weighting not in WEIGHTINGS.values():
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS.values())}; got {weighting!r}.")
        self.explanation = explanation
        self.pair = explanation.select(image, prompt)  # B = T = 1: every redraw touches only this pair
        self.image_index = int(image)
        self.prompt_index = explanation.prompts.index(prompt) if isinstance(prompt, str) else int(prompt)
        self.prompt = explanation.prompts[self.prompt_index]
        self.model = model
        self.weighting = weighting
        self.opacity = opacity
        self.last_measure: Optional[Dict[str, float]] = None
        K = self.n_components = explanation.n_components
        self._ossms = self.pair.ossms[0, 0].double().numpy()  # (K, H, W), the only arrays a change touches
        self._weights = {name: self.pair.component_weights(name)[0, 0].double().numpy()
                         for name in WEIGHTINGS.values()}
        self._selected = np.ones(K, dtype=bool)
        self._syncing = False
        self._measured_for: Optional[tuple] = None
        self._scorer = None  # the DecomCAM that measures, made on the first measure (`scorer`)

        w = self.pair.component_weights("integration")[0, 0]
        d = self.pair.contributions[0, 0] if self.pair.contributions is not None else None
        ev = self.pair.explained_variance[0, 0] if self.pair.explained_variance is not None else None

        self.title = widgets.HTML(self._title_html())
        self.slider = widgets.IntSlider(value=K, min=0, max=K, step=1, description="first k components",
                                        continuous_update=True, readout=True,
                                        style={"description_width": "initial"},
                                        layout=widgets.Layout(width="420px"))
        self.all_button = widgets.Button(description="all", layout=widgets.Layout(width="60px"),
                                         tooltip="select every component")
        self.none_button = widgets.Button(description="none", layout=widgets.Layout(width="60px"),
                                          tooltip="clear the selection")
        self.weighting_dropdown = widgets.Dropdown(
            options=list(WEIGHTINGS.items()), value=weighting, description="weigh by",
            layout=widgets.Layout(width="270px"), style={"description_width": "initial"})
        self.toggles: List[widgets.ToggleButton] = []
        for k in range(K):
            tip = f"component {k + 1}: weight w={float(w[k]):.2f}"
            if d is not None:
                tip += f", contribution d={float(d[k]):+.4f}"
            if ev is not None:
                tip += f", {float(ev[k]):.1%} of the variance"
            self.toggles.append(widgets.ToggleButton(value=True, description=f"#{k + 1}", tooltip=tip,
                                                     layout=widgets.Layout(width="56px"),
                                                     button_style="danger"))
        self.info = widgets.HTML()
        self.figure = FigureWidget(scrubber_figure(self.pair, 0, 0, self._selected, weighting, opacity,
                                                   round_to=_ROUND))
        self._combo_trace = next(self.figure.select_traces(selector=dict(name="combination")))
        self._bars = next(self.figure.select_traces(selector=dict(name="weights")))
        self._thumbs = [next(self.figure.select_traces(selector=dict(name=f"ossm {k}"))) for k in range(K)]

        self.measure_button = widgets.Button(description="measure",
                                             layout=widgets.Layout(width="110px"))
        self.result = widgets.HTML()
        if model is None:
            self.measure_button.disabled = True
            self.measure_button.tooltip = ("No model given: create the scrubber with "
                                           "ComponentScrubber(explanation, model=model) to measure scores.")
            self.result.value = message_html("Measuring needs the model: pass model=... to enable it.", "info")
        else:
            self.measure_button.tooltip = ("Run the model on the image masked by the current map (blurred "
                                           "reference outside) and show the score it restores.")
            self.result.value = self._scores_html(None)

        # callbacks only call the methods above
        self.slider.observe(self._on_slider, names="value")
        for k, tb in enumerate(self.toggles):
            tb.observe(lambda change, k=k: self._on_toggle(k, change), names="value")
        self.all_button.on_click(lambda _: self.set_k(self.n_components))
        self.none_button.on_click(lambda _: self.set_k(0))
        self.weighting_dropdown.observe(lambda change: self.set_weighting(change["new"]), names="value")
        self.measure_button.on_click(lambda _: self._measure_clicked())

        self._update_info()
        super().__init__([
            self.title,
            widgets.HBox([self.slider, self.all_button, self.none_button, self.weighting_dropdown]),
            widgets.HBox(self.toggles, layout=widgets.Layout(flex_flow="row wrap")),
            self.info,
            self.figure,
            widgets.HBox([self.measure_button, self.result], layout=widgets.Layout(align_items="center")),
        ])
        self.add_class("decomviz-scrubber")

    # ------------------------------------------------------------------ state
    @property
    def selected(self) -> List[int]:
        """Indices of the selected components (0-based)."""
        return [int(k) for k in np.flatnonzero(self._selected)]

    @property
    def selection_mask(self) -> np.ndarray:
        return self._selected.copy()

    def combination(self) -> np.ndarray:
        """The map shown: ``explanation.combine(selected, weighting)`` of this pair, (H, W) in [0, 1].

        Computed here with plain single-threaded numpy on this pair's OSSMs (the same formula as
        `decomviz.explanation.combine_ossms`; the tests check they agree): a change must redraw in well under
        50 ms even while other work (a training run, a background Explorer run) keeps every core busy, and
        torch's intra-op thread pool slows tiny ops down by orders of magnitude under such contention.
        """
        return _combine(self._ossms, self._weights[self.weighting] * self._selected)

    # ------------------------------------------------------------------ actions
    def set_k(self, k: int) -> None:
        """Select the first k components (0 <= k <= K)."""
        k = int(k)
        if not 0 <= k <= self.n_components:
            raise ValueError(f"k must lie in 0..{self.n_components}, got {k}.")
        mask = np.arange(self.n_components) < k
        self._apply(mask, slider=k)

    def toggle(self, k: int, on: Optional[bool] = None) -> None:
        """Flip component k (0-based), or set it on/off."""
        if not 0 <= int(k) < self.n_components:
            raise IndexError(f"Component {k} does not exist; this explanation has {self.n_components} (0-based).")
        mask = self._selected.copy()
        mask[int(k)] = (not mask[int(k)]) if on is None else bool(on)
        self._apply(mask)

    def set_selected(self, components: Union[Iterable[int], Iterable[bool], None]) -> None:
        """Select exactly these components (indices, a boolean mask of length K, or None for all)."""
        self._apply(self.pair.component_mask(components).numpy())

    def set_weighting(self, weighting: str) -> None:
        if weighting not in WEIGHTINGS.values():
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS.values())}; got {weighting!r}.")
        self.weighting = weighting
        self._sync_controls(self._selected, None)
        self.redraw(weights=True)

    def _apply(self, mask: np.ndarray, slider: Optional[int] = None) -> None:
        self._selected = np.asarray(mask, dtype=bool).copy()
        if slider is None:  # keep the slider on k when the selection is exactly the first k components
            k = int(self._selected.sum())
            if self._selected[:k].all():
                slider = k
        # a selection that is not the first k components says so instead of showing a stale k
        on = [str(i + 1) for i in np.flatnonzero(self._selected)]
        self.slider.description = "first k components" if slider is not None else \
            ("custom: #" + ", #".join(on[:4]) + (" ..." if len(on) > 4 else "") if on else "none selected")
        self.slider.readout = slider is not None
        self._sync_controls(self._selected, slider)
        self.redraw()

    def _sync_controls(self, mask, slider) -> None:
        self._syncing = True
        try:
            for tb, on in zip(self.toggles, mask):
                if tb.value != bool(on):
                    tb.value = bool(on)
                style = "danger" if on else ""
                if tb.button_style != style:
                    tb.button_style = style
            if slider is not None and self.slider.value != slider:
                self.slider.value = slider
            if self.weighting_dropdown.value != self.weighting:
                self.weighting_dropdown.value = self.weighting
        finally:
            self._syncing = False

    def redraw(self, weights: bool = False) -> None:
        """Push the current selection to the figure: heat map, bar colours, thumbnail dimming."""
        combo = np.round(self.combination(), _ROUND)
        with self.figure.batch_update():
            self._combo_trace.z = combo
            self._bars.marker.color = [KEPT_COLOR if s else OTHER_COLOR for s in self._selected]
            if weights:
                self._bars.y = self._weights[self.weighting]
            for thumb, on in zip(self._thumbs, self._selected):
                op = 1.0 if on else 0.25
                if thumb.opacity != op:
                    thumb.opacity = op
        self._update_info()

    def _update_info(self) -> None:
        sel = self.selected
        K = self.n_components
        w = self._weights[self.weighting]
        total = w.sum()
        share = w[sel].sum() / total if total > 0 else 0.0
        names = ", ".join(f"#{k + 1}" for k in sel) if sel else "none"
        extra = ""
        if self.pair.explained_variance is not None:
            extra = f" · {float(self.pair.explained_variance[0, 0, sel].sum()):.0%} of the variance of X"
        self.info.value = (f"<span class='decomviz-selection'>Showing {len(sel)} of {K} components ({names}) · "
                           f"{share:.0%} of the total weight{extra}</span> · {_LEGEND}")
        if self._measured_for is not None and self._measured_for != (tuple(sel), self.weighting):
            self.result.value = self._scores_html(self.last_measure, stale=True)

    # ------------------------------------------------------------------ measuring
    def measure_score(self, mask: Optional[np.ndarray] = None) -> float:
        """s(x_M, t) for a mask M in [0, 1] (default: the current combination), x_M the image masked as the
        explanation's own integration does it: DecomCAM's `score_masks` with the recorded knobs (blend,
        integration, blur_sigma, score, contrast, layer). A mask is (H, W) at the model's input size, or on the
        layer's grid (h, w) for an explanation made with feature integration."""
        return float(self._measure(mask)["masked_scores"][0, 0, 0])

    def _measure(self, mask: Optional[np.ndarray] = None) -> Dict[str, torch.Tensor]:
        if self.model is None:
            raise RuntimeError("This scrubber has no model: create it with ComponentScrubber(exp, model=model).")
        scorer = self.scorer()
        if mask is None:
            feature = scorer.integration == "feature"
            ossms = self.pair.ossms_lowres[0, 0].double().numpy() if feature else self._ossms
            mask = _combine(ossms, self._weights[self.weighting] * self._selected)
        m = np.asarray(mask, dtype=np.float32)
        pixels = self.pair.images[0].numpy()
        if scorer.integration != "feature" and tuple(pixels.shape[:2]) != tuple(m.shape):
            raise ValueError(f"The mask is {m.shape[1]}x{m.shape[0]} but the explanation's images are "
                             f"{pixels.shape[1]}x{pixels.shape[0]}: give a mask of the image's size.")
        return scorer.score_masks(pixels, [self.prompt], m[None, None, None])

    def scorer(self):
        """The DecomCAM that scores masks as this explanation's integration did: its recorded stage-2 knobs on
        ``model`` (with a softmax score, the explanation's other prompts compete as contrast prompts)."""
        if self._scorer is None or self._scorer.model is not self.model:
            from ..methods.decomcam import DecomCAM
            p = self.explanation.params
            knobs = {k: p[k] for k in _SCORING_KNOBS if p.get(k) is not None}
            if knobs.get("score") == "softmax":
                others = [q for i, q in enumerate(self.explanation.prompts) if i != self.prompt_index]
                knobs["contrast"] = tuple(others) + tuple(p.get("contrast") or ())
            self._scorer = DecomCAM(self.model, **knobs)
        return self._scorer

    def measure(self) -> Dict[str, float]:
        """Score the image masked by the current combination; show it beside the full and reference scores.

        Returns {"score", "contribution", "base_score", "reference_score", "restored"}: contribution is
        DecomCAM's d for this mask (the gain over the reference, or the score itself with contribution="raw"),
        restored is (score - reference) / (base - reference), the share of the gap the selection restores.
        """
        measured = self._measure()
        score = float(measured["masked_scores"][0, 0, 0])
        out = {"score": score, "contribution": float(measured["contributions"][0, 0, 0]),
               "base_score": _scalar(self.pair.base_score), "reference_score": _scalar(self.pair.reference_score)}
        base, ref = out["base_score"], out["reference_score"]
        out["restored"] = (score - ref) / (base - ref) if base == base and ref == ref and base != ref else float("nan")
        self.last_measure = out
        self._measured_for = (tuple(self.selected), self.weighting)
        self.result.value = self._scores_html(out)
        return out

    def _measure_clicked(self) -> None:
        self.measure_button.disabled = True
        self.result.value = message_html("measuring…", "busy")
        try:
            self.measure()
        except Exception as err:  # show it in the widget, keep the widget usable
            self.result.value = message_html(f"Could not measure: {err}", "error")
        finally:
            self.measure_button.disabled = self.model is None

    def _scores_html(self, out: Optional[Dict[str, float]], stale: bool = False) -> str:
        base = _scalar(self.pair.base_score)
        ref = _scalar(self.pair.reference_score)
        kind = self.explanation.params.get("score", "cosine")
        parts = []
        if out is not None:
            pct = "" if out["restored"] != out["restored"] else \
                f" (recovers {out['restored']:.0%} of what blurring took away)"
            parts.append(f"<b>selection: <span class='decomviz-measured'>{out['score']:.4f}</span></b>{pct}")
        else:
            parts.append("<b>selection: press measure</b>")
        parts.append(f"full image: {base:.4f}")
        if ref == ref:
            parts.append(f"blurred reference: {ref:.4f}")
        note = " <i>(selection changed: press measure again)</i>" if stale else ""
        return f"<span class='decomviz-scores'>{kind} score · " + " · ".join(parts) + note + "</span>"

    def _title_html(self) -> str:
        exp = self.explanation
        score = ""
        if exp.base_score is not None:
            score = f" · {exp.params.get('score', 'cosine')} score {_scalar(self.pair.base_score):.4f}"
        warn = "".join(f"<br><span style='color:#8a1c1c;font-weight:600'>⚠ {html.escape(c)}</span>"
                       for c in explain_caveats(self.pair))  # maps that cannot mean anything say so
        return (f"<b>Component scrubber</b> · image {self.image_index} · "
                f"“{html.escape(self.prompt)}” · {self.n_components} components{score}{warn}")

    # ------------------------------------------------------------------ callbacks
    def _on_slider(self, change) -> None:
        if not self._syncing:
            self.set_k(change["new"])

    def _on_toggle(self, k: int, change) -> None:
        if not self._syncing:
            self.toggle(k, change["new"])


def _legend_html() -> str:
    from ..viz.images import heat_lut
    lut = heat_lut()
    stops = ", ".join(f"rgb({r},{g},{b})" for r, g, b in lut[::32].tolist() + [lut[-1].tolist()])
    return (f"<span style='white-space:nowrap'>map: low <span style='display:inline-block;width:90px;height:10px;"
            f"vertical-align:middle;background:linear-gradient(to right, {stops})'></span> high</span>")


_LEGEND = _legend_html()


def _scalar(t: Optional[torch.Tensor]) -> float:
    return float("nan") if t is None else float(t.reshape(-1)[0])


def _combine(ossms: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ReLU of the weighted sum of maps (K, H, W), min-max normalised (`explanation.combine_ossms` in numpy)."""
    summed = np.zeros(ossms.shape[1:], dtype=np.float64)
    for k in np.flatnonzero(w):
        summed += w[k] * ossms[k]
    np.maximum(summed, 0, out=summed)
    lo, hi = summed.min(), summed.max()
    if hi - lo > 1e-12:
        return (summed - lo) / (hi - lo)
    return np.zeros_like(summed)
