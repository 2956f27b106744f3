"""OSSMBank: a bank read lazily, through `pyarrow.dataset`, a column and a batch at a time.

Any folder of Parquet files in the bank schema opens: one written by `dv.extract` (manifest + checksummed
shards), by the Ray engine, or by hand. Nothing is executed; the manifest's shard names never lead outside the
bank folder, and each shard's checksum is verified once, when the bank first reads it (see `shards.BankFiles`).
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from .schema import (ERROR_COLUMN, GRID_COLUMNS, SCALAR_COLUMNS, VECTOR_COLUMNS, bank_schema, schema_metadata,
                     vectors_to_numpy)
from .shards import BankError, BankFiles

#: Bank columns by the attribute that holds them whole (loaded on first use).
_ATTRIBUTES = {"ossms": "ossm", "embeddings": "embedding", "pooled": "pooled", "loadings": "loading",
               "part_overlap": "part_overlap"}
FEATURES = {"embedding": "embedding", "pooled": "pooled", "loading": "loading", "ossm": "ossm"}


class OSSMBank:
    """One row per (image, prompt, component), in file order; images that failed are in `failed`, not rows.

    Lazy: opening reads the manifest (or one file's metadata); data is read when asked for, only the columns
    and rows asked for. `len(bank)`; `bank.to_pandas(columns=None)` (the scalar columns by default; the index is
    the bank row); `bank.iter_batches(columns, batch_size)` (pyarrow RecordBatches, memory bounded by the batch);
    `bank.take(rows, columns)`; `bank.vectors(name, rows)` (N, D) float32 and `bank.ossms_of(rows)` (N, h, w);
    `bank.filter(label="house")` or `bank.filter(pyarrow_expression)`: a view with the same interface. Whole
    columns as arrays (loaded on first use): `bank.ossms` (N, h, w), `bank.embeddings` (N, D), `bank.pooled` /
    `bank.loadings` (N, C), `bank.part_overlap` (N, V) over `bank.part_vocabulary`. `bank.protocol` says how
    it was made; `bank.verify()` lists the files that are missing or damaged. A damaged shard raises a
    `BankError` naming it when read; rerunning `extract` with the same arguments re-extracts it. A bank rewritten
    on disk after this object opened it (`overwrite=True`, re-extracted shards: a new generation in its manifest)
    raises a `BankError` on the next read that says to open it again.
    """

    def __init__(self, path, filter=None):
        """Open the bank in folder `path`; `filter` (a pyarrow expression) opens a view, as `bank.filter(...)`."""
        self.path = Path(path)
        self._files = BankFiles(self.path)
        self.manifest: Optional[Dict[str, Any]] = self._files.manifest
        self.shards: List[Dict[str, Any]] = [r for r in self._files.records if r is not None]
        self._filter = filter
        self._where: Dict[int, Any] = {}
        self._positions: Dict[int, Optional[np.ndarray]] = {}

    def filter(self, expression=None, **equal) -> "OSSMBank":
        """A view of the rows that match: a pyarrow expression (``pyarrow.dataset.field("weight") > 0.5``) and/or
        columns by value: ``label="house"`` (one of the row's labels), ``prompt="a photo of a car"``,
        ``component=[0, 1]`` (any of a list). The view's rows are numbered 0..len(view)-1."""
        import pyarrow.dataset as ds
        parts = [] if expression is None else [expression]
        for name, value in equal.items():
            if name in ("label", "labels"):
                values = [value] if isinstance(value, str) else list(value)
                regex = "|".join(_label_regex(v) for v in values)
                parts.append(_call("match_substring_regex", ds.field("labels"), pattern=regex))
            elif name in SCALAR_COLUMNS or name in GRID_COLUMNS:
                many = isinstance(value, (list, tuple, set, np.ndarray))
                parts.append(ds.field(name).isin(list(value)) if many else ds.field(name) == value)
            else:
                raise ValueError(f"Cannot filter on {name!r}: give label=..., a scalar column "
                                 f"({', '.join(SCALAR_COLUMNS)}) or a pyarrow expression.")
        if self._filter is not None:
            parts.insert(0, self._filter)
        view = object.__new__(OSSMBank)
        view.path, view._files, view.manifest, view.shards = self.path, self._files, self.manifest, self.shards
        view._filter = _and(parts)
        view._where, view._positions = {}, {}
        return view

    def __repr__(self) -> str:
        try:
            self._files.check_current()
        except BankError:
            return (f"OSSMBank('{self.path}', changed on disk since it was opened: open it again with "
                    f"dv.OSSMBank('{self.path}'))")
        if self.manifest is None:
            state = f"{len(self._files)} Parquet files, no manifest"
        else:
            state = "complete" if self.complete else "incomplete (rerun extract to resume)"
        view = "" if self._filter is None else f", filter={self._filter}"
        return f"OSSMBank('{self.path}', rows={len(self)}, images={self.n_images}, {state}{view})"

    # ------------------------------------------------------------------ what the bank is
    @cached_property
    def _meta(self) -> Dict[str, Any]:
        if self.manifest is not None:
            return self.manifest
        return schema_metadata(self._files.open(0).schema)

    @property
    def complete(self) -> Optional[bool]:
        """The manifest's word that every shard was written; None for a bank without manifest."""
        return None if self.manifest is None else bool(self.manifest.get("complete"))

    @property
    def protocol(self) -> Dict:
        return dict(self._meta.get("protocol") or {})

    def made_with(self, method) -> bool:
        """Whether this bank is complete and was extracted by a method with ``method``'s knobs, on the same model:
        what a notebook checks before opening a shipped bank instead of extracting again. It compares the record
        an extraction by ``method`` would write (`extractor.protocol_of`), all but the library versions and the
        folder the model was read from, and the batch size (images per forward pass: it changes the speed, not the
        maps; its default depends on the device)."""
        from .extractor import comparable_protocol, protocol_of
        want = {k: v for k, v in comparable_protocol(protocol_of(method)).items()
                if k not in ("versions", "model_source")}
        protocol = self.protocol
        return self.complete is not False and {k: protocol.get(k) for k in want} == want

    @property
    def dataset(self) -> Dict:
        """What the bank was extracted from (`describe()` of the dataset), {} when not recorded."""
        return dict(self._meta.get("dataset") or {})

    @property
    def part_vocabulary(self) -> List[str]:
        return list(self._meta.get("part_vocabulary") or [])

    @property
    def schema(self):
        """The bank schema with this bank's metadata."""
        return bank_schema(self.protocol, self.part_vocabulary, self.dataset or None, self._meta.get("prompts"))

    def verify(self) -> List[str]:
        """'file: problem' for each file that is missing, damaged or unchecked; [] when all are intact."""
        return [f"{self._files.name(i)}: {p}" for i in range(len(self._files)) if (p := self._files.problem(i))]

    @cached_property
    def failed(self) -> List[Dict]:
        """The images that could not be read or explained: {"id", "index", "error"} each."""
        if self.manifest is not None:
            return [f for s in self.shards for f in s["failed"]]
        import pyarrow.dataset as ds
        out = []
        for i in range(len(self._files)):
            data = self._files.open(i)
            if ERROR_COLUMN in data.schema.names:
                t = data.to_table(columns=["image_id", "image_index", ERROR_COLUMN],
                                  filter=ds.field(ERROR_COLUMN).is_valid())
                out += [{"id": a, "index": b, "error": c} for a, b, c in
                        zip(*(t.column(k).to_pylist() for k in ("image_id", "image_index", ERROR_COLUMN)))]
        return out

    @cached_property
    def n_images(self) -> int:
        if self.manifest is not None and self._filter is None:
            return sum(s["images"] - len(s["failed"]) for s in self.shards)
        ids = set()
        for batch in self.iter_batches(columns=["image_id"]):
            ids.update(batch.column(0).to_pylist())
        return len(ids)

    @cached_property
    def grid(self):
        """(h, w) of the OSSMs: the manifest's, else the first row's grid columns; None for an empty bank."""
        if self.manifest is not None:
            return next((tuple(s["grid"]) for s in self.shards if s.get("grid")), None)
        for batch in self.iter_batches(columns=list(GRID_COLUMNS), batch_size=1):
            return int(batch.column(0)[0].as_py()), int(batch.column(1)[0].as_py())
        return None

    # ------------------------------------------------------------------ rows
    def _where_of(self, i: int):
        """The row condition of file i in this view: explained rows (no error) that pass the filter."""
        if i not in self._where:
            import pyarrow.dataset as ds
            names = self._files.open(i).schema.names
            parts = [ds.field(ERROR_COLUMN).is_null()] if ERROR_COLUMN in names else []
            self._where[i] = _and(parts + ([self._filter] if self._filter is not None else []))
        return self._where[i]

    def _count(self, i: int) -> int:
        rec = self._files.records[i]
        if rec is not None and self._filter is None:  # known from the manifest: no file read
            return rec["rows"] - (len(rec["failed"]) if self.manifest.get("format", 0) >= 3 else 0)
        return self._files.open(i).count_rows(filter=self._where_of(i))

    @cached_property
    def _offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([self._count(i) for i in range(len(self._files))])]).astype(np.int64)

    def __len__(self) -> int:
        self._files.check_current()
        return int(self._offsets[-1])

    def _file_rows(self, i: int) -> Optional[np.ndarray]:
        """The rows of file i in this view, as positions in the file; None when they are all of them."""
        if i not in self._positions:
            import pyarrow as pa
            rec = self._files.records[i]
            where = self._where_of(i)
            if where is None or (self._filter is None and rec is not None and not rec["failed"]):
                self._positions[i] = None
            else:
                data = self._files.open(i)
                cols = [c for c in data.schema.names if c not in VECTOR_COLUMNS]
                t = data.to_table(columns=cols)
                t = t.append_column("__pos", pa.array(np.arange(t.num_rows, dtype=np.int64))).filter(where)
                self._positions[i] = t.column("__pos").to_numpy()
        return self._positions[i]

    def _columns(self, columns: Optional[Sequence[str]]) -> List[str]:
        known = SCALAR_COLUMNS + GRID_COLUMNS + VECTOR_COLUMNS + (ERROR_COLUMN,)
        if columns is None:
            return list(SCALAR_COLUMNS)
        if isinstance(columns, str):
            columns = [columns]
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise ValueError(f"Unknown bank column(s) {', '.join(map(repr, unknown))}; the columns are "
                             f"{', '.join(known)}.")
        return list(columns)

    def _complete(self, i: int, batch, columns: Sequence[str]):
        """A batch of file i with every asked column, in the bank schema's types (older files lack some)."""
        import pyarrow as pa
        schema, n, arrays = self.schema, batch.num_rows, []
        for name in columns:
            target = schema.field(name).type
            if name in batch.schema.names:
                col = batch.column(name)
                if col.type != target:
                    try:
                        col = col.cast(target)
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                        raise BankError(f"Column '{name}' of '{self._files.paths[i]}' is {col.type}, not "
                                        f"{target} ({err}); write it again in dv.bank_schema().") from None
            elif name in GRID_COLUMNS and self._files.records[i] is not None and self._files.records[i].get("grid"):
                col = pa.array([self._files.records[i]["grid"][GRID_COLUMNS.index(name)]] * n, target)
            elif name in VECTOR_COLUMNS:  # not written (e.g. no ground-truth parts): empty vectors
                col = pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.float32()))
            else:
                col = pa.nulls(n, target)
            arrays.append(col)
        return pa.RecordBatch.from_arrays(arrays, names=list(columns))

    def iter_batches(self, columns: Optional[Sequence[str]] = None, batch_size: int = 65_536,
                     with_rows: bool = False) -> Iterator:
        """The view's rows as pyarrow RecordBatches of up to `batch_size` rows, file by file, in bank order.

        columns: bank column names (default: the scalar columns). with_rows: a first column `bank_row` (int64),
        each row's position in this view (what `take` and `clusters.rows_` use)."""
        import pyarrow as pa
        columns = self._columns(columns)
        start = 0
        for i in range(len(self._files)):
            rec = self._files.records[i]
            if rec is not None and rec["rows"] == 0:
                continue
            data = self._files.open(i)
            present = [c for c in columns if c in data.schema.names]
            for batch in data.to_batches(columns=present, filter=self._where_of(i), batch_size=batch_size):
                if batch.num_rows == 0:
                    continue
                batch = self._complete(i, batch, columns)
                if with_rows:
                    rows = pa.array(np.arange(start, start + batch.num_rows, dtype=np.int64))
                    batch = pa.RecordBatch.from_arrays([rows] + batch.columns, names=["bank_row"] + columns)
                start += batch.num_rows
                yield batch

    def to_table(self, columns: Optional[Sequence[str]] = None):
        """The view's rows, the columns asked for (default: all), as one pyarrow Table (loaded whole)."""
        import pyarrow as pa
        columns = self._columns(columns) if columns is not None else list(self.schema.names)
        batches = list(self.iter_batches(columns))
        schema = pa.schema([self.schema.field(c) for c in columns])
        return pa.Table.from_batches(batches, schema=schema)

    def to_pandas(self, columns: Optional[Sequence[str]] = None):
        """The view's rows as a DataFrame indexed by bank row: the scalar columns, or those asked for (vector
        columns come as one array per cell; prefer `vectors`)."""
        return self.to_table(self._columns(columns)).to_pandas()

    @cached_property
    def table(self):
        """Every column of the view as one pyarrow Table (the whole bank in memory: small banks only)."""
        return self.to_table()

    def take(self, rows: Sequence[int], columns: Optional[Sequence[str]] = None):
        """The given rows of the view (positions 0..len-1, any order), the columns asked for, as a Table."""
        import pyarrow as pa
        columns = self._columns(columns)
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"Row {int(rows.max() if rows.max() >= len(self) else rows.min())} is out of range: "
                             f"this bank has {len(self)} rows.")
        order = np.argsort(rows, kind="stable")
        file_of = np.searchsorted(self._offsets, rows[order], side="right") - 1
        parts = []
        for i in np.unique(file_of):
            local = rows[order][file_of == i] - self._offsets[i]
            positions = self._file_rows(int(i))
            data = self._files.open(int(i))
            present = [c for c in columns if c in data.schema.names]
            got = data.take(pa.array(local if positions is None else positions[local]), columns=present)
            parts += [self._complete(int(i), b, columns) for b in got.to_batches() if b.num_rows]
        schema = pa.schema([self.schema.field(c) for c in columns])
        table = pa.Table.from_batches(parts, schema=schema)
        return table.take(pa.array(np.argsort(order, kind="stable")))

    # ------------------------------------------------------------------ vectors
    def vectors(self, name: str, rows: Optional[Sequence[int]] = None) -> np.ndarray:
        """Column `name` ("ossm", "embedding", "pooled", "loading", "part_overlap") as (N, D) float32, for
        `rows` (read only those) or for the whole view (rows=None: the whole column in memory)."""
        if name not in VECTOR_COLUMNS:
            raise ValueError(f"'{name}' is not a vector column; they are {', '.join(VECTOR_COLUMNS)}.")
        where = f"the bank '{self.path}'"
        try:
            if rows is not None:
                return vectors_to_numpy(self.take(rows, [name]).column(0), name, where)
            parts = [vectors_to_numpy(b.column(0), name, where) for b in self.iter_batches([name])]
        except ValueError as err:
            raise BankError(str(err)) from None
        parts = [p for p in parts if len(p)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def ossms_of(self, rows: Optional[Sequence[int]] = None) -> np.ndarray:
        """Low-resolution OSSMs (N, h, w) of `rows` (None: every row, loaded whole)."""
        flat = self.vectors("ossm", rows)
        grid = self.grid
        if len(flat) and (grid is None or grid[0] * grid[1] != flat.shape[1]):
            source = "manifest" if self.manifest is not None else "grid columns"
            raise BankError(f"The bank '{self.path}' stores OSSMs of {flat.shape[1]} cells, but its {source} gives "
                            f"the grid {grid}; rerun dv.extract with overwrite=True.")
        return flat.reshape(len(flat), *(grid or (0, 0)))

    def features(self, kind: str, rows: Optional[Sequence[int]] = None) -> np.ndarray:
        """Component features (N, D) by name: "embedding", "pooled", "loading" or "ossm"."""
        if kind not in FEATURES:
            raise ValueError(f"feature must be one of {', '.join(FEATURES)}; got {kind!r}.")
        return self.vectors(FEATURES[kind], rows)

    def __getattr__(self, name: str):
        if name in _ATTRIBUTES:  # whole columns, loaded once
            value = self.ossms_of() if name == "ossms" else self.vectors(_ATTRIBUTES[name])
            if name == "part_overlap" and value.shape == (0, 0):
                value = np.zeros((len(self), 0), np.float32)
            self.__dict__[name] = value
            return value
        raise AttributeError(f"'OSSMBank' object has no attribute '{name}'")


def _label_regex(label: str) -> str:
    import re
    return f"(^|\\|){re.escape(str(label))}(\\||$)"


def _call(function: str, *args, **options):
    import pyarrow.compute as pc
    return getattr(pc, function)(*args, **options)


def _and(parts: List[Any]):
    out = None
    for p in parts:
        out = p if out is None else out & p
    return out
