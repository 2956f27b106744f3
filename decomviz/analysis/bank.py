"""OSSMBank: read a bank written by `extract` (manifest + Parquet shards). Nothing in it is executed; every shard's
checksum is verified when it is read, and shard names never lead outside the bank folder."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Dict, List

import numpy as np

from .schema import VECTOR_COLUMNS
from .shards import BankError, read_manifest, read_shard, shard_problem

_SCALARS = ("image_index", "image_id", "labels", "prompt", "prompt_index", "component", "weight")


class OSSMBank:
    """One row per (image, prompt, component), in shard order.

    `len(bank)` rows; `bank.to_pandas()` the scalar columns; `bank.ossms` (N, h, w), `bank.embeddings` (N, D),
    `bank.pooled` / `bank.loadings` (N, C), `bank.part_overlap` (N, V) over `bank.part_vocabulary`;
    `bank.failed` the images that could not be read; `bank.protocol` how it was made; `bank.verify()` the
    shards that are missing or damaged. A damaged shard raises a `BankError` naming it when read; rerunning
    `extract` with the same arguments re-extracts it.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.shards = [self.manifest["shards"][k] for k in sorted(self.manifest["shards"])]

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete (rerun extract to resume)"
        return f"OSSMBank('{self.path}', rows={len(self)}, images={self.n_images}, {state})"

    def __len__(self) -> int:
        return sum(s["rows"] for s in self.shards)

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    @property
    def protocol(self) -> Dict:
        return dict(self.manifest.get("protocol") or {})

    def verify(self) -> List[str]:
        """'file: problem' for each shard that is missing, damaged or unchecked; [] when all are intact."""
        return [f"{s['file']}: {p}" for s in self.shards if (p := shard_problem(self.path, s))]

    @property
    def part_vocabulary(self) -> List[str]:
        return list(self.manifest.get("part_vocabulary", []))

    @property
    def n_images(self) -> int:
        return sum(s["images"] - len(s["failed"]) for s in self.shards)

    @property
    def failed(self) -> List[Dict]:
        return [f for s in self.shards for f in s["failed"]]

    @property
    def grid(self):
        return next((tuple(s["grid"]) for s in self.shards if s.get("grid")), None)

    @cached_property
    def table(self):
        import pyarrow as pa
        tables = [read_shard(self.path, s) for s in self.shards if s["rows"]]
        if not tables:
            raise ValueError(f"The bank '{self.path}' has no rows yet.")
        first = tables[0].schema
        for s, t in zip([s for s in self.shards if s["rows"]], tables):
            missing = [c for c in _SCALARS if c not in t.column_names]
            if missing or not t.schema.equals(first):
                why = f"lacks the column(s) {', '.join(missing)}" if missing else "has other columns than the first shard"
                raise BankError(f"Shard '{self.path / s['file']}' {why}; it was not written by this extraction. "
                                "Rerun dv.extract with overwrite=True.")
        return pa.concat_tables(tables)

    def to_pandas(self):
        """Scalar columns, one row per component (vectors are in the array attributes)."""
        return self.table.drop_columns([c for c in VECTOR_COLUMNS if c in self.table.column_names]).to_pandas()

    def _vectors(self, name: str) -> np.ndarray:
        if name not in self.table.column_names:
            return np.zeros((len(self), 0), np.float32)
        col = self.table.column(name).combine_chunks()
        width = getattr(col.type, "list_size", None)
        if width is None or len(col) != len(self):
            raise BankError(f"Column '{name}' of the bank '{self.path}' is not one fixed-size vector per row "
                            f"({col.type}, {len(col)} rows for {len(self)}); rerun dv.extract with overwrite=True.")
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(self), width)

    @cached_property
    def ossms(self) -> np.ndarray:
        flat = self._vectors("ossm")
        grid = self.grid
        if grid is None or grid[0] * grid[1] != flat.shape[1]:
            raise BankError(f"The bank '{self.path}' stores OSSMs of {flat.shape[1]} cells, but its manifest gives the "
                            f"grid {grid}; rerun dv.extract with overwrite=True.")
        return flat.reshape(len(self), *grid)

    @cached_property
    def embeddings(self) -> np.ndarray:
        return self._vectors("embedding")

    @cached_property
    def pooled(self) -> np.ndarray:
        return self._vectors("pooled")

    @cached_property
    def loadings(self) -> np.ndarray:
        return self._vectors("loading")

    @cached_property
    def part_overlap(self) -> np.ndarray:
        return self._vectors("part_overlap")

    def features(self, kind: str) -> np.ndarray:
        """Component features by name: "embedding", "pooled", "loading" or "ossm"."""
        table = {"embedding": "embeddings", "pooled": "pooled", "loading": "loadings", "ossm": "ossms"}
        if kind not in table:
            raise ValueError(f"feature must be one of {', '.join(table)}; got {kind!r}.")
        return getattr(self, table[kind]).reshape(len(self), -1)
