"""The bank format: one Parquet row per (image, prompt, component), or one row per image that failed.

What `dv.extract` (either engine), `dv.Extractor` and a hand-written table share is `bank_schema()`: scalar columns,
the OSSM grid per row, vectors as lists of float32, an `error` column (null on success), and the protocol as JSON
in the schema's metadata, so that a folder of Parquet files needs no manifest to be read. The manifest
(`manifest.json`, local engine) adds shard checksums and input fingerprints, which are what resuming needs.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional, Sequence

import numpy as np

FORMAT_VERSION = 3  # 3: error rows, grid per row, list<float32> vectors, protocol in the Parquet metadata
READABLE_FORMATS = (1, 2, 3)  # 1: no checksums; 2: checksums, fixed-size vectors, grid in the manifest only
MANIFEST = "manifest.json"
METADATA_KEY = b"decomviz"

#: Scalar columns of a component row, with their Arrow types (as `pyarrow` names them).
SCALAR_TYPES = (("image_index", "int64"), ("image_id", "string"), ("labels", "string"), ("prompt", "string"),
                ("prompt_index", "int64"), ("component", "int64"), ("singular_value", "float64"),
                ("explained_variance", "float64"), ("weight", "float64"), ("contribution", "float64"),
                ("masked_score", "float64"), ("base_score", "float64"), ("reference_score", "float64"))
SCALAR_COLUMNS = tuple(name for name, _ in SCALAR_TYPES)
#: The OSSM grid (h, w) of each row: `ossm` holds h * w cells, row-major.
GRID_COLUMNS = ("grid_h", "grid_w")
#: Columns holding one float32 vector per row.
VECTOR_COLUMNS = ("ossm", "embedding", "pooled", "loading", "part_overlap")
ERROR_COLUMN = "error"
#: Columns every bank file must have (older formats lack grid, error).
REQUIRED_COLUMNS = ("image_index", "image_id", "labels", "prompt", "prompt_index", "component", "weight")


def bank_schema(protocol: Optional[Dict[str, Any]] = None, part_vocabulary: Sequence[str] = (),
                dataset: Optional[Dict[str, Any]] = None, prompts: Any = None):
    """The `pyarrow.Schema` of a bank, its metadata (key ``b"decomviz"``) holding as JSON the format version,
    the protocol (method, knobs, model), the part vocabulary of `part_overlap`, the dataset and the prompts."""
    import pyarrow as pa
    fields = [pa.field(name, getattr(pa, kind)()) for name, kind in SCALAR_TYPES]
    fields += [pa.field(name, pa.int64()) for name in GRID_COLUMNS]
    fields += [pa.field(name, pa.list_(pa.float32())) for name in VECTOR_COLUMNS]
    fields.append(pa.field(ERROR_COLUMN, pa.string()))
    meta = {"format": FORMAT_VERSION, "protocol": protocol or {}, "part_vocabulary": list(part_vocabulary),
            "dataset": dataset, "prompts": prompts}
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(meta).encode("utf-8")})


def schema_metadata(schema) -> Dict[str, Any]:
    """The decomviz metadata of a Parquet/Arrow schema ({} for a table written without it)."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if not raw:
        return {}
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def vector_array(values: np.ndarray):
    """(N, D) floats -> an Arrow list<float32> array of N vectors of D values."""
    import pyarrow as pa
    values = np.ascontiguousarray(values, dtype=np.float32)
    n = values.shape[0]
    width = values.shape[1] if values.ndim == 2 else 0
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * width)
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), type=pa.float32()))


def vectors_to_numpy(column, name: str, where: str) -> np.ndarray:
    """An Arrow column of vectors (list or fixed-size list) -> (N, D) float32; a `ValueError` naming the column
    and `where` it comes from when the vectors are missing or of different lengths."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], type=column.type)
    n = len(column)
    width = getattr(column.type, "list_size", None)
    if width is None:
        if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
            raise ValueError(f"Column '{name}' of {where} is {column.type}, not a list of floats per row.")
        if n == 0:
            return np.zeros((0, 0), np.float32)
        lengths = pc.list_value_length(column)
        lo, hi = pc.min_max(lengths).values()
        if column.null_count or lo.as_py() != hi.as_py():
            raise ValueError(f"Column '{name}' of {where} does not hold one vector of one length per row "
                             f"({column.null_count} missing, lengths {lo.as_py()}..{hi.as_py()}); write it again "
                             "with dv.extract or in dv.bank_schema().")
        width = int(lo.as_py())
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(n, width)


__all__ = ["FORMAT_VERSION", "READABLE_FORMATS", "MANIFEST", "SCALAR_COLUMNS", "GRID_COLUMNS", "VECTOR_COLUMNS",
           "ERROR_COLUMN", "REQUIRED_COLUMNS", "bank_schema", "schema_metadata", "vector_array", "vectors_to_numpy"]
