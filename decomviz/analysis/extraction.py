"""Dataset-scale extraction: DecomCAM over a dataset, one row per (image, prompt, component), to Parquet.

Two engines share `Extractor` (a batch of images -> a table in the bank schema). The local engine (here) streams
items through it shard by shard and writes each shard atomically (temporary name, then rename), with a manifest
that makes a rerun resume: each shard's record holds its checksum and a fingerprint of its inputs (file names,
sizes, times), so a rerun re-extracts every shard whose file is missing or damaged or whose images changed, and
the bank always equals a fresh extraction of the dataset as it is. The Ray engine is in `ray_engine.py`.
"""
from __future__ import annotations

import errno
import json
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..methods.decomcam import DecomCAM
from ..ops import atomic_write
from .bank import OSSMBank
from .datasets import as_items, check_templates, comparable_dataset, fingerprint
from .extractor import Extractor, comparable_protocol, explain_batch, protocol_of
from .folder import (WriterLock, clean_leftovers, new_bank_id, old_manifest, other_files, probe_name, ray_files,
                     refuse_other_files, remove_own)
from .schema import FORMAT_VERSION, MANIFEST
from .shards import RAY_LEDGER, BankError, own_files, read_manifest, sha256_file, shard_name, shard_problem

ENGINES = ("local", "ray")


def _atomic_write_json(path: Path, data: dict) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / probe_name()  # unique: two writers starting together must not remove each other's
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OSError(f"Cannot write the bank to '{out}': {err.strerror or err}. Choose a writable folder "
                      "with out=...") from None


def extract(cam: DecomCAM, dataset, prompts=None, out="bank", batch_size: int = 16, shard_size: int = 256,
            num_workers: int = 0, progress: bool = True, overwrite: bool = False,
            on_shard: Optional[Callable[[int], None]] = None, engine: str = "local", address: Optional[str] = None,
            num_actors: Optional[int] = None, num_gpus: Optional[float] = None, num_cpus: Optional[float] = None,
            allow_other_files: bool = False, wait: bool = False):
    """Run DecomCAM over a dataset and store one row per (image, prompt, component) in Parquet.

    dataset: a dv.PartsWorld, an image folder (sub-folder names are the classes), a CSV with `path` and
    optional `prompt` / `label` columns, a `dv.datasets` loader (COCOParts, MaskFolder) or any dataset of
    `dv.datasets.Item`s (docs/datasets.md). prompts: a list, or templates filled per image: "a photo of a {class}"
    (or "{}") with each of its labels, "the {part} of a {class}" with each part it shows (CSV rows may carry their
    own). Unreadable images and broken annotations become error rows (`bank.failed`).

    engine="local": shards of `shard_size` images with a manifest; a rerun with the same arguments resumes:
    shards whose file is intact and whose images are unchanged (names, sizes, modification times) are kept, the
    others are (re-)extracted with a warning that names them. engine="ray": Ray Data (`address` of a cluster,
    else a local Ray), `num_actors` model replicas with `num_gpus` GPUs and `num_cpus` CPUs (torch threads)
    each; a rerun skips the image ids already written. `batch_size`: images per engine call. Returns the `OSSMBank`.

    The folder: a bank reads, replaces and deletes only the files it wrote (the manifest, or the Ray engine's
    ledger, lists them); `overwrite=True` removes exactly those. A folder that holds other files is refused for a
    new bank unless `allow_other_files=True`. One writer per folder: a second extraction into it is refused at
    once with a message naming the first, or waits for it with `wait=True`.
    """
    if not isinstance(cam, DecomCAM) or cam.integration != "pixel":
        raise TypeError("extract needs a dv.DecomCAM with pixel integration (it stores OSSMs, weights and the "
                        "masked-input embeddings).")
    for name, val in (("batch_size", batch_size), ("shard_size", shard_size)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}.")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}.")
    check_templates(prompts)
    items = as_items(dataset)
    out = Path(out)
    if engine == "ray":
        if on_shard is not None or num_workers:
            raise ValueError("on_shard and num_workers are options of engine='local' (Ray reads the images in its "
                             "actors and writes files of its own).")
    elif any(v is not None for v in (address, num_actors, num_gpus, num_cpus)):
        raise ValueError("address, num_actors, num_gpus and num_cpus are options of engine='ray'.")
    _check_writable(out)
    with WriterLock(out, wait=wait):
        clean_leftovers(out)
        if engine == "ray":
            from .ray_engine import extract_ray
            bank = extract_ray(cam, items, prompts, out, batch_size=batch_size, overwrite=overwrite,
                               address=address, num_actors=num_actors, num_gpus=num_gpus, num_cpus=num_cpus,
                               progress=progress, allow_other_files=allow_other_files)
        else:
            bank = _extract_local(cam, items, prompts, out, batch_size, shard_size, num_workers, progress,
                                  overwrite, on_shard, allow_other_files)
    if bank.failed and bank.n_images == 0:
        warnings.warn(f"Every image of the extraction into '{out}' failed ({len(bank.failed)}); the bank holds no "
                      f"component. The first reason: {bank.failed[0]['error']} (all of them: bank.failed).",
                      stacklevel=2)
    return bank


