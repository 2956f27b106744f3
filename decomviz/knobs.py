"""Knobs declared once, as data.

A method class lists its knobs as `Knob` objects (``_knobs``). The same declaration validates the
constructor's arguments, builds the command line's options (type, choices, help, default) and gives the
widgets their kind and range. A knob's default is the default of the constructor's argument of the same name,
so it is written in one place only.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

KINDS = ("int", "float", "bool", "choice", "layer", "texts")


@dataclass(frozen=True)
class Knob:
    """One parameter of a method.

    Parameters
    ----------
    name : the constructor argument (and attribute) name.
    kind : "int", "float", "bool", "choice", "layer" (a layer name of the model) or "texts" (a tuple of
        strings, e.g. prompts).
    help : one sentence for the command line's help, the docs and the widgets' tooltips.
    choices : the allowed values of a "choice" knob (may include None).
    low, high : bounds of a number (inclusive unless ``open_low`` / ``open_high``).
    widget : (min, max, step) of the widget's slider for a number.
    advanced : hidden from the widgets' main panel (engine settings such as batch size).
    callable_ok : a "choice" knob that also takes a function (Python only: the command line and the widgets
        offer the named choices).
    auto : for a number, (what None means, a function of the model giving the value then): None is then
        allowed and chosen for the model (e.g. a batch size for its device).
    """

    name: str
    kind: str
    help: str
    choices: Tuple[Any, ...] = ()
    low: Optional[float] = None
    high: Optional[float] = None
    open_low: bool = False
    open_high: bool = False
    widget: Optional[Tuple[float, float, float]] = None
    advanced: bool = False
    callable_ok: bool = False
    auto: Optional[Tuple[str, Callable[[Any], Any]]] = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Knob {self.name}: kind must be one of {KINDS}, got {self.kind!r}.")

    def validate(self, value: Any, model=None) -> Any:
        """The value, checked and in canonical type; ValueError naming the knob and what is allowed."""
        if self.kind == "layer":
            return value if model is None else model.resolve_layer(value)
        if self.kind == "choice":
            if self.callable_ok and callable(value):
                return value
            if value not in self.choices:
                also = " or a function" if self.callable_ok else ""
                raise ValueError(f"{self.name} must be one of {', '.join(map(repr, self.choices))}{also}; "
                                 f"got {value!r}.")
            return value
        if self.kind == "texts":
            texts = (value,) if isinstance(value, str) else value
            if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) and t.strip() for t in texts):
                raise ValueError(f"{self.name} must be a list of non-empty strings, got {value!r}.")
            return tuple(texts)
        if value is None and self.auto is not None:
            return None if model is None else self.auto[1](model)
        if self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{self.name} must be True or False, got {value!r}.")
            return bool(value)
        return self._number(value)

    def _number(self, value: Any):
        is_int = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        is_real = is_int or (isinstance(value, (float, np.floating)) and math.isfinite(float(value)))
        if self.kind == "int" and not is_int:
            raise ValueError(f"{self.name} must be an integer{self.range_text()}, got {value!r}.")
        if not is_real:
            raise ValueError(f"{self.name} must be a finite number{self.range_text()}, got {value!r}.")
        v = int(value) if self.kind == "int" else float(value)
        too_low = self.low is not None and (v <= self.low if self.open_low else v < self.low)
        too_high = self.high is not None and (v >= self.high if self.open_high else v > self.high)
        if too_low or too_high:
            raise ValueError(f"{self.name} must be{self.range_text()}, got {value!r}.")
        return v

    def range_text(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.open_high else '<='} {self.high:g}")
        return (" " + " and ".join(parts)) if parts else ""

    # ------------------------------------------------------------------ command line
    def _parse_choice(self, text: str) -> Any:
        """A command-line word as a choice: "none" is None where None is a choice and "none" is not."""
        if text.lower() == "none" and None in self.choices and "none" not in self.choices:
            return None
        return text

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def add_to_parser(self, parser, default: Any, shown_default: Optional[str] = None) -> None:
        """Add this knob as an option of an argparse parser. An option not given leaves no attribute on the
        namespace (``argparse.SUPPRESS``), so the method's default, shown in the help, applies; an option given
        as ``none`` sets None where None is a choice. ``shown_default`` replaces the default's text in the help
        (e.g. where methods differ: "500 for decomcam; 300 for gscorecam")."""
        import argparse
        unset = argparse.SUPPRESS
        if default is None and self.auto is not None and shown_default in (None, "none"):
            shown_default = self.auto[0]
        elif shown_default is None:
            shown_default = _show(default)
        shown = f" (default: {shown_default})"
        if self.kind == "bool":
            parser.add_argument(self.option, action=argparse.BooleanOptionalAction, default=unset,
                                help=self.help + shown)
        elif self.kind == "choice":
            parser.add_argument(self.option, type=self._parse_choice, default=unset, metavar="{" + ",".join(
                _show(c) for c in self.choices) + "}", help=self.help + shown)
        elif self.kind == "layer":
            parser.add_argument(self.option, default=unset, metavar="NAME", help=self.help + shown)
        elif self.kind == "texts":
            parser.add_argument(self.option, action="append", default=unset, metavar="TEXT",
                                help=self.help + " (repeat for several)" + shown)
        else:
            parser.add_argument(self.option, type=int if self.kind == "int" else float, default=unset,
                                metavar="N" if self.kind == "int" else "X", help=self.help + shown)


def show_defaults(per_method: Dict[str, Any]) -> str:
    """The default of a knob as the help shows it: one value, or each value with the methods that have it."""
    groups: Dict[str, list] = {}
    for method, value in per_method.items():
        groups.setdefault(_show(value), []).append(method)
    if len(groups) == 1:
        return next(iter(groups))
    return "; ".join(f"{value} for {', '.join(methods)}" for value, methods in groups.items())


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(value) if value else "none"
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)




# ---------------------------------------------------------------------------------------------- classes
def knobs_of(cls) -> Dict[str, Knob]:
    """Every knob a class declares, base classes first (a subclass may redeclare one)."""
    out: Dict[str, Knob] = {}
    for klass in reversed(cls.__mro__):
        for knob in klass.__dict__.get("_knobs", ()):
            out[knob.name] = knob
    return out


def defaults_of(cls) -> Dict[str, Any]:
    """Each knob's default: the default of the constructor argument of the same name, in the class's own
    ``__init__`` or, for a knob it passes on through ``**kwargs``, in the nearest base class's."""
    signatures = [inspect.signature(k.__init__).parameters for k in cls.__mro__ if "__init__" in k.__dict__]
    out = {}
    for name in knobs_of(cls):
        found = next((p[name].default for p in signatures if name in p
                      and p[name].default is not inspect.Parameter.empty), inspect.Parameter.empty)
        if found is inspect.Parameter.empty:
            raise TypeError(f"{cls.__name__} declares the knob {name!r} but no __init__ gives it a default: add "
                            f"{name}=... to {cls.__name__}.__init__ (or pass **kwargs on to a base class that has it).")
        out[name] = found
    return out


def check_declared(cls, names: Sequence[str]) -> None:
    """Refuse knob names a class does not declare, naming the ones it has."""
    known = knobs_of(cls)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"{cls.__name__} has no knob {', '.join(map(repr, unknown))}; its knobs are "
                         f"{', '.join(known)}.")
