"""Who owns what in a bank folder.

- One writer at a time: `WriterLock`, an OS lock (``fcntl.flock``) on a hidden file that names its holder
  (pid, host, start). The OS releases it when the holder ends, however it ends, so a killed run never leaves
  a stale lock. A second writer is refused at once with a message naming the first, or waits (``wait=True``).
- A bank deletes and replaces only files it wrote: its manifest (local engine) or its ledger (Ray engine) lists
  them. Anything else in the folder is the user's: never read as a bank file, replaced or deleted.
- A folder that holds other files is refused as the folder of a new bank unless the user says so
  (``allow_other_files=True``), because a bank folder is easy to mistake for a project folder.
- Every rewrite that removes or replaces a file a reader may have opened bumps the bank's generation; an
  `OSSMBank` opened before notices (see `shards.BankFiles.check_current`).
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from .schema import MANIFEST
from .shards import RAY_LEDGER, BankError, read_manifest

LOCK = ".decomviz-writer.lock"
#: Ray writes into a hidden staging folder of this prefix, then moves its files into the bank folder.
STAGING_PREFIX = "_decomviz-ray-staging-"
#: Temporary names of `ops.atomic_write`: ".<name>.<pid>-<8 hex>.tmp[suffix]".
_TMP = re.compile(r"\..+\.\d+-[0-9a-f]{8}\.tmp.*")
_PROBE = re.compile(r"\.decomviz-write-test-.*")


class BankLocked(BankError):
    """Another process is writing this bank folder."""


def new_bank_id() -> str:
    return uuid.uuid4().hex[:12]


def generation_of(record: Optional[Dict[str, Any]]):
    """What identifies one state of a bank's files: (bank id, generation) of its manifest or ledger."""
    if not record:
        return None
    return record.get("bank_id"), record.get("generation")


class WriterLock:
    """``with WriterLock(folder, wait=False):`` the one writer of a bank folder (see the module docstring)."""

    def __init__(self, folder, wait: bool = False):
        self.folder, self.wait = Path(folder), bool(wait)
        self.path = self.folder / LOCK
        self._fd: Optional[int] = None

    def holder(self) -> str:
        """Who holds the lock, as its file says ('another process' when it has not said yet)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
            return (f"process {info['pid']} on host {info['host']}, writing since "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info['since']))}")
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def __enter__(self) -> "WriterLock":
        try:
            import fcntl
        except ImportError:  # no flock (Windows): a lock file made exclusively, its holder checked for life
            return self._enter_portable()
        told = False
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not self.wait:
                    os.close(fd)
                    raise BankLocked(self._busy()) from None
                if not told:
                    import sys
                    print(f"[decomviz] '{self.folder}' is being written by {self.holder()}; waiting for it to "
                          "finish.", file=sys.stderr, flush=True)
                    told = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            # the holder removes the lock file when it ends: a lock taken on a file no longer at the path is stale
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        self._write_holder()
        return self

    def _busy(self) -> str:
        return (f"'{self.folder}' is being written by {self.holder()}: one bank folder has one writer at a time. "
                "Wait for it to finish (or pass wait=True, --wait on the command line, to start when it ends), or "
                "write to another out= folder.")

    def _write_holder(self) -> None:
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, info, 0)

    def _enter_portable(self) -> "WriterLock":
        while True:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(self._fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                               "since": time.time()}).encode())
                return self
            except FileExistsError:
                if not self._holder_alive():
                    self.path.unlink(missing_ok=True)
                    continue
                if not self.wait:
                    raise BankLocked(self._busy()) from None
                time.sleep(1.0)

    def _holder_alive(self) -> bool:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return True
        if info.get("host") != socket.gethostname():
            return True  # cannot tell: another machine's process
        try:
            os.kill(int(info["pid"]), 0)
        except (ProcessLookupError, KeyError, ValueError, TypeError):
            return False
        except PermissionError:
            return True
        return True

    def __exit__(self, *exc) -> None:
        if self._fd is None:
            return
        try:
            import fcntl
            self.path.unlink(missing_ok=True)  # while still held: a waiter sees the file gone and takes a new one
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        except ImportError:
            os.close(self._fd)
            self.path.unlink(missing_ok=True)
        self._fd = None


def is_bookkeeping(name: str) -> bool:
    """Names decomviz writes in any bank folder besides the bank's files: the manifest, the Ray ledger, the
    lock, temporary files of atomic writes, the writability probe, Ray's staging folders."""
    return (name in (MANIFEST, RAY_LEDGER, LOCK) or bool(_TMP.fullmatch(name)) or bool(_PROBE.fullmatch(name))
            or name.startswith(STAGING_PREFIX))


