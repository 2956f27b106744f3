"""The Ray engine of `dv.extract`: Ray Data reads the image indices, `map_batches` runs an `Extractor` in a pool
of actors (one model each, on a GPU when asked), and `write_parquet` writes the bank schema into the folder.

Ray writes into a hidden staging folder; its files are then checksummed, listed in the bank's ledger
(`ray_files.json`) and moved into the bank folder as ``ray-<run>-<n>.parquet``. The engine reads, and on
`overwrite` or damage removes, only the files its ledger lists: anything else in the folder is left alone.

Resuming: the image ids already in the ledger's files are skipped; a listed file that is missing or damaged (a
write that was stopped) is dropped from the ledger (and removed), so its images are extracted again. The rows are
those of the local engine (same keys, same values); their order is Ray's (by file, then by batch). Needs
`pip install decomviz[ray]`.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Set

from .bank import OSSMBank
from .datasets import item_id
from .extractor import comparable_protocol, model_spec, protocol_of
from .folder import STAGING_PREFIX, new_bank_id, old_manifest, other_files, refuse_other_files, remove_own
from .schema import FORMAT_VERSION, MANIFEST, bank_schema, schema_metadata
from .shards import RAY_LEDGER, BankError, own_files, read_ledger, sha256_file

#: What must agree between a folder's files and a new run before the run may add to them.
SAME = ("protocol", "dataset", "prompts", "part_vocabulary")


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError("engine='ray' needs Ray Data: pip install 'decomviz[ray]' (or ray[data]).") from None
    return ray


def extract_ray(cam, items, prompts, out: Path, batch_size: int = 16, overwrite: bool = False,
                address: Optional[str] = None, num_actors: Optional[int] = None, num_gpus: Optional[float] = None,
                num_cpus: Optional[float] = None, progress: bool = True, allow_other_files: bool = False) -> OSSMBank:
    """Extract `items` into `out` with Ray Data (see `dv.extract`); returns the `OSSMBank`."""
    ray = _import_ray()
    if num_actors is not None and (isinstance(num_actors, bool) or not isinstance(num_actors, int) or num_actors < 1):
        raise ValueError(f"num_actors must be a positive integer, got {num_actors!r}.")
    if num_gpus is not None and not num_gpus > 0:
        raise ValueError(f"num_gpus must be > 0 (GPUs per actor, e.g. 1 or 0.5), got {num_gpus!r}.")
    if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float))
                                 or not num_cpus > 0):
        raise ValueError(f"num_cpus must be > 0 (CPUs per actor, e.g. 1 or 4), got {num_cpus!r}.")
    spec = model_spec(cam.model)  # before any work: random weights cannot be loaded again in an actor
    ledger = _start(out, overwrite, allow_other_files)
    vocabulary = list(getattr(items, "part_vocabulary", []))
    expected = schema_metadata(bank_schema(protocol_of(cam), vocabulary, items.describe(), prompts))
    written = written_ids(out, expected, ledger)
    pending = [i for i in range(len(items)) if item_id(items, i) not in written]
    if pending:
        started = not ray.is_initialized()
        if started:
            ray.init(address=address, include_dashboard=False, log_to_driver=progress)
        elif address is not None:
            warnings.warn(f"Ray is already running in this process; address={address!r} is not used.", stacklevel=3)
        run = uuid.uuid4().hex[:8]
        staging = out / f"{STAGING_PREFIX}{run}"
        try:
            _run(ray, spec, cam, items, prompts, vocabulary, pending, staging, batch_size, num_actors, num_gpus,
                 num_cpus, progress)
            _adopt(out, staging, run, ledger)
        finally:
            if started:
                ray.shutdown()
            shutil.rmtree(staging, ignore_errors=True)
    return OSSMBank(out)


def _write_ledger(out: Path, ledger: Dict[str, Any]) -> None:
    from ..ops import atomic_write
    with atomic_write(out / RAY_LEDGER) as tmp:
        tmp.write_text(json.dumps(ledger, indent=1))


def _start(out: Path, overwrite: bool, allow_other_files: bool) -> Dict[str, Any]:
    """The ledger this run adds to: the folder's (resuming), or a new one (a new bank, or `overwrite`, which
    first removes exactly the files the old bank's ledger or manifest lists)."""
    fresh = {"format": FORMAT_VERSION, "engine": "ray", "generation": 1, "bank_id": new_bank_id(), "files": {}}
    if overwrite and ((out / MANIFEST).exists() or (out / RAY_LEDGER).exists()):
        generation, names = 0, set()
        if (out / MANIFEST).exists():  # a bank of the local engine
            old = old_manifest(out)
            generation, names = int(old.get("generation", 0)), own_files(old)
        if (out / RAY_LEDGER).exists():
            try:
                old_ledger = read_ledger(out) or {}
                names |= set(old_ledger.get("files") or {})
                generation = max(generation, int(old_ledger.get("generation", 0)))
            except BankError:  # damaged: the files named like the engine's own
                names |= {p.name for p in out.glob("ray-*.parquet")}
        fresh["generation"] = generation + 1
        _write_ledger(out, fresh)  # readers of the old bank now see it was rewritten
        remove_own(out, names)
        (out / MANIFEST).unlink(missing_ok=True)
        return fresh
    elif (out / MANIFEST).exists():
        raise ValueError(f"'{out}' holds a bank of the local engine ({MANIFEST}); resume it with engine='local', or "
                         "use another out= folder, or overwrite=True.")
    ledger = read_ledger(out)
    if ledger is not None:
        pending = [n for n in ledger.pop("pending", None) or [] if isinstance(n, str) and n not in ledger["files"]]
        if pending:  # moved by a run that stopped before listing them: the engine's own, removed
            remove_own(out, [n for n in pending if n.startswith("ray-") and n.endswith(".parquet")])
            _write_ledger(out, ledger)
        return ledger
    others = other_files(out)
    if others and not allow_other_files:
        refuse_other_files(out, others)
    _write_ledger(out, fresh)
    return fresh


