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
_RAY_NAME = re.compile(r"ray-[0-9a-f]{1,32}-\d{5}\.parquet")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: The Ray engine's list of the files it wrote (the local engine's are in its manifest).
RAY_LEDGER = "ray_files.json"
#: Manifests and ledgers larger than this are refused before they are read (a bank of a million images has a
#: manifest of a few MB).
MAX_MANIFEST_BYTES = 256 << 20


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
    manifest = _read_json(path, "rerun dv.extract with overwrite=True to rebuild the bank")
    if not isinstance(manifest, dict):
        raise BankError(f"'{path}' holds a JSON {type(manifest).__name__}, not a bank manifest (an object).")
    if manifest.get("format") not in READABLE_FORMATS:
        raise BankError(f"'{folder}' has bank format {manifest.get('format')!r}; this decomviz reads "
                        f"{', '.join(map(str, READABLE_FORMATS))}. Rerun dv.extract with overwrite=True.")
    shards = manifest.get("shards")
    if not isinstance(shards, dict):
        raise BankError(f"'{path}' has no 'shards' object; it is not a manifest written by dv.extract.")
    fix = "The manifest was edited or damaged; rerun dv.extract with overwrite=True to rebuild the bank."
    for key, rec in shards.items():
        problem = _record_problem(key, rec)
        if problem:
            raise BankError(f"'{path}': shard entry {key!r} {problem}. {fix}")
    problem = _manifest_problem(manifest)
    if problem:
        raise BankError(f"'{path}' {problem}. {fix}")
    return manifest


def _read_json(path: Path, fix: str) -> Any:
    """A bank's JSON file (manifest, ledger), its size bounded before it is read, its nesting by the parser."""
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise BankError(f"'{path}' has {size:,} bytes, more than the {MAX_MANIFEST_BYTES:,} a bank's "
                            f"manifest may have; it is not read. {fix[0].upper() + fix[1:]}.")
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise BankError(f"'{path}' is not valid JSON ({type(err).__name__}: {str(err)[:200]}); {fix}.") from None


def _manifest_problem(manifest: Dict[str, Any]) -> Optional[str]:
    """What makes the manifest's records disagree with each other (a file listed twice, a record under another
    shard's key, image ranges that overlap), or None."""
    files = manifest.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) and _SHARD_NAME.fullmatch(f) for f in files):
        return "has a 'files' entry that is not a list of shard file names"
    gen = manifest.get("generation", 0)
    if not _count(gen):
        return f"has generation {gen!r}, not a count"
    seen: Dict[str, str] = {}
    spans = []
    for key, rec in manifest["shards"].items():
        if rec["file"] in seen:
            return f"lists the file {rec['file']!r} twice (entries {seen[rec['file']]!r} and {key!r})"
        seen[rec["file"]] = key
        if key.isdigit() and rec["file"] != f"shard-{int(key):05d}.parquet":
            return f"gives the entry {key!r} the file {rec['file']!r} of another shard"
        if len(rec["failed"]) > rec["images"]:
            return f"lists {len(rec['failed'])} failed images in entry {key!r} of {rec['images']} images"
        spans.append((rec["first"], rec["first"] + rec["images"], key))
    spans.sort()
    for (lo, hi, k), (lo2, _, k2) in zip(spans, spans[1:]):
        if lo2 < hi:
            return f"gives the entries {k!r} and {k2!r} overlapping images ({lo}-{hi - 1} and {lo2}-)"
    return None


def own_files(manifest: Optional[Dict[str, Any]]) -> set:
    """The files a local-engine bank wrote, as its manifest lists them (shard records and 'files')."""
    if not manifest:
        return set()
    names = {r["file"] for r in manifest.get("shards", {}).values() if isinstance(r, dict) and "file" in r}
    return names | set(manifest.get("files") or [])


def read_ledger(folder: Path) -> Optional[Dict[str, Any]]:
    """The Ray engine's ledger of ``folder`` (the files it wrote, their rows and checksums), checked; None when
    there is none."""
    path = folder / RAY_LEDGER
    if not path.is_file():
        return None
    fix = "write the bank again into a new out= folder (or with overwrite=True)"
    ledger = _read_json(path, fix)
    files = ledger.get("files") if isinstance(ledger, dict) else None
    if not isinstance(files, dict):
        raise BankError(f"'{path}' has no 'files' object; it is not a ledger written by dv.extract(engine='ray'); "
                        f"{fix}.")
    for name, rec in files.items():
        if not _RAY_NAME.fullmatch(name) or not isinstance(rec, dict) or not _count(rec.get("rows")) \
                or not (isinstance(rec.get("sha256"), str) and _SHA256.fullmatch(rec["sha256"])):
            raise BankError(f"'{path}': entry {name!r} is not a record of a file the Ray engine wrote (name "
                            f"'ray-<run>-00000.parquet', rows, sha256); {fix}.")
    if not _count(ledger.get("generation", 0)):
        raise BankError(f"'{path}' has generation {ledger.get('generation')!r}, not a count; {fix}.")
    return ledger


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


def data_files(folder: Path):
    """The Parquet files of a folder written by hand (no manifest, no Ray ledger), in name order; names
    starting with '_' or '.' (temporary or hidden) are skipped, as `pyarrow.dataset` does."""
    return sorted(p for p in folder.rglob("*.parquet")
                  if p.is_file() and not any(part.startswith(("_", ".")) for part in p.relative_to(folder).parts))


