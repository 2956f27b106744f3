"""Explorer: choose an image, type prompts, pick a method and its knobs, run, and look at the result."""
from __future__ import annotations

import html
import time
from typing import Any, Dict, List, Optional, Sequence, Union

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from ..methods.registry import METHODS, all_knobs, applies, method_spec

from ..explanation import Explanation
from ..images import ImageInputError, resize_center_crop, to_rgb
from ..viz.caveats import CAVEAT_FLAGS, explain_caveats
from ..viz.explanation_figures import comparison_figure, explanation_figure, spectrum_figure
from .background import BackgroundRuns, Job
from .knob_panel import KnobPanel
from .prompt_words import PromptWords
from .run_clock import ClockedButton, ClockedRuns
from ._common import decode_upload, default_gallery, message_html, parse_prompts, preview_png, replace_figure
from .figure_widget import FigureWidget

#: Method names as shown, by registry name (`decomviz.methods.registry.METHODS`).
METHOD_LABELS = {name: spec.label for name, spec in METHODS.items()}


def _reason(err: BaseException) -> str:
    return str(err) if isinstance(err, (ImageInputError, ValueError, OSError)) else f"{type(err).__name__}: {err}"


def _defaults(first: str = "decomcam") -> Dict[str, Any]:
    """A value for every knob widget: the method ``first``'s own defaults, then the other methods' for knobs it
    does not take (only shown: a run gives each method its own default for the knobs the user has not set)."""
    out: Dict[str, Any] = dict(method_spec(first).defaults)
    for spec in METHODS.values():
        for k, v in spec.defaults.items():
            out.setdefault(k, v)
    return out


