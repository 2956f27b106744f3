"""Passes over a bank a batch at a time, for clustering banks larger than memory: the kept rows' features, the
dominant ground-truth part of each row, per-cluster means. Memory is bounded by the batch, plus O(rows) ints."""
from __future__ import annotations

from typing import Iterator, Optional, Sequence, Tuple

import numpy as np

from .schema import vectors_to_numpy

BACKGROUND = "background"
#: Rows per batch read from the bank.
BATCH_ROWS = 65_536


def feature_batches(bank, column: str, min_weight: Optional[float], normalize: bool,
                    batch_size: int = BATCH_ROWS) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """(rows (n,) int64, X (n, D) float64) per batch: the rows whose weight is > min_weight (all for None),
    their `column` vectors, L2-normalised when asked."""
    for batch in bank.iter_batches([column, "weight"], batch_size=batch_size, with_rows=True):
        rows = batch.column(0).to_numpy()
        X = vectors_to_numpy(batch.column(1), column, f"the bank '{bank.path}'").astype(np.float64)
        if min_weight is not None:
            keep = np.nan_to_num(batch.column(2).to_numpy(zero_copy_only=False), nan=-np.inf) > min_weight
            rows, X = rows[keep], X[keep]
        if normalize and len(X):
            X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        if len(rows):
            yield rows, X


def rebatched(batches, min_rows: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """The same rows in batches of at least `min_rows` (the last one may be smaller, when the rows run out)."""
    rows, xs, n = [], [], 0
    for r, X in batches:
        rows.append(r)
        xs.append(X)
        n += len(r)
        if n >= min_rows:
            yield np.concatenate(rows), np.concatenate(xs)
            rows, xs, n = [], [], 0
    if n:
        yield np.concatenate(rows), np.concatenate(xs)


class StreamingPCA:
    """Exact PCA of data seen a batch at a time: `partial_fit(X)` accumulates the count, sum and scatter matrix
    (D x D, float64; one BLAS product per batch), `transform(X)` projects on the top `n_components` axes of the
    covariance so far. The same axes as `sklearn.decomposition.PCA` on all rows (signs: largest loading positive),
    at the cost of one pass, and much faster than IncrementalPCA's SVD per batch."""

    def __init__(self, n_components: int):
        self.n_components = int(n_components)
        self.n_samples_seen_ = 0
        self._sum = self._scatter = None
        self._fitted = None

    def partial_fit(self, X: np.ndarray) -> "StreamingPCA":
        X = np.asarray(X, np.float64)
        if self._sum is None:
            self._sum, self._scatter = np.zeros(X.shape[1]), np.zeros((X.shape[1], X.shape[1]))
        self.n_samples_seen_ += len(X)
        self._sum += X.sum(0)
        self._scatter += X.T @ X
        self._fitted = None
        return self

    def _axes(self):
        if self._fitted is None:
            if not self.n_samples_seen_:
                raise RuntimeError("StreamingPCA has seen no data: call partial_fit first.")
            mean = self._sum / self.n_samples_seen_
            cov = self._scatter / self.n_samples_seen_ - np.outer(mean, mean)
            values, vectors = np.linalg.eigh(cov)
            top = np.argsort(values)[::-1][:self.n_components]
            axes = vectors[:, top].T
            axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(1)])[:, None]
            self._fitted = (mean, axes, np.clip(values[top], 0, None))
        return self._fitted

    @property
    def mean_(self) -> np.ndarray:
        return self._axes()[0]

    @property
    def components_(self) -> np.ndarray:
        """(n_components, D), by decreasing variance."""
        return self._axes()[1]

    @property
    def explained_variance_(self) -> np.ndarray:
        return self._axes()[2]

    def transform(self, X: np.ndarray) -> np.ndarray:
        mean, axes, _ = self._axes()
        return (np.asarray(X, np.float64) - mean) @ axes.T


