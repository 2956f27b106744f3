"""Widgets for method knobs, made from the methods' declarations (`decomviz.knobs.Knob`)."""
from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping

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
    lo, hi, step = knob.widget or (knob.low or 0, max(default * 4, 1), 1)
    cls = widgets.IntSlider if knob.kind == "int" else widgets.FloatSlider
    return cls(value=default, min=lo, max=hi, step=step, continuous_update=False, **common)


class KnobPanel:
    """The knob widgets of several methods, one per knob name, with their values as a dict.

    Parameters
    ----------
    knobs : the knobs by name (e.g. ``registry.all_knobs()``).
    defaults : each knob's default value.
    model : the CLIPModel whose layers the layer knob offers.
    """

    def __init__(self, knobs: Mapping[str, Knob], defaults: Mapping[str, Any], model=None):
        self.knobs = dict(knobs)
        self.widgets: Dict[str, widgets.Widget] = {n: knob_widget(k, defaults[n], model) for n, k in knobs.items()}
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
            w = self.widgets[name]
            if hasattr(w, "min") and isinstance(value, (int, float)) and not isinstance(value, bool):
                w.max, w.min = max(w.max, value), min(w.min, value)
            if self.knobs[name].kind == "texts":
                value = ", ".join((value,) if isinstance(value, str) else value)
            w.value = value

    def enable_only(self, names: Iterable[str]) -> None:
        """Grey out the knobs that none of the chosen methods takes."""
        names = set(names)
        for name, w in self.widgets.items():
            w.disabled = name not in names
