"""What `decomviz explain` reads and writes besides the report: image files and folders in, PNG overlays out."""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Sequence

from ..data.items import IMAGE_SUFFIXES


def expand_images(paths: Sequence[str]) -> List[str]:
    """Image files as given, and the image files of each folder given (sorted, sub-folders included)."""
    out: List[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"The folder '{p}' holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}).")
            out.extend(found)
        else:
            out.append(str(p))
    return out


def output_kind(out: str) -> str:
    """"png" for a folder (a path ending in /, an existing folder or a name without suffix), else "html" or "npz"."""
    path = Path(out)
    if out.endswith(("/", "\\")) or path.is_dir() or not path.suffix:
        return "png"
    if path.suffix in (".html", ".npz"):
        return path.suffix[1:]
    raise ValueError(f"--out must be a folder (dir/: one PNG overlay per image and prompt), a .html report or a "
                     f".npz Explanation; got '{out}'.")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:60] or "prompt"


def overlay_names(images: Sequence[str], prompts: Sequence[str]) -> List[List[str]]:
    """The PNG file name of each (image, prompt): IMAGE-STEM_PROMPT.png, numbered where two stems meet."""
    stems = [Path(p).stem for p in images]
    numbered = len(set(stems)) < len(stems)
    return [[(f"{b:03d}-" if numbered else "") + f"{stem}_{_slug(t)}.png" for t in prompts]
            for b, stem in enumerate(stems)]


def write_overlays(folder: Path, images: Sequence[str], explanation) -> List[Path]:
    """One PNG per (image, prompt): the map over the photo as given (`Explanation.saliency_on_original`)."""
    from ..viz.images import overlay
    folder.mkdir(exist_ok=True)
    written = []
    for b, names in enumerate(overlay_names(images, explanation.prompts)):
        for t, name in enumerate(names):
            overlay(images[b], explanation.saliency_on_original(b, t)).save(folder / name)
            written.append(folder / name)
    return written
