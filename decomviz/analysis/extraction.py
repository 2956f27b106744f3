"""Dataset-scale extraction: DecomCAM over a dataset, one row per (image, prompt, component), to sharded Parquet.

`explain_batch` is a pure function of (cam, items, prompts) -> columns, so any engine can map it over batches;
`extract` only streams items through it and writes shards atomically (temporary name, then rename), with a
manifest that makes a rerun resume after the last complete shard. Each shard's record holds its checksum and a
fingerprint of its inputs (file names, sizes, times): a rerun re-extracts every shard whose file is missing or
damaged or whose images changed, so that the bank always equals a fresh extraction of the dataset as it is.
"""
from __future__ import annotations

import errno
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .._version import __version__
from ..images import resize_center_crop
from ..methods.decomcam import DecomCAM
from ..ops import atomic_write
from .bank import OSSMBank
from .datasets import Item, as_items, check_templates, fingerprint, resolve_prompts
from .schema import FORMAT_VERSION, MANIFEST, VECTOR_COLUMNS
from .shards import read_manifest, sha256_file, shard_name, shard_problem


def _gt_masks(item: Item, vocabulary: Sequence[str], size) -> Optional[np.ndarray]:
    """Ground-truth part masks (V, H, W) at the explained crop, or None without ground truth."""
    if not vocabulary or not item.parts:
        return None
    H, W = size
    out = np.zeros((len(vocabulary), H, W), bool)
    for v, key in enumerate(vocabulary):
        mask = item.parts.get(key)
        if mask is None:
            continue
        if mask.shape != (H, W):
            im = Image.fromarray(mask.astype(np.uint8) * 255)
            mask = resize_center_crop(im, (H, W), Image.NEAREST) > 127
        out[v] = mask
    return out


SCALAR_COLUMNS = {"singular_value": "singular_values", "explained_variance": "explained_variance",
                  "weight": "weights", "contribution": "contributions", "masked_score": "masked_scores"}


def explain_batch(cam: DecomCAM, items: Sequence[Item], prompts, part_vocabulary: Sequence[str] = (),
                  batch_size: Optional[int] = None,
                  progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, Any]:
    """Explain readable items; return columns with one entry per (image, prompt, component).

    Pairs are grouped by prompt, so that images with different prompt lists (a template filled with each
    scene's labels) still share engine calls; each call explains up to `batch_size` images against one prompt.
    Rows come back ordered by (image, prompt, component). `progress(done, total)` is called with pair counts.
    Pure: no I/O, no state.
    """
    by_prompt: Dict[str, List[tuple]] = {}
    for pos, item in enumerate(items):
        for t, prompt in enumerate(resolve_prompts(item, prompts)):
            by_prompt.setdefault(prompt, []).append((pos, t))
    total = sum(len(v) for v in by_prompt.values())
    step = batch_size or max(total, 1)
    batches, done = [], 0
    for prompt, pairs in by_prompt.items():
        for lo in range(0, len(pairs), step):
            chunk = pairs[lo:lo + step]
            group = [items[pos] for pos, _ in chunk]
            exp = cam([it.image for it in group], [prompt])
            batches.append(_columns(exp, group, [t for _, t in chunk], prompt, part_vocabulary))
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return _sort_rows(_concat(batches))


