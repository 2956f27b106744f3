"""`Extractor`: DecomCAM as a function of a batch of images to a `pyarrow.Table` in the bank schema.

The convention is that of Ray Data's `map_batches` and of `datasets.map(batched=True)`: a batch is a dict of
columns (or a pyarrow Table / pandas DataFrame), the result a table. Every engine is built on it: `dv.extract`
calls it on each shard's images, the Ray engine on each batch in its actors. An image that cannot be read or
explained becomes a row with an `error` (and no component), never an exception that stops the run.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..images import to_model_view
from ..methods.decomcam import DecomCAM
from ..models import CLIPModel, load_model
from .datasets import Item, _read, as_items, check_parts_named, check_templates, resolve_prompts, safe_text
from .schema import GRID_COLUMNS, SCALAR_COLUMNS, VECTOR_COLUMNS, bank_schema

#: Bank columns filled from the Explanation's fields of the same meaning.
EXPLANATION_FIELDS = {"singular_value": "singular_values", "explained_variance": "explained_variance",
                      "weight": "weights", "contribution": "contributions", "masked_score": "masked_scores"}


def model_spec(model: CLIPModel) -> Dict[str, Any]:
    """How `load_model` makes this model again elsewhere (a Ray actor): a checkpoint folder or file, or an
    open_clip name with its pretrained tag. Random weights cannot be made again and are refused."""
    source = str(model.source)
    if source.startswith("open_clip:"):
        if not model.pretrained:
            raise ValueError(f"{model.name} has random weights, which another process cannot load again: save them "
                             "(a checkpoint folder) and load that with dv.load_model(checkpoint=...).")
        return {"name": model.name, "pretrained": model.pretrained}
    from pathlib import Path
    return {"checkpoint": source} if Path(source).is_dir() else {"name": model.name, "checkpoint": source}


def protocol_of(cam: DecomCAM) -> Dict[str, Any]:
    """What made a bank: the method's protocol record (`Method.record`: the method and its knobs, the model, the
    input size, the library versions) and how a photo becomes the model's input."""
    return {**cam.record(), "resize_mode": view_mode(cam.model), "crop_offsets": crop_offsets(cam.model)}


#: Protocol entries that change the speed of an extraction, not its maps: a bank matches a method, and an extraction
#: resumes, whatever they were (a batch size's default depends on the device).
SPEED_ONLY = ("batch_size",)


def comparable_protocol(protocol: Any) -> Any:
    """A protocol record without its `SPEED_ONLY` entries, to compare two records by what they make."""
    if not isinstance(protocol, dict):
        return protocol
    return {k: v for k, v in protocol.items() if k not in SPEED_ONLY}


def view_mode(model: CLIPModel) -> str:
    """How the model turns a photo into its input: "squash" (the whole image resized, as SigLIP) or "crop"
    (shorter side resized, centre crop): the ``mode`` of `images.to_model_view`."""
    return "squash" if getattr(model, "resize_mode", None) == "squash" else "crop"


def crop_offsets(model: CLIPModel) -> str:
    """How the model rounds its centre crop's offsets ("round", or "floor" for Hugging Face processors): the
    ``offsets`` of `images.to_model_view`."""
    return getattr(model, "crop_offsets", "round")