def _adopt(out: Path, staging: Path, run: str, ledger: Dict[str, Any]) -> None:
    """Ray's files of this run, from the staging folder into the bank: named in the ledger as pending, moved,
    then listed with their rows and checksums. Readers see them only once listed; a run stopped in between
    leaves pending names, which the next writer removes (they are the engine's own)."""
    import pyarrow.parquet as pq
    files = sorted(p for p in staging.rglob("*.parquet") if p.is_file())
    moves = [(path, f"ray-{run}-{k:05d}.parquet") for k, path in enumerate(files)]
    records = {name: {"rows": pq.read_metadata(path).num_rows, "sha256": sha256_file(path),
                      "bytes": path.stat().st_size} for path, name in moves}
    ledger["pending"] = [name for _, name in moves]
    _write_ledger(out, ledger)
    for path, name in moves:
        os.replace(path, out / name)
    ledger["files"].update(records)
    ledger.pop("pending")
    _write_ledger(out, ledger)


def _run(ray, spec, cam, items, prompts, vocabulary, pending, out: Path, batch_size, num_actors, num_gpus, num_cpus,
         progress):
    from .extractor import Extractor
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = bool(progress)
    if num_actors is None:
        resources = ray.cluster_resources()
        if num_gpus:
            num_actors = int(resources.get("GPU", 0) // num_gpus)
        else:
            num_actors = int(resources.get("CPU", 1) // (num_cpus or 4))
        num_actors = max(1, num_actors)
    constructor = dict(model=spec, prompts=prompts, dataset=items, part_vocabulary=vocabulary,
                       images_per_call=batch_size, **cam.get_params())
    data = ray.data.from_items([{"index": i} for i in pending])
    # Ray gives an actor as many torch threads as CPUs (OMP_NUM_THREADS); fp32 sums, and so the last digits of
    # the results, follow the thread count
    options: Dict[str, Any] = {"num_gpus": num_gpus} if num_gpus else {}
    if num_cpus is not None:
        options["num_cpus"] = num_cpus
    data = data.map_batches(Extractor, fn_constructor_kwargs=constructor, batch_size=batch_size,
                            batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=num_actors), **options)
    data.write_parquet(str(out))


def written_ids(out: Path, expected: Dict[str, Any], ledger: Dict[str, Any]) -> Set[str]:
    """The image ids already in the files of the bank's `ledger` (explained or failed). Listed files that are
    missing, damaged or not readable are dropped from the ledger (and removed: they are the engine's own) with
    a warning; files made with other settings stop the run (a ValueError saying which). Nothing else in the
    folder is read."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    ids: Set[str] = set()
    want = _comparable(expected)
    dropped = []
    for name in sorted(ledger["files"]):
        path, rec = out / name, ledger["files"][name]
        try:
            if not path.is_file():
                raise OSError("the file is missing")
            if rec is None or sha256_file(path) != rec.get("sha256"):
                raise OSError("its checksum does not match the ledger: it was cut short or changed")
            meta = schema_metadata(pq.read_schema(path))
            column = pq.read_table(path, columns=["image_id"]).column(0)
        except (pa.ArrowException, OSError, KeyError) as err:
            warnings.warn(f"'{path}' is not a readable bank file ({err}); it is removed and its images are "
                          "extracted again.", stacklevel=4)
            path.unlink(missing_ok=True)
            dropped.append(name)
            continue
        have = _comparable(meta)
        diff = [k for k in SAME if have.get(k) != want.get(k)]
        if diff:
            raise ValueError(f"'{out}' holds a bank made with different {', '.join(diff)} (e.g. '{path.name}'); use "
                             "another out= folder, or overwrite=True to start again.")
        ids.update(column.to_pylist())
    if dropped:
        for name in dropped:
            del ledger["files"][name]
        ledger["generation"] = int(ledger.get("generation", 0)) + 1
        _write_ledger(out, ledger)
    return ids


def _comparable(meta: Dict[str, Any]) -> Dict[str, Any]:
    from .datasets import comparable_dataset
    out = json.loads(json.dumps({k: meta.get(k) for k in SAME}))
    out["dataset"] = comparable_dataset(out.get("dataset"))
    out["protocol"] = comparable_protocol(out.get("protocol"))
    return out
