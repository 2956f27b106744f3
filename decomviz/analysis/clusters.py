"""Clustering OSSMs across a dataset, with scikit-learn conventions, and naming and scoring the clusters."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .streaming import (BATCH_ROWS, StreamingPCA, cluster_means, dominant_parts, feature_batches, kept_rows,
                        rebatched, row_parts)

METHODS = ("kmeans", "agglomerative", "hdbscan")
FEATURES = ("embedding", "pooled", "loading", "ossm")
#: Above this working set (see `working_set_bytes`), streaming="auto" clusters by streaming.
IN_MEMORY_BYTES = 1 << 30


def working_set_bytes(n: int, width: int, method: str = "kmeans", n_clusters: int = 12) -> int:
    """What clustering ``n`` rows of ``width`` features in memory holds at its peak, in bytes: the float32 column
    read from the bank, its float64 copy, the normalised copy, scikit-learn's own copy (validation, centring),
    the distances to the centres (k-means), and the pairwise distances of agglomerative clustering (condensed,
    float64) or HDBSCAN's core distances and tree. An estimate from the copies the code makes, not a measurement."""
    features = n * width * (4 + 8 + 8 + 8)
    if method == "agglomerative":
        return features + n * (n - 1) // 2 * 8
    if method == "hdbscan":
        return features + n * width * 8 + n * 64
    return features + n * n_clusters * 8 * 2


