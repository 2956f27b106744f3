"""A bank's files, checked before use: the manifest's records, shard names that stay inside the bank folder,
and a SHA-256 checksum per shard, verified once per shard, when the bank first reads it, and on every resumed
extraction. `BankFiles` is the one way the bank reads its files (lazily, through `pyarrow.dataset`)."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Dict, Optional

from .schema import FORMAT_VERSION, MANIFEST, READABLE_FORMATS, REQUIRED_COLUMNS

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


def remove_bank_files(out: Path) -> None:
    """Remove what an extraction wrote in ``out`` (its manifest and Parquet files), to start again."""
    for f in data_files(out) + [out / MANIFEST]:
        if f.is_file():
            f.unlink()


def data_files(folder: Path):
    """The Parquet files of a bank without manifest (Ray's output, or written by hand), in name order; names
    starting with '_' or '.' (temporary or hidden) are skipped, as `pyarrow.dataset` does."""
    return sorted(p for p in folder.rglob("*.parquet")
                  if p.is_file() and not any(part.startswith(("_", ".")) for part in p.relative_to(folder).parts))


class BankFiles:
    """The files of a bank folder in order: the manifest's shards, or else every Parquet file in it.

    `open(i)` gives file i as a `pyarrow.dataset.Dataset`, after checking it once: for a manifest bank that
    it lies inside the folder, its checksum and its row count match the manifest; for any bank that it is
    Parquet with the bank's columns. The check reads the file once (hashing); a file changed after it is
    caught by the next `verify()` or resumed extraction, not by every read.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        if (self.folder / MANIFEST).is_file():
            self.manifest: Optional[Dict[str, Any]] = read_manifest(self.folder)
            self.records = [self.manifest["shards"][k] for k in sorted(self.manifest["shards"])]
            self.paths = [self.folder / r["file"] for r in self.records]
        else:
            self.paths = data_files(self.folder) if self.folder.is_dir() else []
            if not self.paths:
                raise FileNotFoundError(f"'{self.folder}' is not an OSSM bank (no {MANIFEST} and no Parquet files); "
                                        "create one with dv.extract.")
            self.manifest, self.records = None, [None] * len(self.paths)
        self._open: Dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, i: int) -> str:
        return str(self.paths[i].relative_to(self.folder))

    def rows(self, i: int) -> Optional[int]:
        """Rows of file i as the manifest records them (None without a manifest)."""
        return None if self.records[i] is None else self.records[i]["rows"]

    def problem(self, i: int) -> Optional[str]:
        """Why file i cannot be used, or None; reads the whole file (checksum) for a manifest bank."""
        rec = self.records[i]
        if rec is not None:
            if rec["rows"] == 0 and not (self.folder / rec["file"]).exists():
                return None
            return shard_problem(self.folder, rec)
        try:
            self._dataset(i)
        except BankError as err:
            return str(err)
        return None

    def open(self, i: int):
        """File i as a `pyarrow.dataset.Dataset`, checked the first time; a `BankError` naming it otherwise."""
        if i not in self._open:
            rec = self.records[i]
            if rec is not None:
                path = shard_path(self.folder, rec)
                rerun = "rerun dv.extract with the same arguments to re-extract it"
                if not path.is_file():
                    raise BankError(f"Shard file '{path}' is missing; {rerun}.")
                if rec.get("sha256") is not None and sha256_file(path) != rec["sha256"]:
                    written = "" if rec.get("bytes") is None else f", {rec['bytes']} written"
                    raise BankError(f"Shard '{path}' is damaged: its checksum does not match the manifest "
                                    f"({path.stat().st_size} bytes{written}); {rerun}.")
            self._open[i] = self._dataset(i)
        return self._open[i]

    def _dataset(self, i: int):
        import pyarrow as pa
        import pyarrow.dataset as ds
        path, rec = self.paths[i], self.records[i]
        fix = ("rerun dv.extract with the same arguments to re-extract it" if rec is not None else
               "remove it from the folder, or write it again in dv.bank_schema()")
        try:
            data = ds.dataset(str(path), format="parquet")
            n = data.count_rows()
        except (pa.ArrowException, OSError, ValueError) as err:
            raise BankError(f"Shard '{path}' is not readable Parquet ({err}); {fix}.") from None
        if rec is not None and n != rec["rows"]:
            raise BankError(f"Shard '{path}' has {n} rows, the manifest says {rec['rows']}; {fix}.")
        missing = [c for c in REQUIRED_COLUMNS if c not in data.schema.names]
        if missing and n:
            raise BankError(f"Shard '{path}' lacks the column(s) {', '.join(missing)}; it is not a bank file "
                            f"(see dv.bank_schema()): {fix}.")
        return data


__all__ = ["BankError", "BankFiles", "data_files", "remove_bank_files", "FORMAT_VERSION", "read_manifest", "read_shard", "shard_name", "shard_path",
           "shard_problem", "sha256_bytes", "sha256_file"]
