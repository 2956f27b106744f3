"""The Explanation: plain data (tensors + the protocol record) that figures and widgets read."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import numpy as np
import torch

from .ops import atomic_write, minmax

FORMAT_VERSION = 1

# Array fields, with the shape each holds (B images, T prompts, K components, P channels, C all channels,
# h x w the tapped grid, H x W the input, D the embedding width).
ARRAY_FIELDS = {
    "saliency": "(B, T, H, W) in [0, 1]",
    "saliency_lowres": "(B, T, h, w) before upsampling and normalisation",
    "images": "(B, H, W, 3) uint8: the pixels that were explained",
    "base_score": "(B, T): s(x, t)",
    "ossms": "(B, T, K, H, W): ReLU(u_k sigma_k), upsampled",
    "ossms_lowres": "(B, T, K, h, w)",
    "u": "(B, T, K, h*w): orthonormal left singular vectors (spatial)",
    "v": "(B, T, K, P): right singular vectors (channel loadings over the kept channels)",
    "singular_values": "(B, T, K)",
    "explained_variance": "(B, T, K): share of the squared Frobenius norm of X",
    "weights": "(B, T, K): integration weights w_k",
    "contributions": "(B, T, K): d_k = s(x_k, t) - s(r, t)",
    "masked_scores": "(B, T, K): s(x_k, t)",
    "reference_score": "(B, T): s(r, t)",
    "embeddings": "(B, T, K, D): image embeddings of the masked inputs f(x_k)",
    "pooled": "(B, T, K, C): activations at the tap averaged under each OSSM",
    "channels": "(B, T, P): kept channel indices, by descending alpha",
    "alpha": "(B, T, C): Grad-CAM channel weights (mean gradient)",
    "gradcam_lowres": "(B, T, h, w): row sums of X, the map that orients the singular vectors",
    "reference_images": "(B, H, W, 3) uint8: the blurred reference r",
}


@dataclass
class Explanation:
    """Everything one call of a CAM method computed, for every (image, prompt) pair.

    Only `saliency`, `images`, `prompts`, `method` and `params` are always present; DecomCAM fills the rest.
    See `ARRAY_FIELDS` for the shape of each array. `flags` maps a condition (e.g.
    "no_positive_contribution") to a (B, T) bool tensor; `params` is the protocol record.
    """

    method: str
    prompts: List[str]
    saliency: torch.Tensor
    images: torch.Tensor
    params: Dict[str, Any] = field(default_factory=dict)
    flags: Dict[str, torch.Tensor] = field(default_factory=dict)
    saliency_lowres: Optional[torch.Tensor] = None
    base_score: Optional[torch.Tensor] = None
    ossms: Optional[torch.Tensor] = None
    ossms_lowres: Optional[torch.Tensor] = None
    u: Optional[torch.Tensor] = None
    v: Optional[torch.Tensor] = None
    singular_values: Optional[torch.Tensor] = None
    explained_variance: Optional[torch.Tensor] = None
    weights: Optional[torch.Tensor] = None
    contributions: Optional[torch.Tensor] = None
    masked_scores: Optional[torch.Tensor] = None
    reference_score: Optional[torch.Tensor] = None
    embeddings: Optional[torch.Tensor] = None
    pooled: Optional[torch.Tensor] = None
    channels: Optional[torch.Tensor] = None
    alpha: Optional[torch.Tensor] = None
    gradcam_lowres: Optional[torch.Tensor] = None
    reference_images: Optional[torch.Tensor] = None

    # ----------------------------------------------------------------- shape helpers
    @property
    def n_images(self) -> int:
        return self.saliency.shape[0]

    @property
    def n_prompts(self) -> int:
        return self.saliency.shape[1]

    @property
    def n_components(self) -> int:
        return 0 if self.ossms is None else self.ossms.shape[2]

    def __repr__(self) -> str:
        B, T, H, W = self.saliency.shape
        k = f", K={self.n_components}" if self.ossms is not None else ""
        raised = [n for n, f in self.flags.items() if bool(f.any())]
        fl = f", flags={raised}" if raised else ""
        return f"Explanation({self.method}, B={B}, T={T}{k}, {H}x{W}, prompts={self.prompts!r}{fl})"

    # ----------------------------------------------------------------- combining components
    def combine(self, components: Union[None, int, Iterable[int], Iterable[bool], torch.Tensor] = None,
                weighting: str = "integration") -> torch.Tensor:
        """Saliency (B, T, H, W) from a subset of components, normalised as the full saliency is.

        components: None (all), indices such as ``[0, 2]`` or ``range(3)``, or a boolean mask of length K.
        weighting: "integration" (the weights w_k, as in the saliency), "singular" (sigma_k, the
        no-integration ablation) or "uniform".
        ``combine()`` equals ``saliency``.
        """
        if self.ossms is None:
            raise ValueError(f"A {self.method} explanation has no components to combine; use DecomCAM.")
        select = self.component_mask(components)
        w = self.component_weights(weighting)
        return combine_ossms(self.ossms, w * select.to(w.dtype))

    def component_mask(self, components) -> torch.Tensor:
        K = self.n_components
        if components is None:
            return torch.ones(K, dtype=torch.bool)
        if isinstance(components, (int, np.integer)) and not isinstance(components, bool):
            components = [int(components)]
        sel = torch.as_tensor(list(components) if not isinstance(components, torch.Tensor) else components)
        if sel.dtype == torch.bool:
            if sel.shape != (K,):
                raise ValueError(f"A boolean component mask needs length K={K}, got shape {tuple(sel.shape)}.")
            return sel
        if sel.numel() == 0:
            return torch.zeros(K, dtype=torch.bool)
        sel = sel.long().flatten()
        if (sel < 0).any() or (sel >= K).any():
            raise IndexError(f"Component indices must lie in 0..{K - 1}; got {sel.tolist()}.")
        mask = torch.zeros(K, dtype=torch.bool)
        mask[sel] = True
        return mask

    def component_weights(self, weighting: str = "integration") -> torch.Tensor:
        if weighting == "integration":
            return self.weights
        if weighting == "singular":
            return self.singular_values
        if weighting == "uniform":
            return torch.ones_like(self.singular_values)
        raise ValueError(f"weighting must be 'integration', 'singular' or 'uniform', got {weighting!r}.")

    # ----------------------------------------------------------------- selection
    def select(self, image: int = 0, prompt: Union[int, str] = 0) -> "Explanation":
        """The explanation of one (image, prompt) pair, as a B=1, T=1 Explanation."""
        from .viz.pairs import pair_index
        b, t = pair_index(self, image, prompt)
        kw = {}
        for f in fields(self):
            val = getattr(self, f.name)
            if f.name in ("images", "reference_images") and val is not None:
                kw[f.name] = val[b:b + 1]
            elif isinstance(val, torch.Tensor):
                kw[f.name] = val[b:b + 1, t:t + 1]
            elif f.name == "flags":
                kw[f.name] = {k: v[b:b + 1, t:t + 1] for k, v in val.items()}
            elif f.name == "prompts":
                kw[f.name] = [self.prompts[t]]
            elif f.name == "params" and "inputs" in val:
                kw[f.name] = {**val, "inputs": val["inputs"][b:b + 1]}
            else:
                kw[f.name] = val
        return Explanation(**kw)

    def saliency_on_original(self, image: int = 0, prompt: Union[int, str] = 0) -> np.ndarray:
        """The map of one pair in the geometry of the image as it was given, (h, w) float32: the explained crop
        resized back onto its region of the image, NaN outside it (what the model did not see).

        Explanations of tensors (no original image) return the map at the explained size."""
        from .viz.pairs import pair_index
        b, t = pair_index(self, image, prompt)
        sal = self.saliency[b, t].float()
        inputs = self.params.get("inputs")
        if not inputs:
            return sal.numpy()
        (h, w), (top, left, bh, bw) = inputs[b]["size"], inputs[b]["box"]
        y0, x0 = int(round(top)), int(round(left))
        y1, x1 = min(h, int(round(top + bh))), min(w, int(round(left + bw)))
        out = np.full((int(h), int(w)), np.nan, np.float32)
        region = torch.nn.functional.interpolate(sal[None, None], size=(y1 - y0, x1 - x0), mode="bilinear",
                                                 align_corners=False)[0, 0]
        out[y0:y1, x0:x1] = region.clamp(0, 1).numpy()
        return out

    # ----------------------------------------------------------------- figures
    def figure(self, image: int = 0, prompt: Union[int, str] = 0, **kwargs):
        """A plotly figure of one pair: image + overlay, OSSM strip with weights, spectrum."""
        from .viz.explanation_figures import explanation_figure
        return explanation_figure(self, image=image, prompt=prompt, **kwargs)

    # ----------------------------------------------------------------- persistence
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write an .npz file (no pickles): every array plus the protocol record as JSON."""
        if Path(os.fspath(path)).suffix.lower() != ".npz":
            raise ValueError(f"exp.save writes a NumPy .npz archive of the explanation; name the file with .npz "
                             f"(got '{os.fspath(path)}'). For a picture of a map use exp.figure(...) or the report "
                             "of `decomviz explain ... --out report.html`.")
        arrays = {}
        for name in ["saliency", *ARRAY_FIELDS]:
            val = getattr(self, name)
            if val is not None:
                arrays[name] = val.detach().cpu().numpy()
        for name, val in self.flags.items():
            arrays[f"flag__{name}"] = val.detach().cpu().numpy()
        meta = {"format": FORMAT_VERSION, "method": self.method, "prompts": self.prompts, "params": self.params}
        arrays["__meta__"] = np.array(json.dumps(meta))
        with atomic_write(path, suffix=".npz") as tmp:
            np.savez_compressed(tmp, **arrays)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "Explanation":
        """Read a file written by `save`. Nothing in it is executed (no pickles), and every array is checked
        against the shapes of `ARRAY_FIELDS`: a file that is not an Explanation, or an inconsistent one, raises
        a ValueError that says what is wrong."""
        meta, arrays = _read_npz(path)
        _check_consistent(path, meta, arrays)
        kw = {name: torch.from_numpy(arrays[name]) for name in ["saliency", *ARRAY_FIELDS] if name in arrays}
        flags = {k[len("flag__"):]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("flag__")}
        return cls(method=meta["method"], prompts=list(meta["prompts"]), params=meta["params"], flags=flags, **kw)