class PartReport(dict):
    """Dict-like: report["nmi"], report["ari"], report["purity"], report["clusters"] (one dict per cluster), and
    the controls of `cluster_part_controls`: "within_class_nmi", "class_only_nmi", "shuffled_nmi",
    "shuffled_within_class_nmi"."""

    def table(self) -> str:
        lines = [f"{'cluster':>7s} {'size':>6s} {'dominant part':28s} {'purity':>7s}"]
        for c in self["clusters"]:
            lines.append(f"{c['cluster']:>7d} {c['size']:>6d} {c['dominant_part']:28s} {c['purity']:7.2f}")
        lines.append(f"NMI {self['nmi']:.3f}  ARI {self['ari']:.3f}  purity {self['purity']:.3f}")
        if "within_class_nmi" in self:
            lines.append(f"within class NMI {self['within_class_nmi']:.3f} (shuffled clusters "
                         f"{self['shuffled_within_class_nmi']:.3f}); pooled NMI of the class alone "
                         f"{self['class_only_nmi']:.3f}, of shuffled clusters {self['shuffled_nmi']:.3f}")
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
    streaming : True: fit a batch at a time, for banks larger than memory (k-means only): PCA to `n_pca`
        dimensions (`StreamingPCA`: the covariance accumulated by `partial_fit`, one pass), then MiniBatchKMeans by
        `partial_fit` over `n_epochs` passes; memory is one batch of `batch_size` rows plus a few numbers per row. False: all features in memory. "auto": streaming
        when clustering in memory would hold more than 1 GiB at its peak: the features with their copies and the
        distances, not the features alone (`working_set_bytes`).

    After `fit(bank)`: `labels_` (n_kept,), `rows_` (their bank row indices), `n_clusters_`, `cluster_centers_`
    (k-means; mean feature per cluster otherwise; in the PCA space when streaming), `distance_` (n_kept,) each
    component's distance to its cluster's centre (inf for noise), `features_` (n_kept, D) in memory (None when
    streaming), `streaming_`.
    """

    def __init__(self, n_clusters: int = 12, method: str = "kmeans", feature: str = "embedding",
                 min_weight: Optional[float] = 0.0, normalize: bool = True, random_state: Optional[int] = None,
                 min_cluster_size: int = 10, streaming: Union[bool, str] = "auto", batch_size: int = BATCH_ROWS,
                 n_pca: int = 32, n_epochs: int = 3):
        self.n_clusters = n_clusters
        self.method = method
        self.feature = feature
        self.min_weight = min_weight
        self.normalize = normalize
        self.random_state = random_state
        self.min_cluster_size = min_cluster_size
        self.streaming = streaming
        self.batch_size = batch_size
        self.n_pca = n_pca
        self.n_epochs = n_epochs

    def __repr__(self) -> str:
        return (f"ComponentClusters(n_clusters={self.n_clusters}, method={self.method!r}, feature={self.feature!r}, "
                f"min_weight={self.min_weight}, random_state={self.random_state}, streaming={self.streaming!r})")

    def _validate(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}.")
        if self.feature not in FEATURES:
            raise ValueError(f"feature must be one of {', '.join(FEATURES)}; got {self.feature!r}.")
        if self.method != "hdbscan" and (not isinstance(self.n_clusters, (int, np.integer)) or self.n_clusters < 2):
            raise ValueError(f"n_clusters must be an integer >= 2, got {self.n_clusters!r}.")
        if self.streaming not in (True, False, "auto"):
            raise ValueError(f"streaming must be True, False or 'auto'; got {self.streaming!r}.")
        for name in ("batch_size", "n_pca", "n_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")

    def _streams(self, bank, n_kept: int) -> bool:
        if self.streaming is not True:
            width = bank.vectors(self.feature, [0]).shape[1] if len(bank) else 0
            size = working_set_bytes(n_kept, width, self.method, int(self.n_clusters or 0))
            if self.streaming is False or size <= IN_MEMORY_BYTES:
                return False
            if self.method != "kmeans":
                raise ValueError(f"{self.method} clustering of all {n_kept} components in memory needs about "
                                 f"{size / 2**30:.1f} GiB (features, their copies and distances); use "
                                 "method='kmeans' (it streams), or cluster a part of the bank (bank.filter(...)), or "
                                 "pass streaming=False to try anyway.")
            return True
        if self.method != "kmeans":
            raise ValueError(f"streaming=True clusters with k-means only (MiniBatchKMeans); got method={self.method!r}.")
        return True

    def fit(self, bank) -> "ComponentClusters":
        self._validate()
        self.bank_ = bank
        rows = kept_rows(bank, self.min_weight, self.batch_size)
        n_needed = 2 if self.method == "hdbscan" else self.n_clusters
        if len(rows) < n_needed:
            raise ValueError(f"Only {len(rows)} components have weight > {self.min_weight}; too few for "
                             f"{n_needed} clusters. Lower n_clusters or pass min_weight=None.")
        self.streaming_ = self._streams(bank, len(rows))
        if self.streaming_:
            return self._fit_streaming(bank, len(rows))
        from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
        X = bank.features(self.feature, rows).astype(np.float64)
        if self.normalize:
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        if self.method == "kmeans":
            est = KMeans(self.n_clusters, n_init=10, random_state=self.random_state).fit(X)
            self.cluster_centers_ = est.cluster_centers_
        elif self.method == "agglomerative":
            est = AgglomerativeClustering(self.n_clusters).fit(X)
        else:
            est = HDBSCAN(min_cluster_size=self.min_cluster_size).fit(X)
        self.estimator_, self.pca_ = est, None
        self.labels_ = est.labels_.astype(int)
        self.rows_ = rows
        self.features_ = X
        ids = sorted(set(self.labels_) - {-1})
        self.n_clusters_ = len(ids)
        if self.method != "kmeans":
            self.cluster_centers_ = np.stack([X[self.labels_ == c].mean(0) for c in ids]) if ids else np.zeros((0, X.shape[1]))
        self.distance_ = _distances(X, self.labels_, self.cluster_centers_)
        return self

    def _batches(self, bank, min_rows: int = 1):
        return rebatched(feature_batches(bank, self.feature, self.min_weight, self.normalize, self.batch_size),
                         min_rows)

    def _fit_streaming(self, bank, n_kept: int) -> "ComponentClusters":
        """PCA (exact, from the streamed covariance), then MiniBatchKMeans in the PCA space by partial_fit, over
        passes of the bank."""
        from sklearn.cluster import MiniBatchKMeans
        width = bank.vectors(self.feature, [0]).shape[1]
        pca = StreamingPCA(max(1, min(self.n_pca, width, n_kept)))
        for _, X in self._batches(bank):
            pca.partial_fit(X)
        km = MiniBatchKMeans(self.n_clusters, random_state=self.random_state, n_init=3,
                             batch_size=min(self.batch_size, 4096))
        for _ in range(self.n_epochs):
            for _, X in self._batches(bank, max(self.batch_size, 3 * self.n_clusters)):
                if len(X) >= self.n_clusters or hasattr(km, "cluster_centers_"):
                    km.partial_fit(pca.transform(X))
        rows, labels, distance = [], [], []
        for r, X in self._batches(bank):
            Z = pca.transform(X)
            lab = km.predict(Z)
            rows.append(r)
            labels.append(lab.astype(np.int32))
            distance.append(np.linalg.norm(Z - km.cluster_centers_[lab], axis=1).astype(np.float32))
        self.estimator_, self.pca_ = km, pca
        self.rows_, self.labels_ = np.concatenate(rows), np.concatenate(labels)
        self.distance_ = np.concatenate(distance)
        self.features_ = None
        self.cluster_centers_ = km.cluster_centers_
        self.n_clusters_ = self.n_clusters
        return self

    def _check_fitted(self):
        if not hasattr(self, "labels_"):
            raise RuntimeError("Call fit(bank) first.")

    def transform(self, bank=None, method: str = "pca") -> np.ndarray:
        """A 2-D layout (n_kept, 2) of the fitted components: "pca" or "tsne" (seeded by random_state); when
        streaming, the first two axes of the streamed PCA ("tsne" needs features in memory)."""
        self._check_fitted()
        if bank is not None and bank is not self.bank_:
            raise ValueError("transform lays out the components the clusters were fitted on; call fit(bank) first.")
        if method not in ("pca", "tsne"):
            raise ValueError(f"method must be 'pca' or 'tsne'; got {method!r}.")
        if self.features_ is None:
            if method == "tsne":
                raise ValueError("A t-SNE layout needs every feature in memory; these clusters were fitted by "
                                 "streaming: use method='pca', or fit a part of the bank with streaming=False.")
            xy = [self.pca_.transform(X)[:, :2] for _, X in self._batches(self.bank_)]
            xy = np.concatenate(xy)
            return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
        if method == "pca":
            from sklearn.decomposition import PCA
            return PCA(2, random_state=self.random_state).fit_transform(self.features_)
        from sklearn.manifold import TSNE
        perplexity = float(min(30, max(2, len(self.features_) - 1) / 3))
        return TSNE(2, perplexity=perplexity, random_state=self.random_state, init="pca").fit_transform(self.features_)

    def fit_transform(self, bank, method: str = "pca") -> np.ndarray:
        return self.fit(bank).transform(method=method)

    @property
    def names_(self) -> List[Dict]:
        """The names the views show: the ground truth's (`name_by_parts`) where made, else the model's reading
        (`name_parts`); each is also kept on its own, in ``truth_names_`` and ``model_names_``."""
        names = getattr(self, "truth_names_", None) or getattr(self, "model_names_", None)
        if names is None:
            raise AttributeError("names_: call name_parts(model, vocabulary) or name_by_parts() first.")
        return names

    def name_parts(self, model, vocabulary: Sequence[str], template: str = "a photo of a {}",
                   part_template: str = "the {part} of a {class}") -> List[Dict]:
        """Name each cluster by the CLIP text encoder: its mean masked-input embedding against a prompt per
        `vocabulary` entry. An entry "class/part", as ground-truth names are (``bank.part_vocabulary``), becomes
        ``part_template`` ("the wheel of a car"), so the model's reading can be compared with the truth name for
        name; any other entry fills ``template`` (["wheel"] -> "a photo of a wheel"). Confidence: softmax
        probability over the vocabulary at the model's logit scale. Kept in ``model_names_``."""
        import torch
        self._check_fitted()
        if not vocabulary:
            raise ValueError("Give a non-empty vocabulary of part names, e.g. ['wheel', 'roof', 'door'] or the "
                             "bank's own ['car/wheel', 'house/roof', ...] (bank.part_vocabulary).")
        prompts = [part_template.replace("{class}", v.split("/", 1)[0]).replace("{part}", v.split("/", 1)[1])
                   if "/" in v else template.format(v) for v in vocabulary]
        text = model.encode_text(prompts).cpu().double()
        means, sizes = cluster_means(self.bank_, "embedding", self.rows_, self.labels_, self.n_clusters_,
                                     self.batch_size)
        out = []
        for c in range(self.n_clusters_):
            mean = torch.from_numpy(means[c]).double()
            mean = mean / mean.norm().clamp_min(1e-12)
            probs = (model.logit_scale.cpu().double() * (text @ mean)).softmax(0)
            best = int(probs.argmax())
            out.append({"cluster": c, "name": vocabulary[best], "prompt": prompts[best],
                        "confidence": float(probs[best]), "size": int(sizes[c])})
        self.model_names_ = out
        return out

    def name_by_parts(self, min_share: float = 0.1, report: Optional[PartReport] = None) -> List[Dict]:
        """Name each cluster by its dominant ground-truth part (banks of PartsWorld or other part-annotated
        data); confidence is the cluster's purity, the share of its components with that dominant part.
        Unlike `name_parts`, this is the truth about the cluster, not the model's reading of it. `report`: a
        `part_report()` already made (it reads the bank's part overlaps)."""
        self._check_fitted()
        if not self.bank_.part_vocabulary:
            raise ValueError("This bank has no ground-truth parts (no part vocabulary); name the clusters with "
                             "name_parts(model, vocabulary) instead.")
        self.truth_names_ = [{"cluster": c["cluster"], "name": c["dominant_part"], "confidence": c["purity"],
                              "size": c["size"]} for c in (report or self.part_report(min_share))["clusters"]]
        return self.truth_names_

    def part_report(self, min_share: float = 0.1) -> PartReport:
        """Per cluster its dominant ground-truth part and purity; overall NMI and ARI of clusters vs parts, and
        what keeps that NMI honest (`cluster_part_controls`): the NMI within each class, and the NMI that the
        class alone and shuffled cluster labels reach on the same components."""
        from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
        self._check_fitted()
        parts = self.row_parts(min_share)
        clusters = []
        for c in range(self.n_clusters_):
            members = parts[self.labels_ == c]
            if not len(members):
                continue
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
                          min_share=min_share, n_components=int(len(parts)),
                          **cluster_part_controls(self.labels_[assigned], parts[assigned], self.random_state))

    def row_parts(self, min_share: float = 0.1) -> np.ndarray:
        """The dominant ground-truth part of each clustered component (n_kept,), read a batch at a time."""
        self._check_fitted()
        return row_parts(self.bank_, self.rows_, min_share, self.batch_size)[0]

    def cluster_part_table(self, min_share: float = 0.1):
        """Counts (n_clusters_, n_parts) of components per cluster and dominant part, and the part names."""
        self._check_fitted()
        parts = self.row_parts(min_share)
        names = sorted(set(parts))
        table = np.zeros((self.n_clusters_, len(names)), int)
        index = {n: i for i, n in enumerate(names)}
        for lab, p in zip(self.labels_, parts):
            if lab >= 0:
                table[lab, index[p]] += 1
        return table, names