class Extractor:
    """DecomCAM as a batch function: ``Extractor(model, prompts, **knobs)(batch) -> pyarrow.Table``.

    model: a `CLIPModel`, a configured `DecomCAM` (its knobs are used), or what `dv.load_model` takes, as a
        dict (``{"checkpoint": "folder"}``) or a name; the model is loaded on the first call (so each Ray actor
        loads its own, on ``device``). An Extractor given a CLIPModel pickles as its load_model arguments.
    prompts: a list, or templates filled per image: "a photo of a {class}" (or "{}") with each of its labels,
        "the {part} of a {class}" with each part it shows.
    dataset: optional items source (a `dv.PartsWorld`, folder, CSV, `dv.datasets` loader): then a batch may
        carry only ``index``, and the images are read by the extractor (in the actor, for Ray).
    images_per_call: images per engine call. knobs: DecomCAM's (n_components, top_channels, ...).

    A batch has, per image: ``image`` (PIL, array, encoded bytes) or ``path``; ``id`` (else the path or the
    index); optional ``index`` (int, default -1), ``labels`` (list, or "a|b"), ``prompts`` (list or "p|q",
    overriding `prompts`), ``parts`` (dict "class/part" -> bool mask in the image's own geometry, for
    `part_overlap`, scored as the model saw it: cropped or squashed; parts need a `part_vocabulary`, else the
    call is refused rather than give rows without ground truth). The table has one row
    per (image, prompt, component), in (image, prompt, component) order, and one row with `error` set per image
    that failed; its schema is `bank_schema(...)`, with the protocol in the metadata.
    """

    def __init__(self, model, prompts=None, *, dataset=None, part_vocabulary: Optional[Sequence[str]] = None,
                 images_per_call: int = 16, device=None, **knobs):
        check_templates(prompts)
        if isinstance(images_per_call, bool) or not isinstance(images_per_call, int) or images_per_call < 1:
            raise ValueError(f"images_per_call must be a positive integer, got {images_per_call!r}.")
        self._cam: Optional[DecomCAM] = None
        self._schema = None
        if isinstance(model, DecomCAM):
            if knobs:
                raise ValueError("Give the knobs either to the DecomCAM or to the Extractor, not both.")
            self._cam, knobs = model, model.given_params()  # a knob it chose for its device, each actor chooses
            model = model.model
        if not isinstance(model, (CLIPModel, Mapping, str)):
            raise TypeError(f"model must be a CLIPModel, a DecomCAM, a model name or a dict of dv.load_model "
                            f"arguments; got {type(model).__name__}.")
        if knobs.get("integration", "pixel") != "pixel":
            raise ValueError("An Extractor needs pixel integration (it stores OSSMs, weights and the masked-input "
                             "embeddings); drop integration=... or pass integration='pixel'.")
        self.model, self.knobs, self.device = model, dict(knobs), device
        self.prompts = prompts
        self.dataset = None if dataset is None else as_items(dataset)
        vocab = part_vocabulary if part_vocabulary is not None else getattr(self.dataset, "part_vocabulary", [])
        self.part_vocabulary = list(vocab)
        self.images_per_call = images_per_call
        if self._cam is None and isinstance(model, CLIPModel):
            self._cam = DecomCAM(model, **self.knobs)  # fails now on a bad knob, not in an actor

    def __repr__(self) -> str:
        what = self.model.name if isinstance(self.model, CLIPModel) else self.model
        return f"Extractor({what!r}, prompts={self.prompts!r}, knobs={self.knobs})"

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cam"] = state["_schema"] = None
        if isinstance(self.model, CLIPModel):
            state["model"] = model_spec(self.model)
        return state

    @property
    def cam(self) -> DecomCAM:
        """The DecomCAM, loading the model first where the Extractor was given how to load it."""
        if self._cam is None:
            spec = {"name": self.model} if isinstance(self.model, str) else dict(self.model)
            spec.setdefault("device", self.device)
            self._cam = DecomCAM(load_model(**spec), **self.knobs)
        return self._cam

    @property
    def schema(self):
        """The `pyarrow.Schema` of the tables this extractor makes (loads the model for the protocol)."""
        if self._schema is None:
            dataset = self.dataset.describe() if self.dataset is not None else None
            self._schema = bank_schema(protocol_of(self.cam), self.part_vocabulary, dataset, self.prompts)
        return self._schema

    def __call__(self, batch):
        items = self.items(batch)
        return self.explain_items(items)

    def items(self, batch) -> List[Item]:
        """The batch as `Item`s, each with its image or the reason it could not be read."""
        cols = _as_columns(batch)
        n = len(next(iter(cols.values()))) if cols else 0
        index = _first(cols, "index", "image_index")
        source = _first(cols, "image", "path")
        if source is None:
            if index is None or self.dataset is None:
                raise ValueError("A batch needs an 'image' or 'path' column (or an 'index' column with an Extractor "
                                 f"given dataset=...); got the columns {sorted(cols)}.")
            return [self.dataset[int(i)] for i in index]
        ids, labels = _first(cols, "id", "image_id"), _first(cols, "labels", "label")
        prompts, parts = _first(cols, "prompts", "prompt"), _first(cols, "parts", "masks")
        out = []
        for r in range(n):
            i = -1 if index is None else int(index[r])
            ident = str(ids[r]) if ids is not None else (str(source[r]) if "path" in cols else str(i))
            own = _split(prompts[r]) if prompts is not None else []
            item = Item(i, ident, labels=_split(labels[r]) if labels is not None else [], prompts=own or None,
                        parts=dict(parts[r] or {}) if parts is not None else {})
            out.append(_read(item, source[r]))
        return out

    def explain_items(self, items: Sequence[Item], progress: Optional[Callable[[int, int], None]] = None):
        """The bank table of `items`: explained rows, and one error row per item that failed."""
        import pyarrow as pa
        check_parts_named(items, self.part_vocabulary)
        good, failed = [], []
        for pos, it in enumerate(items):
            if it.error is None:
                try:
                    resolve_prompts(it, self.prompts)
                except ValueError as err:
                    it.error = str(err)
            (failed if it.error else good).append((pos, it))
        cam, schema = self.cam, self.schema
        columns, errors = [], []
        try:
            columns.append(explain_batch(cam, [it for _, it in good], self.prompts, self.part_vocabulary,
                                         self.images_per_call, progress, positions=[p for p, _ in good]))
        except Exception:  # one image's fault must not cost the others: explain them one by one
            for pos, it in good:
                try:
                    columns.append(explain_batch(cam, [it], self.prompts, self.part_vocabulary, positions=[pos]))
                except Exception as err:
                    it.error = f"explaining it failed: {type(err).__name__}: {err}"
                    errors.append((pos, it))
        failed = sorted(failed + errors, key=lambda p: p[0])
        tables = [rows_table(c, schema) for c in columns if len(c["image_index"])]
        if failed:
            tables.append(error_table([it for _, it in failed], [p for p, _ in failed], schema))
        if not tables:
            return schema.empty_table()
        table = pa.concat_tables(tables)
        order = np.argsort(table.column("_pos").to_numpy(), kind="stable")
        return table.take(pa.array(order)).drop_columns(["_pos"]).replace_schema_metadata(schema.metadata)


