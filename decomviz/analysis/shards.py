"""A bank's files, checked before use: the manifest's records, shard names that stay inside the bank folder,
and a SHA-256 checksum per shard, verified on every read and on every resumed extraction."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Dict, Optional

from .schema import FORMAT_VERSION, MANIFEST, READABLE_FORMATS

_SHARD_NAME = re.compile(r"shard-\d{5}\.parquet")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class BankError(ValueError):
    """A bank's manifest or shard is missing, damaged or inconsistent; the message names the file and the fix."""


def shard_name(s: int) -> str:
    return f"shard-{s:05d}.parquet"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: Path) -> Dict[str, Any]:
    """The manifest of the bank in ``folder``, every shard record checked (types, names, ranges)."""
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"'{folder}' is not an OSSM bank (no {MANIFEST}); create one with dv.extract.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BankError(f"'{path}' is not valid JSON ({err}); rerun dv.extract with overwrite=True to rebuild "
                        "the bank.") from None
    if not isinstance(manifest, dict):
        raise BankError(f"'{path}' holds a JSON {type(manifest).__name__}, not a bank manifest (an object).")
    if manifest.get("format") not in READABLE_FORMATS:
        raise BankError(f"'{folder}' has bank format {manifest.get('format')!r}; this decomviz reads "
                        f"{', '.join(map(str, READABLE_FORMATS))}. Rerun dv.extract with overwrite=True.")
    shards = manifest.get("shards")
    if not isinstance(shards, dict):
        raise BankError(f"'{path}' has no 'shards' object; it is not a manifest written by dv.extract.")
    for key, rec in shards.items():
        problem = _record_problem(key, rec)
        if problem:
            raise BankError(f"'{path}': shard entry {key!r} {problem}. The manifest was edited or damaged; rerun "
                            "dv.extract with overwrite=True to rebuild the bank.")
    return manifest


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _record_problem(key: str, rec: Any) -> Optional[str]:
    if not isinstance(rec, dict):
        return "is not an object"
    for field in ("first", "images", "rows"):
        if not _count(rec.get(field)):
            return f"has no valid '{field}' (a count), got {rec.get(field)!r}"
    name = rec.get("file")
    if not isinstance(name, str) or not _SHARD_NAME.fullmatch(name):
        return (f"names the file {name!r}; shard files are named like 'shard-00000.parquet' and lie in the bank "
                "folder (paths elsewhere are never followed)")
    if not isinstance(rec.get("failed", []), list) or not all(isinstance(f, dict) for f in rec.get("failed", [])):
        return "has a 'failed' entry that is not a list of records"
    grid = rec.get("grid")
    if grid is not None and (not isinstance(grid, list) or len(grid) != 2 or not all(_count(g) and g > 0 for g in grid)):
        return f"has grid {grid!r}, not [h, w]"
    digest = rec.get("sha256")
    if digest is not None and (not isinstance(digest, str) or not _SHA256.fullmatch(digest)):
        return f"has checksum {digest!r}, not a SHA-256 hex digest"
    return None


def shard_path(folder: Path, rec: Dict[str, Any]) -> Path:
    """The shard's file, inside the bank folder (the record's name was checked by `read_manifest`)."""
    path = folder / rec["file"]
    if path.resolve().parent != folder.resolve():  # e.g. a symlink out of the folder
        raise BankError(f"Shard '{rec['file']}' of '{folder}' resolves outside the bank folder; it is not read.")
    return path


def shard_problem(folder: Path, rec: Dict[str, Any]) -> Optional[str]:
    """Why the shard of ``rec`` cannot be used as it is (missing, damaged, no checksum), or None."""
    path = folder / rec["file"]
    if not path.is_file():
        return "its file is missing"
    if rec.get("sha256") is None:
        return "it has no checksum (written by an older decomviz)"
    try:
        if path.resolve().parent != folder.resolve():
            return "its file resolves outside the bank folder"
        if rec.get("bytes") is not None and path.stat().st_size != rec["bytes"]:
            return f"it is damaged: {path.stat().st_size} bytes instead of {rec['bytes']} (truncated or overwritten)"
        if sha256_file(path) != rec["sha256"]:
            return "it is damaged: its checksum does not match what was written"
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    return None


def read_shard(folder: Path, rec: Dict[str, Any]):
    """A shard as a pyarrow Table, its checksum verified first; BankError naming the file otherwise."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    path = shard_path(folder, rec)
    rerun = "rerun dv.extract with the same arguments to re-extract it"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BankError(f"Shard file '{path}' is missing; {rerun}.") from None
    except OSError as err:
        raise BankError(f"Shard file '{path}' cannot be read ({err.strerror or err}).") from None
    digest = rec.get("sha256")
    if digest is not None and sha256_bytes(data) != digest:
        written = "" if rec.get("bytes") is None else f", {rec['bytes']} written"
        raise BankError(f"Shard '{path}' is damaged: its checksum does not match the manifest ({len(data)} bytes"
                        f"{written}); {rerun}.")
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as err:
        raise BankError(f"Shard '{path}' is not readable Parquet ({err}); {rerun}.") from None
    if table.num_rows != rec["rows"]:
        raise BankError(f"Shard '{path}' has {table.num_rows} rows, the manifest says {rec['rows']}; {rerun}.")
    return table


__all__ = ["BankError", "FORMAT_VERSION", "read_manifest", "read_shard", "shard_name", "shard_path",
           "shard_problem", "sha256_bytes", "sha256_file"]
