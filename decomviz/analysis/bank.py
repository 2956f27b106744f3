"""OSSMBank: read a bank written by `extract` (manifest + Parquet shards). Nothing in it is executed."""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Dict, List

import numpy as np

from .schema import FORMAT_VERSION, MANIFEST, VECTOR_COLUMNS


class OSSMBank:
    """One row per (image, prompt, component), in shard order.

    `len(bank)` rows; `bank.to_pandas()` the scalar columns; `bank.ossms` (N, h, w), `bank.embeddings` (N, D),
    `bank.pooled` / `bank.loadings` (N, C), `bank.part_overlap` (N, V) over `bank.part_vocabulary`;
    `bank.failed` the images that could not be read; `bank.protocol` how it was made.
    """

    def __init__(self, path):
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(f"'{self.path}' is not an OSSM bank (no {MANIFEST}); create one with dv.extract.")
        try:
            self.manifest = json.loads(manifest.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"'{manifest}' is not valid JSON ({err}).") from None
        if self.manifest.get("format") != FORMAT_VERSION:
            raise ValueError(f"'{self.path}' has bank format {self.manifest.get('format')}; this decomviz reads "
                             f"{FORMAT_VERSION}.")
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
        return self.manifest["protocol"]

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
        import pyarrow.parquet as pq
        tables = [pq.read_table(self.path / s["file"]) for s in self.shards if s["rows"]]
        if not tables:
            raise ValueError(f"The bank '{self.path}' has no rows yet.")
        return pa.concat_tables(tables)

    def to_pandas(self):
        """Scalar columns, one row per component (vectors are in the array attributes)."""
        return self.table.drop_columns([c for c in VECTOR_COLUMNS if c in self.table.column_names]).to_pandas()

    def _vectors(self, name: str) -> np.ndarray:
        if name not in self.table.column_names:
            return np.zeros((len(self), 0), np.float32)
        col = self.table.column(name).combine_chunks()
        width = col.type.list_size
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(self), width)

    @cached_property
    def ossms(self) -> np.ndarray:
        h, w = self.grid
        return self._vectors("ossm").reshape(len(self), h, w)

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