def _extract_local(cam, items, prompts, out: Path, batch_size, shard_size, num_workers, progress, overwrite,
                   on_shard, allow_other_files=False):
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm

    manifest_path = out / MANIFEST
    header = {"format": FORMAT_VERSION, "protocol": protocol_of(cam), "dataset": items.describe(),
              "prompts": prompts, "shard_size": shard_size,
              "part_vocabulary": list(getattr(items, "part_vocabulary", []))}
    header = json.loads(json.dumps(header))  # as the manifest holds it (tuples become lists), for comparison
    manifest = {**header, "shards": {}, "complete": False, "files": [], "generation": 1, "bank_id": new_bank_id()}
    replacing = (out / RAY_LEDGER).exists()  # a Ray bank, which overwrite=True replaces
    if replacing:
        if not overwrite:
            raise ValueError(f"'{out}' holds a bank of the Ray engine ({RAY_LEDGER}); resume it with engine='ray', "
                             "or use another out= folder, or overwrite=True.")
        remove_own(out, ray_files(out))  # exactly the Ray bank's own files, then its ledger
        (out / RAY_LEDGER).unlink()
        manifest["generation"] = 2  # a reader of the Ray bank sees its ledger gone
    owned: set = set()
    if manifest_path.exists() and not overwrite:
        manifest = _resumable(out, header)
        owned = own_files(manifest)
    elif manifest_path.exists():  # overwrite: exactly the files the old bank wrote go
        old = old_manifest(out)
        manifest["generation"] = int(old.get("generation", 0)) + 1
        manifest["files"] = sorted(own_files(old))  # still listed: a run stopped here removes them next time
        _atomic_write_json(manifest_path, manifest)  # readers of the old bank now see it was rewritten
        remove_own(out, own_files(old))
        owned = set(manifest["files"])
    else:  # a new bank
        others = other_files(out)
        if others and not (allow_other_files or replacing):  # replacing a Ray bank: it shared the folder already
            refuse_other_files(out, others)
    extractor = Extractor(cam, prompts, part_vocabulary=header["part_vocabulary"], images_per_call=batch_size)
    manifest["n_items"] = len(items)
    n_shards = -(-len(items) // shard_size)
    ranges = {s: (s * shard_size, min(len(items), (s + 1) * shard_size)) for s in range(n_shards)}
    inputs = {s: fingerprint(items, lo, hi) for s, (lo, hi) in ranges.items()}
    planned = [shard_name(s) for s in range(n_shards)]
    foreign = [n for n in planned if n not in owned and (out / n).exists()]
    if foreign:
        raise BankError(f"'{out}' holds {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}, which this "
                        "bank did not write (its manifest does not list them), under the names of its shards; they "
                        "are not replaced. Move them away, or use another out= folder.")
    pending, removed = _reconcile(out, manifest, ranges, inputs)
    if removed or any((out / shard_name(s)).exists() for s in pending):
        manifest["generation"] = int(manifest.get("generation", 0)) + 1  # files a reader may hold change
    manifest["files"] = sorted(set(manifest.get("files") or []) | set(planned) | owned)
    if pending:
        manifest["complete"] = False
    _atomic_write_json(manifest_path, manifest)

    done_images = len(items) - sum(hi - lo for s, (lo, hi) in ranges.items() if s in pending)
    bar = tqdm(total=len(items), initial=done_images, unit="img", desc="extract", disable=not progress)
    images_done = _ImageProgress(bar)
    with _held_warnings(), bar:
        for s in pending:
            lo, hi = ranges[s]
            loader = DataLoader(Subset(items, range(lo, hi)), batch_size=batch_size, collate_fn=list,
                                num_workers=num_workers)
            # a shard's images are held together (shard_size bounds memory) so that pairs sharing a prompt,
            # wherever they are in the shard, go through the engine in one call
            shard_items = [it for batch in loader for it in batch]
            unreadable = sum(it.error is not None for it in shard_items)
            images_done.add(unreadable)
            table = extractor.explain_items(shard_items, progress=images_done.pairs_of(len(shard_items) - unreadable))
            failed = [{"id": it.id, "index": it.index, "error": it.error} for it in shard_items if it.error]
            name = shard_name(s)
            digest, size = _write_shard(out / name, table)
            manifest["shards"][f"{s:05d}"] = {"file": name, "first": lo, "images": hi - lo, "rows": table.num_rows,
                                              "failed": failed, "grid": _grid_of(table), "sha256": digest,
                                              "bytes": size, "inputs": inputs[s]}
            _atomic_write_json(manifest_path, manifest)
            if on_shard is not None:
                on_shard(s)
        manifest["complete"] = True
        _atomic_write_json(manifest_path, manifest)
    return OSSMBank(out)


@contextmanager
def _held_warnings():
    """Hold the warnings of the block (the engine's, e.g. a pair whose components restore nothing) and give them
    once when it ends, grouped, so that they neither break a progress bar nor get lost, also on an error."""
    held: list = []
    try:
        with warnings.catch_warnings(record=True) as held:
            warnings.simplefilter("always")
            yield
    finally:
        _reissue(held)


def _reissue(held: list) -> None:
    """The warnings held during an extraction, once per distinct message, with how often each came."""
    counts: Dict[tuple, int] = {}
    for w in held:
        key = (w.category, str(w.message))
        counts[key] = counts.get(key, 0) + 1
    for (category, message), n in counts.items():
        warnings.warn(message + (f" [{n} times during this extraction]" if n > 1 else ""), category, stacklevel=3)


def _grid_of(table) -> Optional[List[int]]:
    """[h, w] of the table's first explained row, or None when it has none."""
    import pyarrow.compute as pc
    ok = table.filter(pc.is_null(table.column("error"))).slice(0, 1)
    return [int(ok.column("grid_h")[0].as_py()), int(ok.column("grid_w")[0].as_py())] if ok.num_rows else None


def _resumable(out: Path, header: Dict[str, Any]) -> Dict[str, Any]:
    """The manifest already in ``out``, if this extraction may resume it; else a ValueError saying why."""
    old = read_manifest(out)
    if old.get("format") != FORMAT_VERSION:
        raise ValueError(f"'{out}' holds a bank of format {old.get('format')} (written by an older decomviz; "
                         f"this one writes format {FORMAT_VERSION}): it can be read but not resumed: use another out= "
                         "folder, or overwrite=True to extract it again.")
    same = {"dataset": lambda a, b: comparable_dataset(a) == comparable_dataset(b),
            "protocol": lambda a, b: comparable_protocol(a) == comparable_protocol(b)}
    diff = [k for k in header if not same.get(k, lambda a, b: a == b)(old.get(k), header[k])]
    if diff:
        raise ValueError(f"'{out}' holds a bank made with different {', '.join(diff)}; use another out= "
                         "folder, or overwrite=True to start again.")
    return old


def _reconcile(out: Path, manifest: Dict[str, Any], ranges: Dict[int, tuple], inputs: Dict[int, Any]):
    """Drop the records of shards that cannot be kept (warning which and why) and of shards past the end
    (removing their files: the bank's own); return the shards to extract, in order, and whether a file was
    removed."""
    shards = manifest["shards"]
    removed = False
    for key in [k for k in shards if not k.isdigit() or int(k) not in ranges]:  # the dataset shrank
        stale = out / shards[key]["file"]
        del shards[key]
        if stale.exists():
            stale.unlink()
            removed = True
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
    return pending, removed


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


def _write_table(table, path) -> None:
    import pyarrow.parquet as pq
    pq.write_table(table, path)


def _write_shard(path: Path, table) -> tuple:
    """Write a shard atomically; return its SHA-256 and size, taken from the file before it is renamed."""
    try:
        with atomic_write(path) as tmp:
            _write_table(table, tmp)
            digest, size = sha256_file(tmp), os.path.getsize(tmp)
        return digest, size
    except OSError as err:
        full = err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
        reason = "the disk is full" if full else (err.strerror or str(err))
        fix = "free space (or choose another out=)" if full else "fix that (or choose another out=)"
        raise OSError(err.errno, f"Writing {path.name} failed: {reason}. The shards completed so far are intact; "
                                 f"{fix} and rerun to resume.") from None


__all__ = ["extract", "explain_batch", "ENGINES"]