def _not_explanation(path, why: str) -> ValueError:
    return ValueError(f"'{os.fspath(path)}' is not a decomviz Explanation file: {why}. Explanation files are written "
                      "by exp.save('name.npz').")


def _read_npz(path):
    """The meta record and the arrays of an .npz file, without unpickling anything."""
    import zipfile
    if Path(os.fspath(path)).exists() and not Path(os.fspath(path)).is_file():
        raise ValueError(f"'{os.fspath(path)}' is not a regular file (a folder, a pipe or a device); it is not opened.")
    try:
        with open(os.fspath(path), "rb") as f:
            magic = f.read(4)
    except OSError as err:
        raise ValueError(f"Cannot read '{os.fspath(path)}': {err.strerror or err}.") from None
    if magic[:2] != b"PK":
        raise _not_explanation(path, "it is not an .npz (zip) archive")
    _check_sizes(path)
    arrays: Dict[str, np.ndarray] = {}
    try:
        with np.load(os.fspath(path), allow_pickle=False) as data:
            names = list(data.files)
            for name in ("__meta__", "saliency"):
                if name not in names:
                    raise _not_explanation(path, f"it has no '{name}' entry")
            for name in names:
                try:
                    arrays[name] = np.array(data[name], copy=True)
                except ValueError:  # object arrays: never unpickled
                    raise _not_explanation(path, f"entry '{name}' holds Python objects, which decomviz never "
                                                 "loads") from None
    except ValueError:
        raise
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise _not_explanation(path, f"the archive is damaged ({type(err).__name__}: {err})") from None
    raw = arrays.pop("__meta__")
    try:
        meta = json.loads(str(raw[()])) if raw.ndim == 0 and raw.dtype.kind == "U" else None
    except (json.JSONDecodeError, RecursionError):  # not JSON, or nested too deep to be a record
        meta = None
    if not isinstance(meta, dict):
        raise _not_explanation(path, "its '__meta__' entry is not the JSON record save() writes")
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"'{os.fspath(path)}' has format {meta.get('format')!r}, this decomviz reads "
                         f"{FORMAT_VERSION}.")
    prompts = meta.get("prompts")
    if not isinstance(meta.get("method"), str) or not isinstance(meta.get("params"), dict) or \
            not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise _not_explanation(path, "its record lacks a method name, a params object or a list of prompts")
    return meta, arrays