def _columns(exp, group: Sequence[Item], prompt_index: Sequence[int], prompt: str,
             part_vocabulary: Sequence[str]) -> Dict[str, Any]:
    """Rows of one single-prompt Explanation of `group`: (image, component) in order."""
    B, _, K = exp.weights.shape
    n = B * K
    b_of = np.repeat(np.arange(B), K)
    cols: Dict[str, Any] = {
        "image_index": [group[b].index for b in b_of], "image_id": [group[b].id for b in b_of],
        "labels": ["|".join(group[b].labels) for b in b_of], "prompt": [prompt] * n,
        "prompt_index": [int(prompt_index[b]) for b in b_of], "component": np.tile(np.arange(K), B).tolist()}
    for col, field in SCALAR_COLUMNS.items():
        cols[col] = getattr(exp, field).reshape(n).tolist()
    for col in ("base_score", "reference_score"):
        cols[col] = getattr(exp, col)[:, :, None].expand(B, 1, K).reshape(n).tolist()
    loading = torch.zeros(B, 1, K, exp.alpha.shape[-1])
    loading.scatter_(3, exp.channels[:, :, None, :].expand(B, 1, K, -1), exp.v)
    cols["ossm"] = exp.ossms_lowres.reshape(n, -1).numpy()
    cols["embedding"] = exp.embeddings.reshape(n, -1).numpy()
    cols["pooled"] = exp.pooled.reshape(n, -1).numpy()
    cols["loading"] = loading.reshape(n, -1).numpy()
    cols["part_overlap"] = _part_overlap(exp, group, part_vocabulary).reshape(n, -1)
    cols["grid"] = list(exp.params["grid"])
    return cols


def _sort_rows(columns: Dict[str, Any]) -> Dict[str, Any]:
    order = np.lexsort((np.asarray(columns["component"]), np.asarray(columns["prompt_index"]),
                        np.asarray(columns["image_index"])))
    out: Dict[str, Any] = {}
    for k, v in columns.items():
        if k == "grid":
            out[k] = v
        elif isinstance(v, np.ndarray):
            out[k] = v[order] if len(v) == len(order) else v
        else:
            out[k] = [v[i] for i in order]
    return out


def _part_overlap(exp, group: Sequence[Item], vocabulary: Sequence[str]) -> np.ndarray:
    """Energy share of each full-resolution OSSM inside each ground-truth part, (B, T, K, V); V = 0 without."""
    B, T, K, H, W = exp.ossms.shape
    out = np.zeros((B, T, K, len(vocabulary) if any(it.parts for it in group) else 0), np.float32)
    if out.shape[-1] == 0:
        return out
    for b, item in enumerate(group):
        masks = _gt_masks(item, vocabulary, (H, W))
        if masks is None:
            continue
        ossm = exp.ossms[b]
        energy = ossm.sum(dim=(-2, -1))[..., None]  # (T, K, 1)
        inside = torch.einsum("tkhw,vhw->tkv", ossm, torch.from_numpy(masks).float())
        out[b] = torch.where(energy > 0, inside / energy.clamp_min(1e-12), torch.zeros_like(inside)).numpy()
    return out


def _to_table(columns: Dict[str, Any]):
    import pyarrow as pa
    arrays, names = [], []
    for name, val in columns.items():
        if name == "grid":
            continue
        if name in VECTOR_COLUMNS:
            width = val.shape[1] if val.ndim == 2 else 0
            if width == 0:  # e.g. no ground-truth parts: no column
                continue
            flat = pa.array(val.reshape(-1), type=pa.float32())
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, width))
        else:
            arrays.append(pa.array(val))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def _empty_columns() -> Dict[str, Any]:
    out = {k: [] for k in ("image_index", "image_id", "labels", "prompt", "prompt_index", "component",
                           "singular_value", "explained_variance", "weight", "contribution", "masked_score",
                           "base_score", "reference_score")}
    return out


def _concat(batches: List[Dict[str, Any]]) -> Dict[str, Any]:
    out = _empty_columns()
    vectors: Dict[str, List[np.ndarray]] = {k: [] for k in VECTOR_COLUMNS}
    out["grid"] = next((c["grid"] for c in batches if "grid" in c), None)
    for cols in batches:
        for k in out:
            if k != "grid":
                out[k] += list(cols[k])
        for k in VECTOR_COLUMNS:
            if len(cols[k]):
                vectors[k].append(cols[k])
    for k in VECTOR_COLUMNS:
        out[k] = np.concatenate(vectors[k]) if vectors[k] else np.zeros((0, 0), np.float32)
    out["image_index"] = np.asarray(out["image_index"], np.int64)
    return out


