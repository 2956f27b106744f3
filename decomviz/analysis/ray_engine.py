"""The Ray engine of `dv.extract`: Ray Data reads the image indices, `map_batches` runs an `Extractor` in a pool
of actors (one model each, on a GPU when asked), and `write_parquet` writes the bank schema into the folder.

Resuming: the image ids already in the folder's Parquet files are skipped; a file that is not readable Parquet
(a write that was stopped) is removed first, so its images are extracted again. The rows are those of the local
engine (same keys, same values); their order is Ray's (by file, then by batch). Needs `pip install decomviz[ray]`.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Set

from .bank import OSSMBank
from .datasets import item_id
from .extractor import model_spec, protocol_of
from .schema import MANIFEST, bank_schema, schema_metadata
from .shards import data_files, remove_bank_files

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
                num_cpus: Optional[float] = None, progress: bool = True) -> OSSMBank:
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
    if overwrite:
        remove_bank_files(out)
    elif (out / MANIFEST).exists():
        raise ValueError(f"'{out}' holds a bank of the local engine ({MANIFEST}); resume it with engine='local', or "
                         "use another out= folder, or overwrite=True.")
    vocabulary = list(getattr(items, "part_vocabulary", []))
    expected = schema_metadata(bank_schema(protocol_of(cam), vocabulary, items.describe(), prompts))
    written = written_ids(out, expected)
    pending = [i for i in range(len(items)) if item_id(items, i) not in written]
    if pending:
        started = not ray.is_initialized()
        if started:
            ray.init(address=address, include_dashboard=False, log_to_driver=progress)
        elif address is not None:
            warnings.warn(f"Ray is already running in this process; address={address!r} is not used.", stacklevel=3)
        try:
            _run(ray, spec, cam, items, prompts, vocabulary, pending, out, batch_size, num_actors, num_gpus, num_cpus,
                 progress)
        finally:
            if started:
                ray.shutdown()
    return OSSMBank(out)


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


def written_ids(out: Path, expected: Dict[str, Any]) -> Set[str]:
    """The image ids already in `out`'s Parquet files (explained or failed). Files that are not readable are
    removed with a warning; files made with other settings stop the run (a ValueError saying which)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    ids: Set[str] = set()
    if not out.is_dir():
        return ids
    want = _comparable(expected)
    for path in data_files(out):
        try:
            meta = schema_metadata(pq.read_schema(path))
            column = pq.read_table(path, columns=["image_id"]).column(0)
        except (pa.ArrowException, OSError, KeyError) as err:
            warnings.warn(f"'{path}' is not a readable bank file ({err}); it is removed and its images are "
                          "extracted again.", stacklevel=4)
            path.unlink()
            continue
        have = _comparable(meta)
        diff = [k for k in SAME if have.get(k) != want.get(k)]
        if diff:
            raise ValueError(f"'{out}' holds a bank made with different {', '.join(diff)} (e.g. '{path.name}'); use "
                             "another out= folder, or overwrite=True to start again.")
        ids.update(column.to_pylist())
    return ids


def _comparable(meta: Dict[str, Any]) -> Dict[str, Any]:
    return json.loads(json.dumps({k: meta.get(k) for k in SAME}))
