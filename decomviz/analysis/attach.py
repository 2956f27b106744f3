"""Ground truth after the fact: a bank extracted without part masks, given the part overlaps of a dataset that has
them, without explaining anything again.

A component's full-resolution OSSM is its low-resolution map (in the bank) upsampled to the model's input as the
engine did (`protocol["upsample"]`), so its energy share inside each part is what extraction would have stored.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch

from ..ops import atomic_write, upsample
from .bank import OSSMBank
from .datasets import as_items, item_id
from .extractor import gt_masks, overlap_shares
from .schema import ERROR_COLUMN, bank_schema, schema_metadata, vector_array, vectors_to_numpy


def attach_parts(bank: OSSMBank, dataset, out, part_vocabulary: Optional[Sequence[str]] = None,
                 overwrite: bool = False) -> OSSMBank:
    """A copy of ``bank`` in the folder ``out`` whose rows carry the ground-truth part overlaps of ``dataset``.

    Parameters
    ----------
    bank : OSSMBank
        A bank extracted from ``dataset`` (or from the same images in the same order) without parts.
    dataset : a dataset with parts (`dv.PartsWorld`, `dv.datasets.COCOParts`, `MaskFolder`, or any with
        ``part_vocabulary``) that holds the bank's images under the same ids (a bank row's ``image_id`` is
        looked up among the dataset's item ids; one that is not there is an error naming it).
    out : folder of the new bank (the bank itself is never changed).
    part_vocabulary : the "object/part" names to score, default the dataset's.
    overwrite : replace a bank already in ``out``.

    Returns
    -------
    OSSMBank
        The new bank: every row of ``bank`` (failed rows too), ``part_overlap`` (N, V) over the vocabulary, and the
        dataset's description, so that the cluster views show its parts. Images whose item has no parts, or
        whose item failed, get shares of 0 (a warning names those that failed).
    """
    import pyarrow.parquet as pq
    items = as_items(dataset)
    vocab: List[str] = list(part_vocabulary if part_vocabulary is not None
                            else getattr(items, "part_vocabulary", None) or [])
    if not vocab:
        raise ValueError(f"{type(dataset).__name__} has no part vocabulary, so there are no parts to attach: give a "
                         "dataset with parts (dv.PartsWorld, dv.datasets.COCOParts, MaskFolder) or pass "
                         "part_vocabulary=[...].")
    out = Path(out)
    if out.resolve() == Path(bank.path).resolve():
        raise ValueError("attach_parts writes a new bank: give an out= folder other than the bank's own.")
    if (out / "manifest.json").exists():
        raise ValueError(f"'{out}' holds a bank written by dv.extract; attach_parts writes a new bank: choose "
                         "another out= folder.")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"'{out}' is not empty; choose another out= folder, or overwrite=True.")
        for old in out.glob("*.parquet"):
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    protocol = bank.protocol
    if not protocol.get("image_size"):
        raise ValueError(f"The bank '{bank.path}' does not record the model's input size (protocol['image_size']); "
                         "extract it again with dv.extract.")
    size = tuple(int(s) for s in protocol["image_size"])
    mode = "squash" if protocol.get("resize_mode") == "squash" else "crop"
    view = (mode, protocol.get("crop_offsets", "round"))
    meta = schema_metadata(bank.schema)
    schema = bank_schema(protocol, vocab, items.describe(), meta.get("prompts"))
    cache, failed = {}, []
    where = {item_id(items, j): j for j in range(len(items))}
    for f in range(len(bank._files)):
        table = bank._files.open(f).to_table()
        values = _overlaps(table, items, where, vocab, size, view, protocol.get("upsample", "bilinear"), bank.grid,
                           cache, failed)
        column = vector_array(values)
        errors = table.column(ERROR_COLUMN).is_valid() if ERROR_COLUMN in table.schema.names else None
        if errors is not None and errors.to_numpy(zero_copy_only=False).any():
            import pyarrow as pa
            import pyarrow.compute as pc
            column = pc.if_else(errors, pa.nulls(len(column), column.type), column)
        table = _conform(table, schema).set_column(schema.get_field_index("part_overlap"), "part_overlap", column)
        with atomic_write(out / f"parts-{f:05d}.parquet") as tmp:
            pq.write_table(table.cast(schema), tmp)
    if failed:
        warnings.warn(f"{len(failed)} image(s) of the dataset failed and got no ground truth: "
                      + "; ".join(failed[:5]) + ("; ..." if len(failed) > 5 else ""), stacklevel=2)
    return OSSMBank(out)


def _conform(table, schema):
    """The table with every column of ``schema`` (older files lack some, or hold other list types), in its order."""
    import pyarrow as pa
    cols = []
    for field in schema:
        if field.name in table.schema.names:
            cols.append(table.column(field.name).cast(field.type))
        else:
            cols.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _overlaps(table, items, where, vocab, size, view, up_mode, grid, cache, failed) -> np.ndarray:
    """(rows, V) part shares of one bank file's rows; failed rows and images without parts get 0."""
    import pyarrow as pa
    n = table.num_rows
    out = np.zeros((n, len(vocab)), np.float32)
    ids = np.asarray(table.column("image_id").to_pylist(), dtype=object)
    ok = (np.ones(n, bool) if ERROR_COLUMN not in table.schema.names
          else table.column(ERROR_COLUMN).is_null().to_numpy(zero_copy_only=False))
    explained = np.flatnonzero(ok)
    if not len(explained):
        return out
    flat = vectors_to_numpy(table.column("ossm").take(pa.array(explained)), "ossm", "the bank")
    if "grid_h" in table.schema.names:
        gh = table.column("grid_h").to_numpy(zero_copy_only=False)[explained]
        gw = table.column("grid_w").to_numpy(zero_copy_only=False)[explained]
    else:  # format 2: the grid is the manifest's
        gh, gw = np.full(len(explained), grid[0]), np.full(len(explained), grid[1])
    for ident in dict.fromkeys(ids[explained].tolist()):
        pos = np.flatnonzero(ids[explained] == ident)
        masks = _masks_of(ident, where, items, vocab, size, view, cache, failed)
        if masks is None:
            continue
        h, w = int(gh[pos[0]]), int(gw[pos[0]])
        full = upsample(torch.from_numpy(flat[pos].reshape(len(pos), h, w)), size, mode=up_mode)
        if up_mode == "bicubic":
            full = full.clamp_min(0)
        out[explained[pos]] = overlap_shares(full, masks)
    return out


def _masks_of(ident: str, where, items, vocab, size, view, cache, failed):
    """The model-view masks (V, H, W) of the dataset's item with id ``ident``, or None without parts."""
    if ident in cache:
        return cache[ident]
    if ident not in where:
        some = ", ".join(f"'{k}'" for k in list(where)[:3])
        raise ValueError(f"The bank's image '{ident}' is not in the dataset (its ids are like {some}): attach the "
                         "parts of a dataset that holds the bank's images under the same ids.")
    item = items[where[ident]]
    if item.error is not None:
        failed.append(f"{item.id}: {item.error}")
        masks = None
    else:
        masks = gt_masks(item, vocab, size, *view)
    cache[ident] = masks
    return masks
