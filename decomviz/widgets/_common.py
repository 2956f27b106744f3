"""Small helpers shared by the widgets: messages, prompt parsing, the image gallery, uploads."""
from __future__ import annotations

import html
import io
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import plotly.graph_objects as go

STATUS_COLORS = {"info": "#444", "busy": "#1f5fa8", "ok": "#2b7a2b", "error": "#b3261e", "warn": "#8a5a00"}
STATUS_ICONS = {"info": "", "busy": "⏳ ", "ok": "✓ ", "error": "⚠ ", "warn": "⚠ "}


def message_html(text: str, kind: str = "info") -> str:
    """A one-line coloured message for an ipywidgets.HTML status label (text is escaped)."""
    color = STATUS_COLORS.get(kind, STATUS_COLORS["info"])
    return (f'<span class="decomviz-status decomviz-{kind}" style="color:{color}">'
            f"{STATUS_ICONS.get(kind, '')}{html.escape(text)}</span>")


def parse_prompts(text: Union[str, Sequence[str], None]) -> List[str]:
    """Prompts from a text box: one per line; a single line is split at commas.

    ``"a house\\na red roof"`` and ``"a house, a red roof"`` both give ``["a house", "a red roof"]``. Empty
    entries are dropped; a list is returned stripped. Raises ValueError with a message a user can act on
    when nothing is left.
    """
    if text is None:
        items: List[str] = []
    elif isinstance(text, str):
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        items = [p.strip() for p in lines[0].split(",")] if len(lines) == 1 else lines
    else:
        items = [str(p).strip() for p in text]
    items = [p for p in items if p]
    if not items:
        raise ValueError("Type at least one prompt (one per line, or separated by commas), e.g. 'a house'.")
    return list(dict.fromkeys(items))  # keep order, drop duplicates


# ---------------------------------------------------------------------------------------------- gallery
def _skimage_loader(name: str) -> Optional[Callable[[], np.ndarray]]:
    try:
        import skimage.data as data
    except Exception:
        return None
    fn = getattr(data, name, None)
    return fn if callable(fn) else None


def _sklearn_images() -> Dict[str, Callable[[], np.ndarray]]:
    """scikit-learn's sample photos, read from its package folder with PIL: importing sklearn.datasets to list
    them would add about 140 MB (scipy and more) to a kernel that needs none of it."""
    import importlib.util
    try:
        spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    except (ImportError, ValueError):
        return {}
    if spec is None or not spec.submodule_search_locations:
        return {}
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "images"
    return {f"scikit-learn: {p.stem}": (lambda p=p: _read_rgb(p)) for p in sorted(folder.glob("*.jpg"))}