#: An Explanation file may hold at most this much uncompressed, or 100 times its own size if that is more: a
#: crafted archive (a few MB inflating to GB) is refused before anything is inflated.
MAX_UNCOMPRESSED_BYTES = 256 << 20


def _check_sizes(path) -> None:
    """Every size an .npz declares, bounded before anything is allocated: the archive's uncompressed total, and
    each array's header shape against the bytes its entry holds."""
    import zipfile
    from numpy.lib import format as npf
    size = os.path.getsize(os.fspath(path))
    limit = max(MAX_UNCOMPRESSED_BYTES, 100 * size)
    try:
        with zipfile.ZipFile(os.fspath(path)) as z:
            infos = z.infolist()
            total = sum(i.file_size for i in infos)
            if total > limit:
                raise _not_explanation(path, f"its entries would take {total:,} bytes uncompressed from a file of "
                                             f"{size:,} bytes (more than {limit:,}); it is not inflated")
            for info in infos:
                with z.open(info) as f:
                    try:
                        version = npf.read_magic(f)
                        header = npf.read_array_header_1_0(f) if version == (1, 0) else npf.read_array_header_2_0(f)
                    except (ValueError, EOFError):
                        continue  # not an array: np.load says so
                    shape, _, dtype = header
                    count = int(np.prod(shape, dtype=object)) if len(shape) else 1
                    if dtype.itemsize and count * dtype.itemsize > info.file_size:
                        raise _not_explanation(path, f"entry '{info.filename}' declares a {tuple(shape)} {dtype} "
                                                     f"array, more than the {info.file_size:,} bytes it holds")
    except zipfile.BadZipFile as err:
        raise _not_explanation(path, f"the archive is damaged ({err})") from None


