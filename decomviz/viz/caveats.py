"""The words for maps that cannot mean anything (``exp.flags["random_weights"]``, ``exp.flags["off_domain"]``,
set by `decomviz.models.domain`): the problem and the fix, for warnings, report banners, widgets and figure titles."""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch

CAVEAT_FLAGS = ("random_weights", "off_domain")

#: what to load instead, for a photo
PHOTO_FIX = ("for photos load a model trained on photos, e.g. dv.load_model('RN50', pretrained='openai') "
             "(offline: a copied folder, dv.load_model(checkpoint='rn50-openai'); README, 'Real weights on an "
             "offline machine')")
RANDOM_FIX = ("load real weights: dv.load_model(name, pretrained=TAG) where a network is, or "
              "dv.load_model(checkpoint='copied-folder') offline (README, 'Real weights on an offline "
              "machine'); or the bundled dv.load_model('parts-rn') for PartsWorld scenes")


def caveat_messages(model_name: str, flags: Dict[str, torch.Tensor]) -> List[str]:
    """One sentence per raised caveat flag: the problem and the fix."""
    out = []
    f = flags.get("random_weights")
    if f is not None and bool(f.any()):
        out.append(f"{model_name} has random weights (loaded with pretrained=None and no checkpoint): its maps "
                   f"cannot mean anything; {RANDOM_FIX}.")
    f = flags.get("off_domain")
    if f is not None and bool(f.any()):
        idx = [int(i) for i in torch.nonzero(f.any(dim=1)).flatten()]
        which = ("the image does" if f.shape[0] == 1 else f"image {idx[0]} does" if len(idx) == 1
                 else "images " + ", ".join(str(i) for i in idx) + " do")
        out.append(f"{which[0].upper()}{which[1:]} not look like a PartsWorld scene, the only kind of image {model_name} knows (12 "
                   f"synthetic classes): its maps on it cannot mean anything; {PHOTO_FIX}.")
    return out


def explain_caveats(exp) -> List[str]:
    """The caveat sentences of an Explanation (from its flags and its record), for banners and titles."""
    return caveat_messages(str(exp.params.get("model", "the model")), getattr(exp, "flags", {}) or {})


def short_caveat(exp, b: int = 0, t: int = 0) -> str:
    """A few words for a figure's title, or '' when the pair is not flagged."""
    flags = getattr(exp, "flags", {}) or {}
    parts: Sequence[str] = []
    if "random_weights" in flags and bool(flags["random_weights"][b, t]):
        parts = [*parts, "RANDOM WEIGHTS: this map means nothing"]
    if "off_domain" in flags and bool(flags["off_domain"][b, t]):
        parts = [*parts, "NOT A PARTSWORLD SCENE: this model cannot read it"]
    return " · ".join(parts)