def other_files(folder: Path, own: Iterable[str] = ()) -> List[str]:
    """The entries of ``folder`` (files and sub-folders, top level) that are neither the bank's ``own`` files
    nor decomviz's bookkeeping, sorted."""
    if not folder.is_dir():
        return []
    own = set(own)
    return sorted(p.name for p in folder.iterdir() if p.name not in own and not is_bookkeeping(p.name))


def refuse_other_files(folder: Path, others: List[str], what: str = "a new bank") -> None:
    shown = ", ".join(repr(n) for n in others[:8]) + (f" and {len(others) - 8} more" if len(others) > 8 else "")
    raise BankError(f"'{folder}' already holds files that are not a bank's ({shown}); it is not used as the folder "
                    f"of {what}, so that nothing of yours is mixed with the bank's files. Use an empty or new "
                    "out= folder, or pass allow_other_files=True (--allow-other-files) to write beside them: the "
                    "bank then reads, replaces and deletes only the files it writes.")


def clean_leftovers(folder: Path) -> None:
    """Remove what a stopped writer of this folder left (decomviz's temporary files and Ray staging folders);
    called with the writer lock held, so none of them is in use."""
    import shutil
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if _TMP.fullmatch(p.name) and p.is_file():
            p.unlink(missing_ok=True)
        elif p.name.startswith(STAGING_PREFIX) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


def remove_own(folder: Path, names: Iterable[str]) -> None:
    """Remove the bank's own files ``names`` (top-level names in ``folder``), and nothing else."""
    for name in names:
        path = folder / name
        if path.parent == folder and (path.is_file() or path.is_symlink()):
            path.unlink()


def old_manifest(out: Path) -> Dict[str, Any]:
    """The manifest of the bank that `overwrite=True` replaces. A damaged one still names its files where its
    JSON can be read; where it cannot, the files named like its shards ('shard-00000.parquet') are taken as the
    bank's (the only files it could have written)."""
    try:
        return read_manifest(out)
    except BankError:
        pass
    try:
        raw = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        names = [r.get("file") for r in (raw.get("shards") or {}).values() if isinstance(r, dict)]
        names += list(raw.get("files") or [])
    except (OSError, ValueError, AttributeError, TypeError, RecursionError):
        names = [p.name for p in out.iterdir()]
    names = [n for n in names if isinstance(n, str) and re.fullmatch(r"shard-\d{5}\.parquet", n)]
    return {"files": names, "generation": 0}


def ray_files(out: Path) -> List[str]:
    """The files the Ray engine's ledger in ``out`` lists; for a damaged ledger, the files named like its own."""
    from .shards import read_ledger
    try:
        return sorted((read_ledger(out) or {}).get("files") or {})
    except BankError:
        return sorted(p.name for p in out.glob("ray-*.parquet"))


def probe_name() -> str:
    return f".decomviz-write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"


__all__ = ["BankLocked", "WriterLock", "LOCK", "RAY_LEDGER", "STAGING_PREFIX", "other_files", "refuse_other_files",
           "clean_leftovers", "remove_own", "old_manifest", "ray_files", "is_bookkeeping", "new_bank_id", "generation_of"]
