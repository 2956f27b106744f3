"""Clustering OSSMs across a dataset, with scikit-learn conventions, and naming and scoring the clusters."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

METHODS = ("kmeans", "agglomerative", "hdbscan")
FEATURES = ("embedding", "pooled", "loading", "ossm")
BACKGROUND = "background"


def dominant_parts(part_overlap: np.ndarray, vocabulary: Sequence[str], min_share: float = 0.1) -> np.ndarray:
    """The ground-truth part holding most of each component's energy; "background" below `min_share`."""
    if part_overlap.shape[1] == 0:
        raise ValueError("This bank has no ground-truth parts (extract from dv.PartsWorld to get them).")
    best = part_overlap.argmax(axis=1)
    names = np.asarray(list(vocabulary), dtype=object)[best]
    names[part_overlap.max(axis=1) < min_share] = BACKGROUND
    return names


class PartReport(dict):
    """Dict-like: report["nmi"], report["ari"], report["purity"], report["clusters"] (one dict per cluster)."""

    def table(self) -> str:
        lines = [f"{'cluster':>7s} {'size':>6s} {'dominant part':28s} {'purity':>7s}"]
        for c in self["clusters"]:
            lines.append(f"{c['cluster']:>7d} {c['size']:>6d} {c['dominant_part']:28s} {c['purity']:7.2f}")
        lines.append(f"NMI {self['nmi']:.3f}  ARI {self['ari']:.3f}  purity {self['purity']:.3f}")
        return "\n".join(lines)