def kept_rows(bank, min_weight: Optional[float], batch_size: int = BATCH_ROWS) -> np.ndarray:
    """Bank rows whose weight is > min_weight (every row for None), reading only the weight column."""
    if min_weight is None:
        return np.arange(len(bank), dtype=np.int64)
    out = []
    for batch in bank.iter_batches(["weight"], batch_size=batch_size, with_rows=True):
        w = np.nan_to_num(batch.column(1).to_numpy(zero_copy_only=False), nan=-np.inf)
        out.append(batch.column(0).to_numpy()[w > min_weight])
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def dominant_parts(part_overlap: np.ndarray, vocabulary: Sequence[str], min_share: float = 0.1) -> np.ndarray:
    """The ground-truth part holding most of each component's energy; "background" below `min_share`.
    part_overlap (N, V) -> names (N,)."""
    if part_overlap.ndim != 2 or part_overlap.shape[1] == 0 or not len(vocabulary):
        raise ValueError("This bank has no ground-truth parts (extract from dv.PartsWorld to get them).")
    best = part_overlap.argmax(axis=1)
    names = np.asarray(list(vocabulary), dtype=object)[best]
    names[part_overlap.max(axis=1) < min_share] = BACKGROUND
    return names


def row_parts(bank, rows: Optional[np.ndarray] = None, min_share: float = 0.1,
              batch_size: int = BATCH_ROWS) -> Tuple[np.ndarray, np.ndarray]:
    """(names (n,), shares (n,) float32): the dominant part of each of `rows` (None: every row) and the share of
    energy it holds, streaming over `part_overlap` (one int and one float per bank row in memory)."""
    vocabulary = bank.part_vocabulary
    if not vocabulary:
        raise ValueError("This bank has no ground-truth parts (extract from dv.PartsWorld to get them).")
    best = np.full(len(bank), -1, np.int32)
    share = np.zeros(len(bank), np.float32)
    for batch in bank.iter_batches(["part_overlap"], batch_size=batch_size, with_rows=True):
        r = batch.column(0).to_numpy()
        P = vectors_to_numpy(batch.column(1), "part_overlap", f"the bank '{bank.path}'")
        if P.shape[1] != len(vocabulary):
            raise ValueError(f"The bank '{bank.path}' has part overlaps of {P.shape[1]} parts for a vocabulary of "
                             f"{len(vocabulary)}; rerun dv.extract with overwrite=True.")
        best[r], share[r] = P.argmax(axis=1), P.max(axis=1)
    if rows is not None:
        best, share = best[rows], share[rows]
    names = np.asarray(list(vocabulary) + [BACKGROUND], dtype=object)[best]
    names[share < min_share] = BACKGROUND
    return names, share


def cluster_means(bank, column: str, rows: np.ndarray, labels: np.ndarray, n_clusters: int,
                  batch_size: int = BATCH_ROWS) -> Tuple[np.ndarray, np.ndarray]:
    """(means (n_clusters, D) float64, sizes (n_clusters,)): the mean `column` vector of each cluster's rows."""
    of_row = np.full(len(bank), -1, np.int32)
    of_row[np.asarray(rows, np.int64)] = labels
    sums, sizes = None, np.zeros(n_clusters, np.int64)
    for batch in bank.iter_batches([column], batch_size=batch_size, with_rows=True):
        lab = of_row[batch.column(0).to_numpy()]
        keep = lab >= 0
        if not keep.any():
            continue
        X = vectors_to_numpy(batch.column(1), column, f"the bank '{bank.path}'")[keep].astype(np.float64)
        if sums is None:
            sums = np.zeros((n_clusters, X.shape[1]))
        np.add.at(sums, lab[keep], X)
        sizes += np.bincount(lab[keep], minlength=n_clusters)
    if sums is None:
        return np.zeros((n_clusters, 0)), sizes
    return sums / np.maximum(sizes, 1)[:, None], sizes
