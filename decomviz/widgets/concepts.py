"""ConceptGallery: the concepts of a `ConceptBasis` over a few images, one concept at a time, with their share of a
prompt's score and, where the images have parts, the part report beside its controls. Logic in plain methods."""
from __future__ import annotations

import html
import warnings
from typing import Any, Optional, Sequence

import ipywidgets as widgets
import numpy as np

from ..viz.concepts import concept_figure
from ._common import replace_figure
from .figure_widget import FigureWidget


class ConceptGallery(widgets.VBox):
    """Browse concepts: a dropdown of concepts, the selected concept's map over each image.

    Parameters
    ----------
    basis : a fitted `ConceptBasis`.
    images : the images to show (PIL, paths, arrays), or PartsWorld scenes / dataset items.
    prompt : optional prompt; each concept's share of its score in each image is shown.
    report : optional `basis.part_report(...)`, shown as a line of numbers beside its controls.
    """

    def __init__(self, basis, images: Sequence[Any], prompt: Optional[str] = None, report=None, cols: int = 6):
        basis._check_fitted()
        if basis.per_class:
            raise ValueError("ConceptGallery shows one shared basis; for per-class concepts show one class's: "
                             "ConceptGallery(basis.for_class('house'), images_of_houses).")
        self.basis = basis
        self.images = [getattr(im, "image", im) for im in images]
        if not self.images:
            raise ValueError("Give at least one image to show the concepts on.")
        self.cols = cols
        self.pixels = basis.model.prepare(self.images).pixels
        self.maps = basis.transform(self.images)  # (B, K, H, W)
        self.prompt = prompt
        self.shares = basis.importance(self.images, prompt)["shares"][:, 0] if prompt else None  # (B, K)
        names = {d["concept"]: d["name"] for d in (getattr(basis, "model_names_", None) or [])}
        self.names = [names.get(k, "") for k in range(basis.n_concepts)]
        self.concept = self.strongest_concept()
        self.dropdown = widgets.Dropdown(options=[(self._label(k), k) for k in range(basis.n_concepts)],
                                         value=self.concept, description="concept")
        self.dropdown.observe(lambda change: self.select_concept(change["new"]), names="value")
        self.summary = widgets.HTML(self.summary_html(report))
        self.fig = FigureWidget(self.figure(self.concept))
        super().__init__([widgets.HBox([self.dropdown]), self.summary, self.fig])

    def _label(self, k: int) -> str:
        return f"{k}: {self.names[k]}" if self.names[k] else str(k)

    def strongest_concept(self) -> int:
        """The concept the view opens on: with a prompt, the one whose region restores most of its score over the
        shown images (the largest mean share); without one, or where no share is defined, the one with the most
        mass (which is often the background's)."""
        if self.shares is not None:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a concept whose share is NaN in every image
                mean = np.nanmean(self.shares, axis=0)
            if np.isfinite(mean).any():
                return int(np.nanargmax(mean))
        return int(self.maps.sum(axis=(0, 2, 3)).argmax())

    def figure(self, k: int):
        return concept_figure(self.pixels, self.maps[:, k], k, self.names[k],
                              None if self.shares is None else self.shares[:, k], cols=self.cols)

    def select_concept(self, k: int) -> None:
        if not 0 <= k < self.basis.n_concepts:
            raise ValueError(f"concept must be in 0..{self.basis.n_concepts - 1}, got {k}.")
        self.concept = k
        if self.dropdown.value != k:
            self.dropdown.value = k
        replace_figure(self.fig, self.figure(k))

    @staticmethod
    def summary_html(report) -> str:
        """The part report's concepts row beside its position partition and ceiling (empty without a report)."""
        if not report or "concepts" not in report:
            return ""
        c = report["concepts"]
        pos = next((r for n, r in report.items() if n.startswith("control: position")), None)
        ceil = next((r for n, r in report.items() if "ceiling" in n), None)
        text = (f"within-class part NMI {c['within_class_nmi']:.3f} (position alone "
                f"{pos['within_class_nmi']:.3f}, true parts at the grid {ceil['within_class_nmi']:.3f}); "
                f"within image {c['within_image_nmi']:.3f} (position alone {pos['within_image_nmi']:.3f})")
        return f"<span>{html.escape(text)}</span>"