class Explorer(ClockedRuns, BackgroundRuns, widgets.VBox):
    """Explain an image against prompts with DecomCAM or a baseline, from a notebook.

    Parameters
    ----------
    model : a CLIPModel from `dv.load_model()`.
    gallery : optional dict name -> image (PIL, path, array) added in front of the default gallery
        (PartsWorld scenes, and the sample photos of scikit-image and scikit-learn where installed).
    n_scenes, seed : how many PartsWorld scenes the gallery offers, and their seed.
    prompts : initial prompts (default: suggested for the first gallery image).

    Runs happen in a background thread, so the notebook stays responsive; starting a new run supersedes
    the old one (its results are dropped). Plain methods, which the callbacks call and tests can call:
    `set_image`, `set_upload`, `set_prompts`, `set_method`, `set_compare`, `set_knobs`, `run(wait=True)`,
    `show_prompt`. Results: `explanations` (method -> Explanation), `explanation` (the chosen method's).
    """

    def __init__(self, model, gallery: Optional[Dict[str, Any]] = None, n_scenes: int = 8, seed: int = 2024,
                 prompts: Union[None, str, Sequence[str]] = None):
        from ..models import CLIPModel
        if not isinstance(model, CLIPModel):
            raise TypeError(f"Explorer needs a decomviz CLIPModel (from dv.load_model()), got {type(model).__name__}.")
        self.model = model
        self.gallery = default_gallery(n_scenes=n_scenes, seed=seed)
        if gallery:
            extra = {str(k): {"load": (lambda v=v: v), "prompts": []} for k, v in gallery.items()}
            self.gallery = type(self.gallery)(list(extra.items()) + list(self.gallery.items()))
        self.image: Optional[np.ndarray] = None
        self.image_name = ""
        self.explanations: Dict[str, Explanation] = {}
        self.last_error: Optional[str] = None
        self._init_runs()
        self._prompts_auto = prompts is None  # follow the gallery's suggestions until the user types
        self._setting_prompts = False
        self._shown_prompt = 0
        self._setting_options = False
        self._setting_dropdown = False
        self._figure_cache: Dict[int, tuple] = {}  # prompt -> its figures, for the last run
        # the figure widgets every run draws into, made here so that plotly.js reaches the page with the Explorer
        self._figure_pool: List[go.FigureWidget] = [FigureWidget() for _ in range(3)]
        self._banner = widgets.HTML()
        self.words = PromptWords(model)  # the prompt's words shaded by their share of the score
        self.word_shares = None  # the last run's TokenAttribution (or why there is none)

        # ---------------------------------------------------------- widgets
        wide = {"description_width": "110px"}
        self.image_dropdown = widgets.Dropdown(options=list(self.gallery), description="image", style=wide,
                                               layout=widgets.Layout(width="380px"))
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload an image",
                                         layout=widgets.Layout(width="380px"))
        self.preview = widgets.Image(format="png", layout=widgets.Layout(width="160px", height="160px",
                                                                         object_fit="contain"))
        self.image_label = widgets.HTML()
        self.prompts_box = widgets.Textarea(placeholder="one prompt per line, or separated by commas",
                                            description="prompts", style=wide,
                                            layout=widgets.Layout(width="380px", height="78px"))
        self.method_dropdown = widgets.Dropdown(options=[(v, k) for k, v in METHOD_LABELS.items() if applies(k, model)],
                                                value="decomcam", description="method", style=wide,
                                                layout=widgets.Layout(width="380px"))
        self.compare_select = widgets.SelectMultiple(
            options=[(v, k) for k, v in METHOD_LABELS.items() if applies(k, model)], value=(), rows=4,
            description="side by side", style=wide, layout=widgets.Layout(width="380px"),
            tooltip="also run these methods and show all maps side by side (ctrl/cmd-click to pick several)")
        self.compare_hint = widgets.HTML("<span style='color:#666;font-size:12px;margin-left:114px'>"
                                         "ctrl-click (cmd-click on a Mac) to pick several, again to drop one</span>")
        self.knob_panel = KnobPanel(all_knobs(), _defaults(), model)
        self.run_button = ClockedButton(description="Run", button_style="primary",
                                        tooltip="explain the image (a new run replaces one in progress)",
                                        layout=widgets.Layout(width="120px"))
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="200px"))
        self.status = widgets.HTML(message_html("Pick an image, type prompts, press Run.", "info"))
        self.prompt_dropdown = widgets.Dropdown(options=[], description="show prompt", style=wide,
                                                layout=widgets.Layout(width="420px", display="none"))
        self.results = widgets.VBox()

        # ---------------------------------------------------------- callbacks (they only call methods)
        self.image_dropdown.observe(self._on_image_picked, names="value")
        self.upload.observe(lambda c: self.set_upload(c["new"]) if c["new"] else None, names="value")
        self.prompts_box.observe(self._on_prompts_typed, names="value")
        self._init_clock(self.run_button)
        self.run_button.on_click(lambda _: self.run(wait=False))
        self.prompt_dropdown.observe(self._on_prompt_picked, names="value")
        self.method_dropdown.observe(lambda c: self._on_method_picked(), names="value")
        self.compare_select.observe(lambda c: self._update_knob_visibility(), names="value")

        self.knobs_box = widgets.Accordion([self.knob_panel.box], titles=("knobs",), selected_index=None,
                                           layout=widgets.Layout(width="420px"))
        centred = widgets.Layout(align_items="center")
        left = widgets.VBox([self.image_dropdown, self.upload, widgets.HBox([self.preview, self.image_label],
                                                                             layout=centred)])
        right = widgets.VBox([self.prompts_box, self.method_dropdown, self.compare_select, self.compare_hint,
                              self.knobs_box, self.words.toggle])
        super().__init__([
            widgets.HTML("<b>decomviz Explorer</b> · explain an image against text prompts"),
            widgets.HBox([left, right], layout=widgets.Layout(flex_flow="row wrap", grid_gap="20px")),
            widgets.HBox([self.run_button, self.progress, self.status], layout=widgets.Layout(align_items="center")),
            self.prompt_dropdown,
            self.results,
        ])
        self.add_class("decomviz-explorer")

        first = next(iter(self.gallery), None)
        if first is not None:
            self.set_image(first)
        if prompts is not None:
            self.set_prompts(prompts)

    # ------------------------------------------------------------------ inputs
    def set_image(self, image: Any, name: Optional[str] = None) -> bool:
        """Use an image: a gallery name, or a PIL image / path / uint8 array. Returns False (and says why in the
        widget) when it cannot be used; the previous image stays."""
        suggested: List[str] = []
        try:
            if isinstance(image, str) and image in self.gallery:
                entry = self.gallery[image]
                pil = to_rgb(entry["load"]())
                suggested = list(entry.get("prompts") or [])
                name = image
                if self.image_dropdown.value != image:
                    self.image_dropdown.value = image  # its callback calls set_image(image) again: cheap
                    return True
            else:
                pil = to_rgb(image)
                name = str(name or (image if isinstance(image, str) else "your image"))
                if name in self.gallery:  # never shadow an entry of the gallery
                    name = f"{name} ({sum(n.startswith(name) for n in self.gallery) + 1})"
        except Exception as err:  # any image that cannot be used: say why, keep the previous one
            self._message(f"Cannot use that image: {_reason(err)}", "error")
            return False
        self.image = np.asarray(pil, dtype=np.uint8)
        self.image_name = str(name)
        if self.image_name not in self.gallery:  # list it, so that the dropdown shows what is in use
            arr = self.image
            self.gallery[self.image_name] = {"load": (lambda a=arr: a), "prompts": []}
            self._setting_dropdown = True
            try:
                self.image_dropdown.options = list(self.gallery)
                self.image_dropdown.value = self.image_name
            finally:
                self._setting_dropdown = False
        self.preview.value = preview_png(self.image)
        self.image_label.value = (f"<small>{html.escape(self.image_name)}<br>{self.image.shape[1]}×"
                                  f"{self.image.shape[0]} px</small>")
        if suggested and self._prompts_auto:
            self._set_prompt_text("\n".join(suggested))
        caveat = self._image_caveat()
        self._message(f"Image: {self.image_name}. " + (f"{caveat} " if caveat else "") + "Press Run.",
                      "warn" if caveat else "info")
        return True

    def _image_caveat(self) -> str:
        """Before any run: whether the model can read the chosen image at all (random weights, a photo shown to a
        PartsWorld model), with the fix; '' when it can."""
        from ..models.domain import caveat_flags
        from ..viz.caveats import caveat_messages
        view = resize_center_crop(to_rgb(self.image), self.model.image_size)
        return " ".join(caveat_messages(self.model.name, caveat_flags(self.model, view[None], 1)))

    def set_upload(self, value: Any) -> bool:
        """Use an uploaded file (the FileUpload widget's value, or bytes). Bad files give a message, not an
        exception, and the previous image stays."""
        try:
            name, pil = decode_upload(value)
        except Exception as err:  # a bad upload gives a message; the widget stays usable
            self._message(_reason(err), "error")
            return False
        # the upload keeps its value, so that its counter reads 1 (a file is loaded), and is named after it
        self.upload.description = f"uploaded: {name[:24]}"
        return self.set_image(pil, name=f"upload: {name}")

    def set_prompts(self, prompts: Union[str, Sequence[str]]) -> None:
        """Prompts as text (one per line or comma-separated) or a list; they replace any suggestion."""
        text = prompts if isinstance(prompts, str) else "\n".join(str(p) for p in prompts)
        self._prompts_auto = False
        self._set_prompt_text(text)

    @property
    def prompts(self) -> List[str]:
        """The prompts as parsed from the text box (ValueError with a message when there are none)."""
        return parse_prompts(self.prompts_box.value)

    def set_method(self, method: str) -> None:
        if method not in METHOD_LABELS or not applies(method, self.model):  # attention methods need a ViT
            raise ValueError(method_spec(method).cls.refusal(self.model) if method in METHOD_LABELS else
                             f"Unknown method {method!r}; choose from {', '.join(METHOD_LABELS)}.")
        self.method_dropdown.value = method

    def set_compare(self, methods: Sequence[str]) -> None:
        """Methods to run as well and show side by side with the chosen one (empty: none)."""
        unknown = [m for m in methods if m not in METHOD_LABELS]
        if unknown:
            raise ValueError(f"Unknown method(s) {unknown}; choose from {', '.join(METHOD_LABELS)}.")
        self.compare_select.value = tuple(methods)

    def set_knobs(self, **knobs) -> None:
        """Set knobs by name (any knob of any registered method; see ``knob_panel.knobs``)."""
        self.knob_panel.set(**knobs)

    def reset_knobs(self) -> None:
        """Forget the knobs set so far: every method runs with its own defaults again."""
        self.knob_panel.reset(_defaults(self.method_dropdown.value))

    @property
    def knobs(self) -> Dict[str, Any]:
        """The value of every knob widget, by name (a knob not set shows the chosen method's default)."""
        return self.knob_panel.values

    def knobs_for(self, method: str) -> Dict[str, Any]:
        """The knobs a run gives ``method``: those the user set, and the method's own default for the others."""
        return self.knob_panel.for_method(method_spec(method).defaults)

    @property
    def methods(self) -> List[str]:
        """The chosen method first, then the side-by-side ones (no repeats)."""
        return list(dict.fromkeys([self.method_dropdown.value, *self.compare_select.value]))

    def make_cam(self, method: str, knobs: Optional[Dict[str, Any]] = None):
        """The CAM object a run uses for `method`, given every knob it takes (validates them); by default the
        knobs the user set and the method's own defaults (`knobs_for`)."""
        k = self.knobs_for(method) if knobs is None else knobs
        spec = method_spec(method)
        return spec.make(self.model, **{n: v for n, v in k.items() if n in spec.knobs})

    # ------------------------------------------------------------------ running
    @property
    def explanation(self) -> Optional[Explanation]:
        """The chosen method's explanation from the last completed run."""
        if not self.explanations:
            return None
        return next(iter(self.explanations.values()))

    def run(self, wait: bool = True, timeout: Optional[float] = None) -> Optional[Dict[str, Explanation]]:
        """Explain the current image against the prompts with the chosen method(s).

        The work runs in a background thread; a run started while another is going supersedes it. With
        ``wait=True`` this returns the explanations once done (None if the run failed or was superseded).
        Bad input (no prompt, bad knobs) is reported in the status line and returns None at once.
        """
        try:
            if self.image is None:
                raise ValueError("Pick an image from the list or upload one first.")
            prompts = self.prompts
            methods = self.methods
            knobs = {m: self.knobs_for(m) for m in methods}
            for m in methods:
                self.make_cam(m, knobs[m])  # validate every knob before starting
        except Exception as err:
            self._message(str(err), "error")
            return None
        self.progress.max = len(methods) + 1
        job = self._start(dict(image=self.image.copy(), image_name=self.image_name, prompts=prompts,
                               methods=methods, knobs=knobs, browser_clock=self.run_button.clicked_in_browser))
        if not self._finished(job, wait, timeout):
            return None
        return dict(self.explanations) if self.last_error is None else None

    def _compute(self, job: Job) -> Dict[str, Explanation]:  # the BackgroundRuns hook
        """The engine calls of one run (in the worker thread). Checks between methods whether it was superseded."""
        out: Dict[str, Explanation] = {}
        self._progress(job, 1, f"Run {job.generation}: preparing the image…")
        for i, method in enumerate(job.methods):
            self._check(job)
            self._progress(job, 1 + i, f"Run {job.generation}: {METHOD_LABELS[method]} ({i + 1} of "
                                       f"{len(job.methods)}) on {len(job.prompts)} prompt(s)…")
            out[method] = self.make_cam(method, job.knobs[method])(job.image, job.prompts)
        self._check(job)
        job.words = self.words.compute(job.image, job.prompts)
        self._check(job)
        return out

    def _summary(self, job: Job, on_screen: Optional[float] = None) -> str:
        """A run clicked in a browser says its maps are on their way, then the wait its user saw (`on_screen`)."""
        secs, what = time.perf_counter() - job.started, f"{', '.join(METHOD_LABELS[m] for m in job.methods)} on " \
            f"{len(job.prompts)} prompt(s)."
        if on_screen is not None:
            text = f"Run {job.generation} done in {on_screen:.2f} s from the click to the maps on screen: {what}"
        elif job.browser_clock:
            text = f"Run {job.generation}: maps computed in {secs:.1f} s, on their way to the screen…"
        else:
            text = f"Run {job.generation} done in {secs:.1f} s: {what}"
        exp = self.explanation
        if exp is not None:
            flagged = [f for f, v in exp.flags.items() if bool(v.any()) and f in ("no_positive_contribution",
                                                                                  "empty_map", "zero_gradient")]
            if flagged:
                text += " Note: " + "; ".join(_FLAG_TEXT.get(f, f) for f in flagged) + "."
            for msg in explain_caveats(exp):  # maps that cannot mean anything: say so first
                text = f"{msg} " + text
        return text

    def _summary_kind(self) -> str:
        exp = self.explanation
        if exp is not None and any(bool(v.any()) for f, v in exp.flags.items()
                                   if f in ("no_positive_contribution", "empty_map", "zero_gradient", *CAVEAT_FLAGS)):
            return "warn"
        return "ok"

    # ------------------------------------------------------------------ showing
    def _show_results(self, job: Job) -> None:
        opts = [(p, i) for i, p in enumerate(job.prompts)]
        self._shown_prompt = 0
        self._setting_options = True
        try:
            self.prompt_dropdown.options = opts
            self.prompt_dropdown.value = 0
        finally:
            self._setting_options = False
        self.prompt_dropdown.layout.display = None if len(opts) > 1 else "none"
        self._figure_cache = {}
        self.word_shares = job.__dict__.get("words")
        self.show_prompt(0)

    def _deliver(self, job: Job, results: Dict[str, Explanation]) -> bool:
        delivered = super()._deliver(job, results)
        self._clock_delivered(job, delivered)
        # then, still in the run's thread, the figures of the other prompts: switching the prompt on show later
        # only swaps them in (no model runs, nothing is rebuilt); a newer run stops this
        for t in range(1, len(job.prompts) if delivered else 0):
            if job.generation != self._generation:
                break
            self._figures_of(t)
        return delivered

    def show_prompt(self, prompt: Union[int, str] = 0) -> None:
        """Draw the figures of one prompt of the last run, into the Explorer's own figure widgets (made once:
        each new plotly FigureWidget ships plotly.js, ~5 MB, to the page, which took seconds after every run)."""
        exp = self.explanation
        if exp is None:
            return
        t = exp.prompts.index(prompt) if isinstance(prompt, str) else int(prompt)
        self._shown_prompt = t
        banner, figs = self._figures_of(t)
        while len(self._figure_pool) < len(figs):
            self._figure_pool.append(FigureWidget())
        for widget, fig in zip(self._figure_pool, figs):
            replace_figure(widget, fig)
        self._banner.value = banner
        self.results.children = ((self._banner,) if banner else ()) + tuple(self._figure_pool[:len(figs)])

    def _figures_of(self, t: int) -> tuple:
        """(caveat banner and shaded prompt html, figures) of prompt t of the last run, built once and kept until
        the next run."""
        if t not in self._figure_cache:
            self._figure_cache[t] = self._build_figures(self.explanation, t)
        return self._figure_cache[t]

    def _build_figures(self, exp, t: int) -> tuple:
        figs: List[go.Figure] = [explanation_figure(exp, 0, t)]
        caveats = explain_caveats(exp)
        banner = message_html(" ".join(caveats), "error") if caveats else ""  # above the maps, where all see it
        banner += self.words.html(self.word_shares, t)
        if exp.n_components:
            spec = spectrum_figure(exp, 0, t)
            spec.update_layout(title="singular-value spectrum σ_k, with weights w_k and contributions d_k",
                               width=700)
            figs.append(spec)
        if len(self.explanations) > 1:
            named = {METHOD_LABELS.get(m, m): e for m, e in self.explanations.items()}
            figs.append(comparison_figure(named, 0, t))
        return banner, tuple(figs)

    @property
    def figures(self) -> List[go.FigureWidget]:
        return [w for w in self.results.children if isinstance(w, go.FigureWidget)]

    def scrubber(self, prompt: Union[int, str, None] = None):
        """A ComponentScrubber over the last DecomCAM result (for the prompt on show), with this model."""
        from .scrubber import ComponentScrubber
        exp = self.explanations.get("decomcam")
        if exp is None:
            raise ValueError("Run DecomCAM first: the scrubber needs its components.")
        return ComponentScrubber(exp, model=self.model, prompt=self._shown_prompt if prompt is None else prompt)

    # ------------------------------------------------------------------ helpers
    def _set_prompt_text(self, text: str) -> None:
        self._setting_prompts = True
        try:
            self.prompts_box.value = text
        finally:
            self._setting_prompts = False

    def _on_image_picked(self, change) -> None:
        if not self._setting_dropdown and change["new"] is not None:
            self.set_image(change["new"])

    def _on_prompt_picked(self, change) -> None:
        if not self._setting_options and change["new"] is not None:
            self.show_prompt(change["new"])

    def _on_prompts_typed(self, change) -> None:
        if not self._setting_prompts:
            self._prompts_auto = False

    def _on_method_picked(self) -> None:
        self.knob_panel.show_defaults(_defaults(self.method_dropdown.value))
        self._update_knob_visibility()

    def _update_knob_visibility(self) -> None:
        self.knob_panel.enable_only(all_knobs(self.methods))


_FLAG_TEXT = {
    "no_positive_contribution": "for some prompt no component raised the score over the blurred reference, so its "
                                "map is empty",
    "empty_map": "some maps are empty (nothing positive to show)",
    "zero_gradient": "the score has zero gradient at this layer for some prompt",
}