def explain_batch(cam: DecomCAM, items: Sequence[Item], prompts, part_vocabulary: Sequence[str] = (),
                  batch_size: Optional[int] = None, progress: Optional[Callable[[int, int], None]] = None,
                  positions: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """Explain readable items; return columns with one entry per (image, prompt, component).

    Pairs are grouped by prompt, so that images with different prompt lists (a template filled with each
    scene's labels) still share engine calls; each call explains up to `batch_size` images against one prompt.
    Rows come back ordered by (item, prompt, component); `positions` (default 0..n-1) is each item's place in
    the caller's order (column `_pos`). `progress(done, total)` is called with pair counts. Pure: no I/O.
    """
    positions = list(range(len(items))) if positions is None else list(positions)
    by_prompt: Dict[str, List[tuple]] = {}
    for pos, item in enumerate(items):
        for t, prompt in enumerate(resolve_prompts(item, prompts)):
            by_prompt.setdefault(prompt, []).append((pos, t))
    total = sum(len(v) for v in by_prompt.values())
    step = batch_size or max(total, 1)
    batches, done = [], 0
    for prompt, pairs in by_prompt.items():
        for lo in range(0, len(pairs), step):
            chunk = pairs[lo:lo + step]
            exp = cam([items[pos].image for pos, _ in chunk], [prompt])
            batches.append(_columns(exp, items, chunk, positions, prompt, part_vocabulary, view_mode(cam.model),
                                    crop_offsets(cam.model)))
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return _sort_rows(_concat(batches))


def _columns(exp, items: Sequence[Item], chunk: Sequence[tuple], positions: Sequence[int], prompt: str,
             part_vocabulary: Sequence[str], mode: str = "crop", offsets: str = "round") -> Dict[str, Any]:
    """Rows of one single-prompt Explanation of the items in `chunk` [(item, prompt index)]: (image, component)."""
    B, _, K = exp.weights.shape
    n = B * K
    group = [items[pos] for pos, _ in chunk]
    b_of = np.repeat(np.arange(B), K)
    cols: Dict[str, Any] = {
        "_pos": [positions[chunk[b][0]] for b in b_of],
        "image_index": [group[b].index for b in b_of], "image_id": [group[b].id for b in b_of],
        "labels": ["|".join(group[b].labels) for b in b_of], "prompt": [prompt] * n,
        "prompt_index": [int(chunk[b][1]) for b in b_of], "component": np.tile(np.arange(K), B).tolist()}
    for col, field in EXPLANATION_FIELDS.items():
        cols[col] = getattr(exp, field).reshape(n).tolist()
    for col in ("base_score", "reference_score"):
        cols[col] = getattr(exp, col)[:, :, None].expand(B, 1, K).reshape(n).tolist()
    loading = torch.zeros(B, 1, K, exp.alpha.shape[-1])
    loading.scatter_(3, exp.channels[:, :, None, :].expand(B, 1, K, -1), exp.v)
    h, w = exp.params["grid"]
    cols["grid_h"], cols["grid_w"] = [int(h)] * n, [int(w)] * n
    cols["ossm"] = exp.ossms_lowres.reshape(n, -1).numpy()
    cols["embedding"] = exp.embeddings.reshape(n, -1).numpy()
    cols["pooled"] = exp.pooled.reshape(n, -1).numpy()
    cols["loading"] = loading.reshape(n, -1).numpy()
    cols["part_overlap"] = _part_overlap(exp, group, part_vocabulary, mode, offsets).reshape(n, -1)
    return cols


_LIST_COLUMNS = ("_pos",) + SCALAR_COLUMNS + GRID_COLUMNS


def _concat(batches: List[Dict[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {k: [] for k in _LIST_COLUMNS}
    for cols in batches:
        for k in _LIST_COLUMNS:
            out[k] += list(cols[k])
    for k in VECTOR_COLUMNS:
        parts = [c[k] for c in batches]
        out[k] = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    return out


def _sort_rows(columns: Dict[str, Any]) -> Dict[str, Any]:
    order = np.lexsort((np.asarray(columns["component"]), np.asarray(columns["prompt_index"]),
                        np.asarray(columns["_pos"])))
    return {k: (v[order] if isinstance(v, np.ndarray) else [v[i] for i in order]) for k, v in columns.items()}


def _part_overlap(exp, group: Sequence[Item], vocabulary: Sequence[str], mode: str = "crop",
                  offsets: str = "round") -> np.ndarray:
    """Energy share of each full-resolution OSSM inside each ground-truth part, (B, T, K, V)."""
    B, T, K, H, W = exp.ossms.shape
    out = np.zeros((B, T, K, len(vocabulary)), np.float32)
    for b, item in enumerate(group):
        masks = gt_masks(item, vocabulary, (H, W), mode, offsets)
        if masks is None:
            continue
        out[b] = overlap_shares(exp.ossms[b], masks)
    return out


def overlap_shares(ossms: torch.Tensor, masks: np.ndarray) -> np.ndarray:
    """Share of each map's energy inside each mask: ossms (..., H, W) >= 0, masks (V, H, W) bool -> (..., V)
    float32; a map without energy has all shares 0."""
    energy = ossms.sum(dim=(-2, -1))[..., None]
    inside = torch.einsum("...hw,vhw->...v", ossms, torch.from_numpy(masks).float())
    return torch.where(energy > 0, inside / energy.clamp_min(1e-12), torch.zeros_like(inside)).numpy()


def gt_masks(item: Item, vocabulary: Sequence[str], size, mode: str = "crop",
             offsets: str = "round") -> Optional[np.ndarray]:
    """Ground-truth part masks (V, H, W) bool as the model saw them (``mode`` "crop" or "squash" and the crop's
    ``offsets``, see `images.to_model_view`: a part keeps its area), or None without ground truth."""
    if not vocabulary or not item.parts:
        return None
    H, W = size
    out = np.zeros((len(vocabulary), H, W), bool)
    for v, key in enumerate(vocabulary):
        mask = item.parts.get(key)
        if mask is None:
            continue
        mask = np.asarray(mask, bool)
        out[v] = mask if mask.shape == (H, W) else to_model_view(mask, (H, W), mode, offsets=offsets)
    return out


_gt_masks = gt_masks  # the name earlier code used


def rows_table(columns: Dict[str, Any], schema):
    """Explained rows (columns as `explain_batch` returns them, `_pos` kept) as a table in `schema` + `_pos`."""
    import pyarrow as pa
    from .schema import vector_array
    arrays = [pa.array(columns["_pos"], pa.int64())]
    for field in schema:
        if field.name in VECTOR_COLUMNS:
            arrays.append(vector_array(columns[field.name]))
        elif field.name in columns:
            arrays.append(pa.array(columns[field.name], field.type))
        else:  # error: null on success
            arrays.append(pa.nulls(len(columns["_pos"]), field.type))
    return pa.Table.from_arrays(arrays, schema=schema.insert(0, pa.field("_pos", pa.int64())))


def error_table(items: Sequence[Item], positions: Sequence[int], schema):
    """One row per failed item: its index, id, labels and error; nulls elsewhere."""
    import pyarrow as pa
    # text as Parquet can hold it: a file name that is not UTF-8 (in an id or an error) gets U+FFFD, so that it
    # fails one row, never the shard
    known = {"image_index": [it.index for it in items], "image_id": [safe_text(it.id) for it in items],
             "labels": [safe_text("|".join(it.labels)) for it in items],
             "error": [safe_text(it.error) for it in items]}
    arrays = [pa.array(list(positions), pa.int64())]
    arrays += [pa.array(known[f.name], f.type) if f.name in known else pa.nulls(len(items), f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema.insert(0, pa.field("_pos", pa.int64())))


def _as_columns(batch) -> Dict[str, list]:
    if isinstance(batch, Mapping):
        return {k: list(v) if not isinstance(v, (str, bytes)) else [v] for k, v in batch.items()}
    if hasattr(batch, "to_pydict"):  # pyarrow Table / RecordBatch
        return batch.to_pydict()
    if hasattr(batch, "columns") and hasattr(batch, "iloc"):  # pandas DataFrame
        return {c: list(batch[c]) for c in batch.columns}
    raise TypeError(f"A batch is a dict of columns, a pyarrow Table or a pandas DataFrame; got {type(batch).__name__}.")


def _first(cols: Dict[str, list], *names: str) -> Optional[list]:
    return next((cols[n] for n in names if n in cols), None)


def _split(value) -> List[str]:
    """Labels or prompts of one row: a list, or one string with '|' between them."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split("|") if v.strip()]
    return [str(v) for v in list(value) if v is not None and str(v)]
