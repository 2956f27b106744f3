"""Widgets for method knobs, made from the methods' declarations (`decomviz.knobs.Knob`)."""
from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, Set

import ipywidgets as widgets

from ..knobs import Knob

_STYLE = {"description_width": "110px"}
_WIDTH = "350px"  # inside the 420 px accordion, with room for its padding: no clipped dropdowns


def knob_widget(knob: Knob, default: Any, model=None) -> widgets.Widget:
    """One widget for one knob: a dropdown for choices and layers, a checkbox, or a slider whose range is the
    declaration's ``widget`` (min, max, step)."""
    common = dict(description=knob.name.replace("_", " "), style=_STYLE, tooltip=knob.help,
                  layout=widgets.Layout(width=_WIDTH))
    if knob.kind == "layer":
        layers = list(getattr(model, "layers", ()) or [default])
        return widgets.Dropdown(options=layers, value=model.default_layer if default is None else default, **common)
    if knob.kind == "choice":
        return widgets.Dropdown(options=[("none" if c is None else str(c), c) for c in knob.choices],
                                value=default, **common)
    if knob.kind == "texts":
        return widgets.Text(value=", ".join(default), placeholder="comma-separated", **common)
    if knob.kind == "bool":
        return widgets.Checkbox(value=bool(default), description=knob.name.replace("_", " "), indent=False,
                                tooltip=knob.help)
    if default is None and knob.auto is not None:  # chosen for the model (e.g. its device): shown as chosen
        default = knob.auto[1](model) if model is not None else int(knob.widget[0] if knob.widget else 1)
    lo, hi, step = knob.widget or (knob.low or 0, max(default * 4, 1), 1)
    cls = widgets.IntSlider if knob.kind == "int" else widgets.FloatSlider
    return cls(value=default, min=lo, max=hi, step=step, continuous_update=False, **common)


class KnobPanel:
    """The knob widgets of several methods, one per knob name, with their values as a dict.

    A knob that several methods take with different defaults (gScoreCAM's and DecomCAM's ``top_channels``)
    shows the chosen method's default; each method runs with its own default unless the user sets the knob.

    Parameters
    ----------
    knobs : the knobs by name (e.g. ``registry.all_knobs()``).
    defaults : each knob's default value.
    model : the CLIPModel whose layers the layer knob offers.
    """

    def __init__(self, knobs: Mapping[str, Knob], defaults: Mapping[str, Any], model=None):
        self.knobs = dict(knobs)
        self.model = model
        self.widgets: Dict[str, widgets.Widget] = {n: knob_widget(k, defaults[n], model) for n, k in knobs.items()}
        #: the knobs the user has set (a widget moved, or `set`); the others take each method's own default
        self.user_set: Set[str] = set()
        self._quiet = False
        for name, w in self.widgets.items():
            w.observe(lambda change, n=name: None if self._quiet else self.user_set.add(n), names="value")
        main = [w for n, w in self.widgets.items() if not self.knobs[n].advanced]
        advanced = [w for n, w in self.widgets.items() if self.knobs[n].advanced]
        self.box = widgets.VBox(main + ([widgets.HTML("<i>engine</i>")] + advanced if advanced else []))

    @property
    def values(self) -> Dict[str, Any]:
        out = {}
        for name, w in self.widgets.items():
            v, kind = w.value, self.knobs[name].kind
            if kind == "texts":
                v = tuple(t.strip() for t in v.split(",") if t.strip())
            out[name] = int(v) if kind == "int" else float(v) if kind == "float" else v
        return out

    def set(self, **values) -> None:
        """Set knob widgets; a number outside a slider's range widens the range (the run validates it)."""
        unknown = [k for k in values if k not in self.widgets]
        if unknown:
            raise ValueError(f"Unknown knob {unknown[0]!r}; knobs are {', '.join(self.widgets)}.")
        for name, value in values.items():
            self.user_set.add(name)
            self._assign(name, value)

    def _assign(self, name: str, value: Any) -> None:
        w = self.widgets[name]
        auto = self.knobs[name].auto
        if value is None and auto is not None and self.model is not None:
            value = auto[1](self.model)
        if self.knobs[name].kind == "layer" and value is None and self.model is not None:
            value = self.model.default_layer
        if hasattr(w, "min") and isinstance(value, (int, float)) and not isinstance(value, bool):
            w.max, w.min = max(w.max, value), min(w.min, value)
        if self.knobs[name].kind == "texts":
            value = ", ".join((value,) if isinstance(value, str) else value)
        w.value = value

    def show_defaults(self, defaults: Mapping[str, Any]) -> None:
        """Show a method's own defaults in the widgets the user has not set (they stay unset)."""
        self._quiet = True
        try:
            for name, value in defaults.items():
                if name in self.widgets and name not in self.user_set:
                    self._assign(name, value)
        finally:
            self._quiet = False

    def reset(self, defaults: Mapping[str, Any]) -> None:
        """Forget what the user set and show ``defaults``."""
        self.user_set.clear()
        self.show_defaults(defaults)

    def for_method(self, defaults: Mapping[str, Any]) -> Dict[str, Any]:
        """The knobs of one method, given its own ``defaults``: the widget's value for a knob the user has set,
        the method's default for the others (so no method runs with another method's default)."""
        values = self.values
        return {n: (values[n] if n in self.user_set else d) for n, d in defaults.items()}

    def enable_only(self, names: Iterable[str]) -> None:
        """Grey out the knobs that none of the chosen methods takes."""
        names = set(names)
        for name, w in self.widgets.items():
            w.disabled = name not in names
