"""What the figures of one (image, prompt) pair of an Explanation share: reading the pair as numpy, the titles
of its components, the colours of kept and other components, and bare image axes."""
from __future__ import annotations

from typing import Tuple, Union

import numpy as np
import torch

KEPT_COLOR = "#d1495b"
OTHER_COLOR = "#c5ccd3"
SPECTRUM_COLOR = "#9aa5b1"


def to_numpy(x) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def pair_index(exp, image, prompt: Union[int, str]) -> Tuple[int, int]:
    """(b, t): the image index and the prompt index (a prompt may be given by its text); a pair the explanation
    does not hold raises an error that lists what it holds."""
    B, T = exp.saliency.shape[:2]
    if isinstance(prompt, str):
        if prompt not in exp.prompts:
            shown = ", ".join(repr(p) for p in exp.prompts[:8]) + (", ..." if T > 8 else "")
            raise ValueError(f"The explanation has no prompt {prompt!r}; its prompts are {shown}. Pass one of them "
                             "or its index.")
        t = exp.prompts.index(prompt)
    else:
        t = int(prompt)
        if not -T <= t < T:
            raise IndexError(f"prompt={t} is out of range: the explanation has {T} prompt(s) (0 to {T - 1}).")
    b = int(image)
    if not -B <= b < B:
        raise IndexError(f"image={b} is out of range: the explanation has {B} image(s) (0 to {B - 1}).")
    return b % B, t % T


def component_title(exp, b: int, t: int, k: int) -> str:
    """"#k w=…" (and "d=…" on a second line when the explanation has contributions)."""
    w = float(exp.weights[b, t, k]) if exp.weights is not None else float("nan")
    if exp.contributions is not None:
        return f"#{k + 1}: w={w:.2f}<br>d={float(exp.contributions[b, t, k]):+.3f}"
    return f"#{k + 1} w={w:.2f}"


def hide_axes(fig) -> None:
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)


#: Why a pair's map may be empty, most specific first (the names of ``exp.flags``).
FLAG_NOTES = (
    ("zero_gradient", "empty map: no gradient reached the tapped layer"),
    ("no_positive_contribution", "empty map: no component raised the score over the blurred reference (every w = 0)"),
    ("empty_map", "empty map: nothing positive to show"),
)


def flag_note(exp, b: int, t: int):
    """The reason a pair's map is empty, as a short sentence, or None when it is not flagged."""
    flags = getattr(exp, "flags", None) or {}
    for name, note in FLAG_NOTES:
        f = flags.get(name)
        if f is not None and bool(f[b, t]):
            return note
    return None


def mark_flag(fig, exp, b: int, t: int, row: int = 1, col: int = 1) -> None:
    """Write the pair's flag (if any) across the panel at (row, col), so that an empty map is never silent."""
    note = flag_note(exp, b, t)
    if note is None:
        return
    fig.add_annotation(text="⚠ " + note.replace(": ", ":<br>", 1), x=0.5, y=0.5, xref="x domain", yref="y domain",
                       row=row, col=col, showarrow=False, font=dict(size=11, color="#8a1c1c"),
                       bgcolor="rgba(255,255,255,0.85)", bordercolor="#8a1c1c", borderpad=3)
