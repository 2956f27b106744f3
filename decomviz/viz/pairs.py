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
    """(b, t): the image index and the prompt index (a prompt may be given by its text)."""
    t = exp.prompts.index(prompt) if isinstance(prompt, str) else int(prompt)
    return int(image), t


def component_title(exp, b: int, t: int, k: int) -> str:
    """"#k w=…" (and "d=…" on a second line when the explanation has contributions)."""
    w = float(exp.weights[b, t, k]) if exp.weights is not None else float("nan")
    if exp.contributions is not None:
        return f"#{k + 1}: w={w:.2f}<br>d={float(exp.contributions[b, t, k]):+.3f}"
    return f"#{k + 1} w={w:.2f}"


def hide_axes(fig) -> None:
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