def cluster_part_controls(labels: np.ndarray, parts: np.ndarray, random_state: Optional[int] = None) -> Dict:
    """The numbers beside a cluster-vs-part NMI that say what it measures. ``parts`` are "class/part" names (or
    "background"); ``labels`` the clusters of the same components.

    - ``within_class_nmi``: NMI of clusters against parts among the components of each class (background left
      out), averaged over classes by their counts: do clusters split a class into its parts?
    - ``class_only_nmi``: the pooled NMI of a labelling that knows each component's class and nothing else.
    - ``shuffled_nmi`` and ``shuffled_within_class_nmi``: the same clusters' labels permuted (chance level).
    """
    from sklearn.metrics import normalized_mutual_info_score as nmi
    parts = np.asarray(parts).astype(str)
    labels = np.asarray(labels)
    classes = np.array([p.split("/", 1)[0] if "/" in p else p for p in parts])
    is_part = np.array(["/" in p for p in parts], dtype=bool)
    rng = np.random.default_rng(random_state if random_state is not None else 0)
    shuffled = rng.permutation(labels)

    def within(lab):
        scores, weights = [], []
        for c in np.unique(classes):
            keep = (classes == c) & is_part
            if keep.sum() < 2 or len(np.unique(parts[keep])) < 2:
                continue
            scores.append(nmi(parts[keep], lab[keep]))
            weights.append(int(keep.sum()))
        return float(np.average(scores, weights=weights)) if scores else float("nan")

    return {"within_class_nmi": within(labels), "class_only_nmi": float(nmi(parts, classes)),
            "shuffled_nmi": float(nmi(parts, shuffled)), "shuffled_within_class_nmi": within(shuffled)}


def _distances(X: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Each row's distance to its cluster's centre, inf for noise (-1); clusters are 0..len(centers)-1."""
    out = np.full(len(X), np.inf, np.float32)
    ok = (labels >= 0) & (labels < len(centers))
    if ok.any():
        out[ok] = np.linalg.norm(X[ok] - centers[labels[ok]], axis=1)
    return out


__all__ = ["ComponentClusters", "PartReport", "cluster_part_controls", "dominant_parts", "METHODS", "FEATURES"]
