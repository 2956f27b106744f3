"""Reports as plain HTML: every picture a small WebP (uint8) inlined as a data URI, the spectrum an inline SVG,
no JavaScript. A report of a few scenes stays well under a few megabytes and opens at once, offline; the
interactive views (hover, zoom, scrubbing) are the notebooks' and widgets' job.

Terms the reports use are defined once, in `GLOSSARY`, with the words of the step-through (`viz.steps`).
"""
from __future__ import annotations

import html
import os
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from ..ops import atomic_write, minmax_np
from .images import blend_heat, image_uri
from .pairs import flag_note, pair_index, to_numpy

#: term -> definition; every report links its terms here.
GLOSSARY: Dict[str, str] = {
    "score s(x, t)": "how well image x matches prompt t: the cosine of their embeddings (score='cosine'), or the "
                     "softmax probability of t among the call's prompts and the contrast set (score='softmax', the "
                     "class-discriminative question: why this text rather than the others).",
    "reference r": "the image blurred (a Gaussian of blur_sigma px at 224 px): what the model sees when the image's "
                   "details are gone. s(r, t) is its score.",
    "OSSM": "orthogonal sub-saliency map: one singular component u_k of the gradient-weighted activations at the "
            "tapped layer, laid on the image (its positive part, upsampled). Components are orthogonal: each shows "
            "a different pattern.",
    "variance share": "sigma_k^2 / sum_j sigma_j^2: how much of the gradient-weighted activations component k "
                      "explains (sigma_k: its singular value).",
    "contribution d": "d_k = s(x_k, t) - s(r, t): how much of the score component k's region alone restores, where "
                      "x_k shows the image inside the OSSM and the reference elsewhere.",
    "weight w": "w_k = max(d_k, 0) / max_j d_j: the contribution scaled to [0, 1]; components that restore nothing "
                "get 0. DecomCAM's map is the sum of w_k * OSSM_k, scaled to [0, 1].",
    "empty map": "a map with nothing positive in it, e.g. when no component restores any score (every w = 0); "
                 "marked in red on its panel with the reason, never left blank silently.",
    "pointing game": "a hit when the map's maximum lies inside the named object's mask (15 px tolerance at "
                     "224 px); the table gives the share of hits.",
    "energy": "the share of the map's total value that falls inside the named object's mask.",
    "s/pair": "seconds per (image, prompt) pair on this machine, model loaded and warm.",
    "word share": "how much each word of the prompt adds to the score s(x, t), by integrated gradients over the "
                  "words' token embeddings from a prompt whose word embeddings are zero: the shares sum to the change "
                  "of the score (red: raises it, blue: lowers it).",
}

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:24px auto;max-width:1280px;color:#222;line-height:1.4}}
h2{{margin-top:36px;border-bottom:1px solid #ddd}} pre{{background:#f5f5f5;padding:10px;overflow-x:auto}}
.row{{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start;margin:10px 0}}
figure{{margin:0;text-align:center;font-size:13px}} figure img{{display:block;border-radius:3px}}
figcaption{{max-width:230px;margin:3px auto 0}} .flag{{color:#8a1c1c;font-weight:600}}
.flagged img{{outline:3px solid #8a1c1c}} dl{{font-size:14px}} dt{{font-weight:600;margin-top:6px}}
.note{{color:#555;font-size:14px}} .caveat{{border:3px solid #8a1c1c;background:#fdecea;color:#5a1010;
padding:8px 14px;margin:12px 0;font-size:15px}} a.term{{color:inherit;text-decoration:underline dotted}}
</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def term(name: str, text: Optional[str] = None) -> str:
    """A link to a glossary entry."""
    if name not in GLOSSARY:
        raise KeyError(f"{name!r} is not in the glossary")
    return f'<a class="term" href="#{_anchor(name)}">{html.escape(text or name)}</a>'


def _anchor(name: str) -> str:
    return "g-" + "".join(c if c.isalnum() else "-" for c in name.lower())


def glossary_html(names: Optional[Iterable[str]] = None) -> str:
    names = list(GLOSSARY) if names is None else list(names)
    items = "".join(f'<dt id="{_anchor(n)}">{html.escape(n)}</dt><dd>{html.escape(GLOSSARY[n])}</dd>' for n in names)
    return f"<h2>Glossary</h2><dl>{items}</dl>"


def picture(pixels: np.ndarray, heat: Optional[np.ndarray] = None, caption: str = "", flag: Optional[str] = None,
            width: int = 224, opacity: float = 0.5) -> str:
    """One panel: ``pixels`` (uint8, H x W x 3) with ``heat`` in [0, 1] blended over it, as a WebP figure with a
    caption (HTML allowed); ``flag`` (a reason the map is empty) is written under it in red."""
    rgb = blend_heat(pixels, heat, opacity)
    side = max(rgb.shape[:2])
    src = image_uri(rgb, width if side > width else None, "WEBP")
    cls = ' class="flagged"' if flag else ""
    note = f'<br><span class="flag">⚠ {html.escape(flag)}</span>' if flag else ""
    return f'<figure{cls}><img src="{src}" width="{width}" alt=""><figcaption>{caption}{note}</figcaption></figure>'


def row(panels: Sequence[str]) -> str:
    return '<div class="row">' + "".join(panels) + "</div>"


def methods_row(explanations: Dict[str, object], image: int = 0, prompt: Union[int, str] = 0,
                labels: Optional[Dict[str, str]] = None) -> str:
    """The image, then each method's map for one (image, prompt) pair, empty maps marked with their reason."""
    first = next(iter(explanations.values()))
    b, t = pair_index(first, image, prompt)
    panels = [picture(to_numpy(first.images[b]), caption="input")]
    for name, exp in explanations.items():
        b, t = pair_index(exp, image, prompt)
        panels.append(picture(to_numpy(exp.images[b]), to_numpy(exp.saliency[b, t]),
                              caption=html.escape((labels or {}).get(name, name)), flag=flag_note(exp, b, t)))
    return row(panels)


def components_row(exp, image: int = 0, prompt: Union[int, str] = 0, max_components: int = 10,
                   scale: str = "own", labels: Optional[Sequence[str]] = None, spectrum: bool = True) -> str:
    """DecomCAM's components for one pair: each OSSM over the image with its weight w and contribution d, and
    the spectrum (variance share and weight). ``scale="own"``: each map min-max scaled on its own (its shape);
    ``"shared"``: w_k * OSSM_k on one scale for all (what each adds to the map: a weight-0 component is blank).
    ``labels``: an extra caption line per component (e.g. where its peak lies)."""
    b, t = pair_index(exp, image, prompt)
    pixels = to_numpy(exp.images[b])
    K = min(exp.n_components, max_components)
    maps = [to_numpy(exp.ossms[b, t, k]).astype(np.float32) for k in range(K)]
    if scale == "shared":
        maps = [m * max(float(exp.weights[b, t, k]), 0.0) for k, m in enumerate(maps)]
        top = max([float(m.max()) for m in maps] + [1e-12])
        maps = [np.clip(m / top, 0, 1) for m in maps]
    elif scale == "own":
        maps = [minmax_np(m) for m in maps]
    else:
        raise ValueError(f"scale must be 'own' or 'shared', got {scale!r}.")
    panels = []
    for k in range(K):
        w = float(exp.weights[b, t, k])
        cap = f"#{k + 1} · {term('weight w', 'w')}={w:.2f}"
        if exp.contributions is not None:
            cap += f" · {term('contribution d', 'd')}={float(exp.contributions[b, t, k]):+.3f}"
        if labels is not None and k < len(labels) and labels[k]:
            cap += f"<br>{labels[k]}"
        panels.append(picture(pixels, maps[k], caption=cap, width=112))
    return row(panels) + (row([spectrum_svg(exp, b, t)]) if spectrum else "")


def spectrum_svg(exp, b: int, t: int, width: int = 420, height: int = 140) -> str:
    """Bars: the variance share of each component; dots and line: its weight w (both on 0-1)."""
    share = np.clip(to_numpy(exp.explained_variance[b, t]).astype(float), 0, 1)
    w = np.clip(to_numpy(exp.weights[b, t]).astype(float), 0, 1)
    K = len(share)
    pad, bw = 28, (width - 40) / max(K, 1)
    y = lambda v: height - pad - v * (height - pad - 10)  # noqa: E731
    bars = "".join(f'<rect x="{30 + k * bw + 2:.1f}" y="{y(share[k]):.1f}" width="{bw - 4:.1f}" '
                   f'height="{height - pad - y(share[k]):.1f}" fill="#9aa5b1"/>' for k in range(K))
    pts = " ".join(f"{30 + (k + 0.5) * bw:.1f},{y(w[k]):.1f}" for k in range(K))
    dots = "".join(f'<circle cx="{30 + (k + 0.5) * bw:.1f}" cy="{y(w[k]):.1f}" r="3" fill="#d1495b"/>'
                   for k in range(K))
    ticks = "".join(f'<text x="{30 + (k + 0.5) * bw:.1f}" y="{height - 12}" font-size="10" text-anchor="middle">'
                    f"{k + 1}</text>" for k in range(K))
    axis = (f'<text x="2" y="{y(1) + 4:.1f}" font-size="10">1</text><text x="2" y="{y(0) + 4:.1f}" font-size="10">0'
            f'</text><line x1="28" x2="{width - 8}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#999"/>')
    svg = (f'<svg width="{width}" height="{height}" role="img">{axis}{bars}'
           f'<polyline points="{pts}" fill="none" stroke="#d1495b"/>{dots}{ticks}</svg>')
    cap = (f"{term('variance share')} (grey bars) and {term('weight w')} (red) of each component k")
    return f"<figure>{svg}<figcaption style='max-width:{width}px'>{cap}</figcaption></figure>"


def caveat_banner(explanations) -> str:
    """A red box at the top of a report when any map cannot mean anything (random weights, an image the model
    cannot read; see `viz.caveats`): the problem and the fix. '' when there is nothing to say."""
    from .caveats import explain_caveats
    exps = list(explanations.values()) if isinstance(explanations, dict) else list(explanations)
    msgs = list(dict.fromkeys(m for e in exps for m in explain_caveats(e)))
    if not msgs:
        return ""
    items = "".join(f"<li>{html.escape(m)}</li>" for m in msgs)
    return (f'<div class="caveat" role="alert"><b>⚠ These maps cannot mean anything.</b><ul>{items}</ul></div>')


def prompt_shading(tokens: Sequence[str], shares: Sequence[float], caption: str = "") -> str:
    """The prompt with each word shaded by its share of the score (red raises it, blue lowers it; the strongest
    word fully coloured), each share in the word's tooltip."""
    values = np.asarray(shares, dtype=float)
    top = float(np.nanmax(np.abs(values))) if values.size and np.isfinite(values).any() else 0.0
    words = []
    for tok, v in zip(tokens, values):
        a = 0.0 if top <= 0 or not np.isfinite(v) else min(abs(v) / top, 1.0)
        rgb = "209,73,91" if v > 0 else "46,134,193"
        words.append(f'<span title="{v:+.4f}" style="background:rgba({rgb},{a:.2f});padding:1px 3px;'
                     f'border-radius:3px">{html.escape(tok)}</span>')
    cap = caption or f"each {term('word share')} of the score"
    return f'<figure style="text-align:left"><p style="font-size:18px;margin:4px 0">{" ".join(words)}</p>' \
           f"<figcaption style='max-width:none'>{cap}</figcaption></figure>"


def section(title: str, *blocks: str, note: str = "") -> str:
    text = f'<p class="note">{note}</p>' if note else ""
    return f"<h2>{html.escape(title)}</h2>{text}" + "".join(blocks)


def page(title: str, blocks: Sequence[str], glossary: bool = True) -> str:
    body = "".join(blocks) + (glossary_html() if glossary else "")
    return PAGE.format(title=html.escape(title), body=body)


def write_page(path: Union[str, os.PathLike], title: str, blocks: List[str], glossary: bool = True) -> str:
    """Write a static report atomically; the folder must exist."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Cannot write the report: folder '{folder}' does not exist; create it first.")
    with atomic_write(path) as tmp:
        tmp.write_text(page(title, blocks, glossary), encoding="utf-8")
    return path