def _atomic_write_json(path: Path, data: dict) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def _protocol(cam: DecomCAM) -> Dict[str, Any]:
    import open_clip
    return {"method": cam.method, **cam.get_params(), "model": cam.model.name, "model_source": cam.model.source,
            "image_size": list(cam.model.image_size),
            "versions": {"decomviz": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__}}


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OSError(f"Cannot write the bank to '{out}': {err.strerror or err}. Choose a writable folder "
                      "with out=...") from None


def extract(cam: DecomCAM, dataset, prompts=None, out="bank", batch_size: int = 16, shard_size: int = 256,
            num_workers: int = 0, progress: bool = True, overwrite: bool = False,
            on_shard: Optional[Callable[[int], None]] = None):
    """Run DecomCAM over a dataset and store one row per (image, prompt, component) in sharded Parquet.

    dataset: a dv.PartsWorld, an image folder (sub-folder names are the classes), or a CSV with `path` and
    optional `prompt` / `label` columns. prompts: a list, or a template such as "a photo of a {}" filled with
    each image's labels (CSV rows may carry their own). A rerun with the same arguments resumes: shards whose
    file is intact and whose images are unchanged (names, sizes, modification times) are kept, the others are
    (re-)extracted with a warning that names them. Unreadable images are recorded as failed and skipped.
    Returns the `OSSMBank`.
    """
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm

    if not isinstance(cam, DecomCAM) or cam.integration != "pixel":
        raise TypeError("extract needs a dv.DecomCAM with pixel integration (it stores OSSMs, weights and the "
                        "masked-input embeddings).")
    for name, val in (("batch_size", batch_size), ("shard_size", shard_size)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}.")
    check_templates(prompts)
    items = as_items(dataset)
    out = Path(out)
    _check_writable(out)
    manifest_path = out / MANIFEST
    header = {"format": FORMAT_VERSION, "protocol": _protocol(cam), "dataset": items.describe(),
              "prompts": prompts, "shard_size": shard_size,
              "part_vocabulary": list(getattr(items, "part_vocabulary", []))}
    header = json.loads(json.dumps(header))  # as the manifest holds it (tuples become lists), for comparison
    manifest = {**header, "shards": {}, "complete": False}
    if manifest_path.exists() and not overwrite:
        manifest = _resumable(out, header)
    elif manifest_path.exists() and overwrite:
        for f in out.glob("shard-*.parquet"):
            f.unlink()
    manifest["n_items"] = len(items)
    n_shards = -(-len(items) // shard_size)
    ranges = {s: (s * shard_size, min(len(items), (s + 1) * shard_size)) for s in range(n_shards)}
    inputs = {s: fingerprint(items, lo, hi) for s, (lo, hi) in ranges.items()}
    pending = _reconcile(out, manifest, ranges, inputs)
    if pending:
        manifest["complete"] = False
    _atomic_write_json(manifest_path, manifest)

    done_images = len(items) - sum(hi - lo for s, (lo, hi) in ranges.items() if s in pending)
    bar = tqdm(total=len(items), initial=done_images, unit="img", desc="extract", disable=not progress)
    images_done = _ImageProgress(bar)
    try:
        for s in pending:
            lo, hi = ranges[s]
            loader = DataLoader(Subset(items, range(lo, hi)), batch_size=batch_size, collate_fn=list,
                                num_workers=num_workers)
            # a shard's images are held together (shard_size bounds memory) so that pairs sharing a prompt,
            # wherever they are in the shard, go through the engine in one call
            good, failed = [], []
            for batch in loader:
                good += [it for it in batch if it.error is None]
                failed += [{"id": it.id, "index": it.index, "error": it.error} for it in batch if it.error]
            images_done.add(len(failed))
            columns = explain_batch(cam, good, prompts, header["part_vocabulary"], batch_size=batch_size,
                                    progress=images_done.pairs_of(len(good))) if good else _concat([])
            name = shard_name(s)
            digest, size = _write_shard(out / name, columns)
            manifest["shards"][f"{s:05d}"] = {"file": name, "first": lo, "images": hi - lo,
                                              "rows": int(len(columns["image_index"])), "failed": failed,
                                              "grid": columns["grid"], "sha256": digest, "bytes": size,
                                              "inputs": inputs[s]}
            _atomic_write_json(manifest_path, manifest)
            if on_shard is not None:
                on_shard(s)
        manifest["complete"] = True
        _atomic_write_json(manifest_path, manifest)
    finally:
        bar.close()
    return OSSMBank(out)


def _resumable(out: Path, header: Dict[str, Any]) -> Dict[str, Any]:
    """The manifest already in ``out``, if this extraction may resume it; else a ValueError saying why."""
    old = read_manifest(out)
    if old.get("format") != FORMAT_VERSION:
        raise ValueError(f"'{out}' holds a bank of format {old.get('format')} (an older decomviz, without shard "
                         "checksums); use another out= folder, or overwrite=True to extract it again.")
    diff = [k for k in header if old.get(k) != header[k]]
    if diff:
        raise ValueError(f"'{out}' holds a bank made with different {', '.join(diff)}; use another out= "
                         "folder, or overwrite=True to start again.")
    return old


def _reconcile(out: Path, manifest: Dict[str, Any], ranges: Dict[int, tuple], inputs: Dict[int, Any]) -> List[int]:
    """Drop the records of shards that cannot be kept (warning which and why) and of shards past the end;
    return the shards to extract, in order."""
    shards = manifest["shards"]
    for key in [k for k in shards if not k.isdigit() or int(k) not in ranges]:  # the dataset shrank
        stale = out / shard_name(int(key)) if key.isdigit() else None
        del shards[key]
        if stale is not None and stale.exists():
            stale.unlink()
    pending, notes = [], []
    for s, (lo, hi) in ranges.items():
        rec = shards.get(f"{s:05d}")
        if rec is None:
            pending.append(s)
            continue
        why = None
        if rec.get("file") != shard_name(s) or rec.get("first") != lo or rec.get("images") != hi - lo:
            why = "its record does not match the shard's place in the dataset"
        elif rec.get("inputs") != inputs[s]:
            why = "its images changed since it was written (files renamed, added, removed or edited)"
        else:
            why = shard_problem(out, rec)
        if why:
            notes.append(f"{shard_name(s)} (images {lo}-{hi - 1}): {why}")
            del shards[f"{s:05d}"]
            pending.append(s)
    if notes:
        warnings.warn(f"Re-extracting {len(notes)} shard(s) of '{out}': " + "; ".join(notes[:10])
                      + ("; ..." if len(notes) > 10 else ""), stacklevel=3)
    return pending


class _ImageProgress:
    """The extraction's bar counts images; within a shard, the engine reports pairs."""

    def __init__(self, bar):
        self.bar, self.done, self.start = bar, 0, time.perf_counter()

    def add(self, n_images: int) -> None:
        self.bar.update(n_images)
        self.done += n_images
        self.bar.set_postfix(img_per_s=f"{self.done / max(time.perf_counter() - self.start, 1e-9):.1f}")

    def pairs_of(self, n_images: int) -> Callable[[int, int], None]:
        """A ``progress(done_pairs, total_pairs)`` callback for a shard of ``n_images`` images."""
        shown = 0

        def advance(done_pairs: int, total_pairs: int) -> None:
            nonlocal shown
            now = n_images * done_pairs // total_pairs
            self.add(now - shown)
            shown = now
        return advance


def _write_shard(path: Path, columns: Dict[str, Any]) -> tuple:
    """Write a shard atomically; return its SHA-256 and size, taken from the file before it is renamed."""
    import pyarrow.parquet as pq
    try:
        with atomic_write(path) as tmp:
            pq.write_table(_to_table(columns), tmp)
            digest, size = sha256_file(tmp), os.path.getsize(tmp)
        return digest, size
    except OSError as err:
        reason = "the disk is full" if err.errno == errno.ENOSPC else (err.strerror or str(err))
        raise OSError(err.errno, f"Writing {path.name} failed: {reason}. The shards completed so far are intact; "
                                 "free space (or choose another out=) and rerun to resume.") from None