_UINT8_FIELDS = ("images", "reference_images")
_INT_FIELDS = ("channels",)


def _check_consistent(path, meta: Dict[str, Any], arrays: Dict[str, np.ndarray]) -> None:
    """Every array has the shape `ARRAY_FIELDS` gives it, with one value per symbol (B, T, K, ...) across
    fields, and a sensible dtype; T is the number of prompts."""
    sizes: Dict[str, int] = {"T": len(meta["prompts"])}

    def fail(name, why):
        raise ValueError(f"'{os.fspath(path)}' is an inconsistent Explanation: {name} {why}. The file was edited or "
                         "damaged; save the Explanation again.")

    specs = {"saliency": "(B, T, H, W)", **ARRAY_FIELDS}
    specs.update({k: "(B, T)" for k in arrays if k.startswith("flag__")})
    for name, value in arrays.items():
        if name not in specs:
            fail(name, "is not a field of an Explanation")
        want = specs[name][specs[name].index("(") + 1:specs[name].index(")")].split(", ")
        kind = value.dtype.kind
        if name.startswith("flag__"):
            ok = kind == "b"
        elif name in _UINT8_FIELDS:
            ok = value.dtype == np.uint8
        elif name in _INT_FIELDS:
            ok = kind in "iu"
        else:
            ok = kind == "f"
        if not ok:
            fail(name, f"has dtype {value.dtype}")
        if value.ndim != len(want):
            fail(name, f"has shape {value.shape}, expected {specs[name].split(')')[0]})")
        for sym, n in zip(want, value.shape):
            expected = int(sym) if sym.isdigit() else (sizes["h"] * sizes["w"] if sym == "h*w" and "h" in sizes
                                                        and "w" in sizes else sizes.setdefault(sym, n))
            if n != expected:
                fail(name, f"has shape {value.shape}: its {sym} is {n}, but other fields (or the {sizes['T']} "
                           f"prompts) make it {expected}")


def combine_ossms(ossms: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """L = minmax(ReLU(sum_k w_k OSSM_k)); ossms (..., K, H, W), weights (..., K)."""
    summed = torch.einsum("...khw,...k->...hw", ossms, weights.to(ossms.dtype))
    return minmax(summed.clamp_min(0))