class BankFiles:
    """The files of a bank folder in order: the manifest's shards, the Ray ledger's files, or else (a folder
    written by hand) every Parquet file in it.

    `open(i)` gives file i as a `pyarrow.dataset.Dataset`, after checking it once: for a manifest bank that
    it lies inside the folder, its checksum and its row count match the manifest; for any bank that it is
    Parquet with the bank's columns. The check reads the file once (hashing); a file changed after it is
    caught by the next `verify()` or resumed extraction, not by every read.

    `check_current()` (called on every `open` and `problem`) raises a `BankError` when the bank was rewritten
    since this object read its manifest or ledger (its generation changed): reopen it.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.ledger: Optional[Dict[str, Any]] = None
        self._stamp_file: Optional[Path] = None
        if (self.folder / MANIFEST).is_file():
            self.manifest: Optional[Dict[str, Any]] = read_manifest(self.folder)
            self.records = [self.manifest["shards"][k] for k in sorted(self.manifest["shards"])]
            self.paths = [self.folder / r["file"] for r in self.records]
            self._stamp_file, self.generation = self.folder / MANIFEST, _generation(self.manifest)
        elif (self.folder / RAY_LEDGER).is_file():
            self.ledger = read_ledger(self.folder)
            self.paths = [self.folder / n for n in sorted(self.ledger["files"])]
            if not self.paths:
                raise FileNotFoundError(f"The Ray bank '{self.folder}' holds no files yet; extract into it with "
                                        "dv.extract(..., engine='ray').")
            self.manifest, self.records = None, [None] * len(self.paths)
            self._stamp_file, self.generation = self.folder / RAY_LEDGER, _generation(self.ledger)
        else:
            self.paths = data_files(self.folder) if self.folder.is_dir() else []
            if not self.paths:
                raise FileNotFoundError(f"'{self.folder}' is not an OSSM bank (no {MANIFEST} and no Parquet files); "
                                        "create one with dv.extract.")
            self.manifest, self.records = None, [None] * len(self.paths)
        self._stamp = _stat(self._stamp_file)
        self._open: Dict[int, Any] = {}

    def check_current(self) -> None:
        """A `BankError` when the bank was rewritten (overwritten, shards re-extracted) or removed since this
        object read it; appends (a resumed extraction adding shards) are not a change of what it knows."""
        if self._stamp_file is None:
            return
        stamp = _stat(self._stamp_file)
        if stamp == self._stamp:
            return
        again = f"open it again: dv.OSSMBank('{self.folder}')"
        if stamp is None:
            raise BankError(f"The bank '{self.folder}' was removed or is being rewritten since this object opened "
                            f"it (its {self._stamp_file.name} is gone); {again} when it is there.")
        try:
            now = (read_manifest(self.folder) if self.manifest is not None else read_ledger(self.folder))
        except (BankError, FileNotFoundError, OSError) as err:
            raise BankError(f"The bank '{self.folder}' changed since this object opened it and cannot be read now "
                            f"({err}).") from None
        if _generation(now) != self.generation:
            raise BankError(f"The bank '{self.folder}' was rewritten since this object opened it (generation "
                            f"{self.generation[1]} -> {_generation(now)[1]}): its files are no longer the ones "
                            f"this object knows; {again}.")
        self._stamp = stamp

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, i: int) -> str:
        return str(self.paths[i].relative_to(self.folder))

    def rows(self, i: int) -> Optional[int]:
        """Rows of file i as the manifest records them (None without a manifest)."""
        return None if self.records[i] is None else self.records[i]["rows"]

    def problem(self, i: int) -> Optional[str]:
        """Why file i cannot be used, or None; reads the whole file (checksum) for a manifest bank."""
        self.check_current()
        rec = self.records[i]
        if rec is not None:
            if rec["rows"] == 0 and not (self.folder / rec["file"]).exists():
                return None
            problem = shard_problem(self.folder, rec)
            if problem is not None:
                return problem
        try:  # for a manifest bank: its rows against its record (count, image range, failed images)
            self._dataset(i)
        except BankError as err:
            return str(err)
        return None

    def open(self, i: int):
        """File i as a `pyarrow.dataset.Dataset`, checked the first time; a `BankError` naming it otherwise."""
        self.check_current()
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
        if rec is not None and n:
            problem = _rows_problem(data, rec)
            if problem:
                raise BankError(f"Shard '{path}' does not hold what the manifest says: {problem}. The manifest "
                                "was edited or damaged; rerun dv.extract with overwrite=True to rebuild the bank.")
        return data


def _rows_problem(data, rec: Dict[str, Any]) -> Optional[str]:
    """How a shard's own rows disagree with its manifest record (images outside its range, failed images other
    than those listed), or None."""
    import pyarrow.compute as pc
    cols = ["image_index", "image_id"] + (["error"] if "error" in data.schema.names else [])
    t = data.to_table(columns=cols)
    index = t.column("image_index").to_numpy()
    lo, hi = rec["first"], rec["first"] + rec["images"]
    if len(index) and (index.min() < lo or index.max() >= hi):
        return f"it has rows of images {int(index.min())}-{int(index.max())}, its record images {lo}-{hi - 1}"
    failed = sorted(str(f.get("id")) for f in rec["failed"])
    if "error" in cols:
        errors = t.filter(pc.is_valid(t.column("error")))
        have = sorted(str(v) for v in errors.column("image_id").to_pylist())
    else:
        have = []
    if "error" in cols and have != failed:
        return f"it has {len(have)} failed image(s), its record lists {len(failed)} (ids differ)" \
            if len(have) != len(failed) else "its failed images are not those its record lists"
    return None


def _stat(path: Optional[Path]):
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _generation(record: Dict[str, Any]):
    return record.get("bank_id"), int(record.get("generation", 0))


__all__ = ["BankError", "BankFiles", "data_files", "own_files", "read_ledger", "RAY_LEDGER", "FORMAT_VERSION", "read_manifest", "read_shard", "shard_name", "shard_path",
           "shard_problem", "sha256_bytes", "sha256_file"]
