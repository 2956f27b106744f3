"""PartsWorld captions: phrases such as ``"a house with a red roof and a blue door"``, and their parser.

A caption is one phrase per object joined by connectives (``" next to "``, ``" and "``, ``" beside "``).
An object phrase is the article and class name, then ``with`` and its named parts, each as
``"<article> <colour> <part>"`` (``"a red roof"``) or, for parts whose name is a plural,
``"<colour> <part>"`` (``"black wheels"``).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from .palette import PALETTE
from .shapes import PARTS

__all__ = ["CONNECTIVES", "PLURAL_PARTS", "article", "join_phrases", "object_phrase", "parse_caption",
           "part_phrase"]

#: part names that are plurals: their phrase takes no article ("black wheels", not "a black wheels")
PLURAL_PARTS = frozenset({"wheels", "lights", "fruit", "fins", "petals", "spots", "legs", "arms"})
#: the words that join object phrases into a caption
CONNECTIVES: Tuple[str, ...] = (" next to ", " and ", " beside ")


def article(word: str) -> str:
    """The indefinite article for `word`: ``"an"`` before a vowel, else ``"a"``.

    Parameters
    ----------
    word : str
        A non-empty, lower-case word (a class or colour name).

    Returns
    -------
    str
        ``"a"`` or ``"an"``.
    """
    return "an" if word[0] in "aeiou" else "a"


def part_phrase(part: str, color: str) -> str:
    """``"a red roof"``, ``"an orange cabin"`` or, for a part in :data:`PLURAL_PARTS`, ``"black wheels"``.

    Parameters
    ----------
    part : str
        Part name.
    color : str
        Colour name.

    Returns
    -------
    str
        The phrase naming the part and its colour.
    """
    if part in PLURAL_PARTS:
        return f"{color} {part}"
    return f"{article(color)} {color} {part}"


def object_phrase(label: str, colors: Dict[str, str]) -> str:
    """``"a house with a red roof and a blue door"`` (parts in the given order; none: ``"a house"``).

    Parameters
    ----------
    label : str
        Class name.
    colors : dict of str to str
        Part name -> colour name of the parts to name, in the order to name them.

    Returns
    -------
    str
        The object phrase.
    """
    head = f"{article(label)} {label}"
    if not colors:
        return head
    return head + " with " + " and ".join(part_phrase(p, c) for p, c in colors.items())


def join_phrases(phrases: Sequence[str], connectives: Sequence[str]) -> str:
    """Join object phrases into a caption: ``phrases[0] + connectives[0] + phrases[1] + ...``.

    Parameters
    ----------
    phrases : sequence of str
        One phrase per object, length K.
    connectives : sequence of str
        At least K - 1 connectives; ``connectives[k]`` comes before ``phrases[k + 1]``.

    Returns
    -------
    str
        The caption; ``""`` when there are no phrases.
    """
    if not phrases:
        return ""
    caption = phrases[0]
    for conn, ph in zip(connectives, phrases[1:]):
        caption += conn + ph
    return caption


def parse_caption(caption: str, classes: Optional[Dict[str, Sequence[str]]] = None,
                  colors: Optional[Sequence[str]] = None) -> List[Tuple[str, Dict[str, str]]]:
    """Turn a PartsWorld caption back into ``[(class, {part: colour}), ...]`` in caption order.

    An object starts at "a"/"an" + class name; "colour part" pairs after it belong to it. Other words
    (with, and, next to, beside, commas) are connectives.

    Parameters
    ----------
    caption : str
        The caption.
    classes : dict of str to sequence of str, optional
        Class name -> its part names (default :data:`PARTS`).
    colors : sequence of str, optional
        The colour names (default: those of :data:`PALETTE`).

    Returns
    -------
    list of (str, dict of str to str)
        One ``(class, {part: colour})`` per object, in caption order.

    Raises
    ------
    ValueError
        A colour comes before any object, or is followed by a word that is not a part of the current
        object.
    """
    parts = PARTS if classes is None else {k: list(v) for k, v in classes.items()}
    cols = set(PALETTE if colors is None else colors)
    toks = caption.lower().replace(",", " ").replace(".", " ").split()
    out: List[Tuple[str, Dict[str, str]]] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t in parts and i > 0 and toks[i - 1] in ("a", "an"):
            out.append((t, {}))
        elif t in cols:
            if not out:
                raise ValueError(f"colour {t!r} before any object in caption {caption!r}")
            cls, attrs = out[-1]
            if i + 1 >= len(toks) or toks[i + 1] not in parts[cls]:
                nxt = toks[i + 1] if i + 1 < len(toks) else "<end>"
                raise ValueError(f"{nxt!r} after colour {t!r} is not a part of a {cls} in {caption!r}")
            attrs[toks[i + 1]] = t
            i += 1
        i += 1
    return out