def _read_rgb(path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


SKIMAGE_SAMPLES = (("astronaut", "astronaut"), ("chelsea", "cat (chelsea)"), ("coffee", "coffee"),
                   ("rocket", "rocket"))


def default_gallery(n_scenes: int = 8, seed: int = 2024, n_objects=(1, 2)) -> "OrderedDict[str, Dict[str, Any]]":
    """Named images for the Explorer: PartsWorld scenes (with suggested prompts), then the sample photos that
    scikit-image and scikit-learn ship, where those packages are installed. Images load lazily.

    Returns name -> {"load": callable returning an image, "prompts": suggested prompts (may be empty)}.
    """
    out: "OrderedDict[str, Dict[str, Any]]" = OrderedDict()
    if n_scenes:
        from ..data import PartsWorld, object_phrase
        world = PartsWorld(n_scenes, seed=seed, n_objects=n_objects)
        for i in range(n_scenes):
            scene = world[i]
            labels = list(dict.fromkeys(o.label for o in scene.objects))
            name = f"PartsWorld {i}: {', '.join(labels)}"
            prompts = [object_phrase(lb, {}) for lb in labels]
            first = scene.objects[0]
            part = next(iter(first.colors), None)
            if part is not None:
                prompts.append(f"the {part} of {object_phrase(first.label, {})}")
            out[name] = {"load": (lambda s=scene: np.asarray(s.image)), "prompts": prompts, "caption": scene.caption}
    for fn_name, label in SKIMAGE_SAMPLES:
        fn = _skimage_loader(fn_name)
        if fn is not None:
            out[f"scikit-image: {label}"] = {"load": fn, "prompts": []}
    for name, fn in _sklearn_images().items():
        out[name] = {"load": fn, "prompts": []}
    return out


# ---------------------------------------------------------------------------------------------- uploads
def decode_upload(value: Any):
    """(name, RGB PIL image) from an ipywidgets 8 FileUpload value (a tuple of dicts with name and content),
    a single such dict, or raw bytes. Raises ImageInputError with a message a user can act on (also for an
    image too large to decode safely)."""
    from ..images import ImageInputError, from_bytes

    if isinstance(value, (tuple, list)):
        if not value:
            raise ImageInputError("No file was uploaded.")
        value = value[-1]
    if isinstance(value, dict):
        name = str(value.get("name") or "upload")
        content = value.get("content")
    else:
        name, content = "upload", value
    if content is None:
        raise ImageInputError(f"'{name}' has no content.")
    try:
        data = bytes(content)
    except TypeError:
        raise ImageInputError(f"'{name}': the upload's content is a {type(content).__name__}, not bytes.") from None
    return name, from_bytes(data, name)


def preview_png(pixels: np.ndarray, size: int = 160) -> bytes:
    """PNG bytes of a small preview (longer side ``size``) for an ipywidgets.Image."""
    from PIL import Image
    im = Image.fromarray(np.ascontiguousarray(np.asarray(pixels, dtype=np.uint8)))
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- figures
def replace_figure(widget, fig) -> None:
    """Make a plotly FigureWidget show ``fig`` (a go.Figure, or plotly's JSON: {"data": [...], "layout": {...}})
    without a new widget. Views on the page get the edits; the widget's synced state is set too, so a view made
    later (the widget put on the page after the edit) starts from the new figure, as plotly does when a
    FigureWidget is displayed.

    Where ``fig`` has the shown figure's structure (the same trace types in order, the same layout keys), only the
    properties that differ are sent, in one update the page applies at once (a cluster pick changes 8 pictures and
    their titles, not the grid); otherwise the traces are replaced, the layout relaid and keys ``fig`` lacks
    dropped. Given as JSON, a figure of the shown structure is never validated as a whole: only the properties
    that differ pass through plotly."""
    from copy import deepcopy
    if isinstance(fig, dict):
        data, layout = list(fig.get("data", [])), dict(fig.get("layout", {}))
    else:
        data, layout = [tr.to_plotly_json() for tr in fig.data], fig.layout.to_plotly_json()
    shown = widget.layout.to_plotly_json()
    if _same_structure(widget, data, shown, layout):
        _send_differences(widget, data, shown, layout)
    else:
        fig = go.Figure(fig) if isinstance(fig, dict) else fig  # plotly's template and defaults, as a Figure has
        stale = {k: None for k in shown if k not in layout and k != "template"}
        widget.data = ()
        if stale:  # the page drops them (a relayout to null); the setter below replaces the layout in Python
            widget.layout.update(stale)
        # the layout before the traces: a trace added first on an axis the page has not laid out yet is drawn on a
        # default axis over the whole figure, and stays there (a PartInspector image of more prompts was garbled)
        widget.layout = fig.layout
        widget.add_traces(list(fig.data))
    widget._widget_layout = deepcopy(widget._layout_obj._props)
    widget._widget_data = deepcopy(widget._data)


def _same_structure(widget, data: list, shown: dict, layout: dict) -> bool:
    return ([tr.type for tr in widget.data] == [tr.get("type", "scatter") for tr in data] and len(widget.data) > 0
            and set(shown) - {"template"} == set(layout) - {"template"})


def _send_differences(widget, data: list, shown: dict, layout: dict) -> None:
    """Replace, in one batch, each trace property and top-level layout key whose value differs from the shown one."""
    with widget.batch_update():
        for old, now in zip(widget.data, data):
            was = old.to_plotly_json()
            for key in set(was) | set(now):
                if key not in ("type", "uid") and not _equal(was.get(key), now.get(key)):
                    old[key] = now.get(key)
        for key, value in layout.items():
            if key == "template" or _equal(shown.get(key), value):
                continue
            was = shown.get(key)
            if isinstance(value, (list, tuple)) and isinstance(was, (list, tuple)) and len(was) == len(value) and \
                    all(isinstance(v, dict) for v in (*was, *value)):
                for j, (a, b) in enumerate(zip(was, value)):  # one annotation's text, not every annotation
                    for sub in set(a) | set(b):
                        if not _equal(a.get(sub), b.get(sub)):
                            widget.layout[key][j][sub] = b.get(sub)
            else:
                widget.layout[key] = value


def _equal(a, b) -> bool:
    """Equality of plotly property values: nested dicts, lists and arrays."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, (np.ndarray, list, tuple)) and isinstance(b, (np.ndarray, list, tuple)) and \
            np.shape(a) == np.shape(b) and bool(np.array_equal(np.asarray(a), np.asarray(b)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b