class ComponentClusters:
    """Cluster the components of an `OSSMBank`.

    Parameters
    ----------
    n_clusters : number of clusters (k-means, agglomerative); ignored by HDBSCAN.
    method : "kmeans", "agglomerative" or "hdbscan".
    feature : "embedding" (masked-input CLIP embedding), "pooled" (activations under the OSSM), "loading"
        (channel loadings v_k), or "ossm" (the low-resolution map itself).
    min_weight : components whose integration weight is <= this are left out (None keeps all).
    normalize : L2-normalise each feature vector (cosine geometry).
    random_state : seed for k-means and the 2-D layouts.

    After `fit(bank)`: `labels_` (n_kept,), `rows_` (their bank row indices), `features_`, `n_clusters_`,
    `cluster_centers_` (k-means; mean feature per cluster otherwise).
    """

    def __init__(self, n_clusters: int = 12, method: str = "kmeans", feature: str = "embedding",
                 min_weight: Optional[float] = 0.0, normalize: bool = True, random_state: Optional[int] = None,
                 min_cluster_size: int = 10):
        self.n_clusters = n_clusters
        self.method = method
        self.feature = feature
        self.min_weight = min_weight
        self.normalize = normalize
        self.random_state = random_state
        self.min_cluster_size = min_cluster_size

    def __repr__(self) -> str:
        return (f"ComponentClusters(n_clusters={self.n_clusters}, method={self.method!r}, feature={self.feature!r}, "
                f"min_weight={self.min_weight}, random_state={self.random_state})")

    def _validate(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}.")
        if self.feature not in FEATURES:
            raise ValueError(f"feature must be one of {', '.join(FEATURES)}; got {self.feature!r}.")
        if self.method != "hdbscan" and (not isinstance(self.n_clusters, (int, np.integer)) or self.n_clusters < 2):
            raise ValueError(f"n_clusters must be an integer >= 2, got {self.n_clusters!r}.")

    def fit(self, bank) -> "ComponentClusters":
        from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
        self._validate()
        self.bank_ = bank
        weights = bank.to_pandas()["weight"].to_numpy()
        keep = np.ones(len(bank), bool) if self.min_weight is None else weights > self.min_weight
        rows = np.flatnonzero(keep)
        n_needed = 2 if self.method == "hdbscan" else self.n_clusters
        if len(rows) < n_needed:
            raise ValueError(f"Only {len(rows)} components have weight > {self.min_weight}; too few for "
                             f"{n_needed} clusters. Lower n_clusters or pass min_weight=None.")
        X = bank.features(self.feature)[rows].astype(np.float64)
        if self.normalize:
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        if self.method == "kmeans":
            est = KMeans(self.n_clusters, n_init=10, random_state=self.random_state).fit(X)
            self.cluster_centers_ = est.cluster_centers_
        elif self.method == "agglomerative":
            est = AgglomerativeClustering(self.n_clusters).fit(X)
        else:
            est = HDBSCAN(min_cluster_size=self.min_cluster_size).fit(X)
        self.estimator_ = est
        self.labels_ = est.labels_.astype(int)
        self.rows_ = rows
        self.features_ = X
        ids = sorted(set(self.labels_) - {-1})
        self.n_clusters_ = len(ids)
        if self.method != "kmeans":
            self.cluster_centers_ = np.stack([X[self.labels_ == c].mean(0) for c in ids]) if ids else np.zeros((0, X.shape[1]))
        return self

    def _check_fitted(self):
        if not hasattr(self, "labels_"):
            raise RuntimeError("Call fit(bank) first.")

    def transform(self, bank=None, method: str = "pca") -> np.ndarray:
        """A 2-D layout (n_kept, 2) of the fitted components: "pca" or "tsne" (seeded by random_state)."""
        self._check_fitted()
        if bank is not None and bank is not self.bank_:
            raise ValueError("transform lays out the components the clusters were fitted on; call fit(bank) first.")
        if method == "pca":
            from sklearn.decomposition import PCA
            return PCA(2, random_state=self.random_state).fit_transform(self.features_)
        if method == "tsne":
            from sklearn.manifold import TSNE
            perplexity = float(min(30, max(2, len(self.features_) - 1) / 3))
            return TSNE(2, perplexity=perplexity, random_state=self.random_state, init="pca").fit_transform(self.features_)
        raise ValueError(f"method must be 'pca' or 'tsne'; got {method!r}.")

    def fit_transform(self, bank, method: str = "pca") -> np.ndarray:
        return self.fit(bank).transform(method=method)

    def name_parts(self, model, vocabulary: Sequence[str], template: str = "a photo of a {}") -> List[Dict]:
        """Name each cluster by the CLIP text encoder: its mean masked-input embedding against prompts made from
        `vocabulary` (e.g. ["wheel", "roof"] -> "a photo of a wheel"). Confidence: softmax probability over
        the vocabulary at the model's logit scale."""
        import torch
        self._check_fitted()
        if not vocabulary:
            raise ValueError("Give a non-empty vocabulary of part names, e.g. ['wheel', 'roof', 'door'].")
        text = model.encode_text([template.format(v) for v in vocabulary]).cpu().double()
        emb = self.bank_.embeddings[self.rows_]
        out = []
        for c in range(self.n_clusters_):
            members = emb[self.labels_ == c]
            mean = torch.from_numpy(members.mean(0)).double()
            mean = mean / mean.norm().clamp_min(1e-12)
            probs = (model.logit_scale.cpu().double() * (text @ mean)).softmax(0)
            best = int(probs.argmax())
            out.append({"cluster": c, "name": vocabulary[best], "confidence": float(probs[best]),
                        "size": int(len(members))})
        self.names_ = out
        return out

    def part_report(self, min_share: float = 0.1) -> PartReport:
        """Per cluster its dominant ground-truth part and purity; overall NMI and ARI of clusters vs parts."""
        from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
        self._check_fitted()
        parts = dominant_parts(self.bank_.part_overlap[self.rows_], self.bank_.part_vocabulary, min_share)
        clusters = []
        for c in range(self.n_clusters_):
            members = parts[self.labels_ == c]
            names, counts = np.unique(members, return_counts=True)
            top = int(counts.argmax())
            clusters.append({"cluster": c, "size": int(len(members)), "dominant_part": str(names[top]),
                             "purity": float(counts[top] / len(members))})
        assigned = self.labels_ >= 0
        sizes = np.array([c["size"] for c in clusters])
        purity = float(sum(c["purity"] * c["size"] for c in clusters) / max(sizes.sum(), 1))
        return PartReport(clusters=clusters, purity=purity,
                          nmi=float(normalized_mutual_info_score(parts[assigned], self.labels_[assigned])),
                          ari=float(adjusted_rand_score(parts[assigned], self.labels_[assigned])),
                          min_share=min_share, n_components=int(len(parts)))

    def cluster_part_table(self, min_share: float = 0.1):
        """Counts (n_clusters_, n_parts) of components per cluster and dominant part, and the part names."""
        self._check_fitted()
        parts = dominant_parts(self.bank_.part_overlap[self.rows_], self.bank_.part_vocabulary, min_share)
        names = sorted(set(parts))
        table = np.zeros((self.n_clusters_, len(names)), int)
        index = {n: i for i, n in enumerate(names)}
        for lab, p in zip(self.labels_, parts):
            if lab >= 0:
                table[lab, index[p]] += 1
        return table, names
