"""Issue 5 figures: extraction throughput and memory, and whether OSSMs follow parts better than controls.

    python benchmarks/bench_extract.py throughput [--scenes 2000] [--profile [TOP]]
    python benchmarks/bench_extract.py nmi [--scenes 1000] [--clusters 24] [--model parts-rn | --checkpoint DIR]
                                           [--seed 321]

throughput: `dv.extract` over PartsWorld scenes (1-2 objects, prompt "a photo of a {}") with parts-rn; prints
(image, prompt) pairs per second and the peak resident memory after each quarter of the run (flat = streaming).
With ``--profile`` the run is under cProfile (its overhead lowers the throughput): it also prints the TOP calls by
cumulative time and the time inside torch's convolution kernels, the part of a pair's cost that no change to
decomviz's own code can remove.

nmi: on the same kind of scenes, components from three sources are clustered (k-means on the activation vector
pooled under each component map, L2-normalised) and compared with the ground-truth part holding most of each
map's energy (NMI): DecomCAM's OSSMs; plain SVD of the same activations without gradient weighting (as
EigenCAM); random orthonormal components. Same K, same positive-part maps, same clustering. It also fits 12
clusters and counts those in which one part (not background) is the dominant part of at least 60 % of the
components.
"""
import argparse
import cProfile
import contextlib
import ctypes
import pstats
import resource
import tempfile
import time
import warnings

import numpy as np
import torch

import decomviz as dv
from decomviz.analysis.clusters import dominant_parts
from decomviz.analysis.datasets import PartsWorldItems
from decomviz.methods.decomcam import ossm_pooled


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Resident memory now, after handing freed heap pages back to the OS (glibc malloc_trim) so that allocator
    slack is not mistaken for retained data (Linux /proc; the peak where /proc is missing)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return peak_rss_mb()


@contextlib.contextmanager
def _profiled(on: bool):
    profile = cProfile.Profile() if on else None
    if profile is not None:
        profile.enable()
    try:
        yield profile
    finally:
        if profile is not None:
            profile.disable()


def throughput(n: int, batch_size: int = 16, profile_top: int = 0) -> None:
    """``profile_top`` > 0: run under cProfile and print that many calls by cumulative time."""
    model = dv.load_model()
    cam = dv.DecomCAM(model)
    world = dv.PartsWorld(n, seed=123, n_objects=(1, 2))
    marks = []
    with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        with _profiled(profile_top > 0) as profile:
            bank = dv.extract(cam, world, "a photo of a {}", out=out, shard_size=max(1, n // 8), progress=False,
                              batch_size=batch_size,
                              on_shard=lambda s: marks.append((s, time.perf_counter() - t0, rss_mb(), peak_rss_mb())))
        seconds = time.perf_counter() - t0
        pairs = len(bank) // cam.n_components
    print(f"{n} scenes, {batch_size} images per call, {pairs} (image, prompt) pairs, {len(bank)} rows in {seconds:.0f} s: "
          f"{pairs / seconds:.1f} pairs/s, {n / seconds:.1f} images/s" + (" (under cProfile)" if profile else ""))
    for s, t, rss, peak in marks:
        print(f"  after shard {s + 1}/{len(marks)} ({t:.0f} s): RSS {rss:.0f} MB, peak so far {peak:.0f} MB")
    if profile is not None:
        stats = pstats.Stats(profile)
        conv = sum(v[3] for k, v in stats.stats.items() if k[2] == "<built-in method torch.conv2d>")
        print(f"inside torch.conv2d: {conv:.1f} s, {1000 * conv / pairs:.1f} ms per pair: at most "
              f"{pairs / conv:.1f} pairs/s if nothing else took any time")
        stats.sort_stats("cumulative").print_stats(profile_top)


def _components(kind, A, K, rng):
    """Control component maps (B, K, h, w), positive parts: plain SVD of the activations, or random."""
    B, C, h, w = A.shape
    X = A.reshape(B, C, h * w).transpose(1, 2)  # (B, n, C)
    Xc = X - X.mean(dim=1, keepdim=True)
    if kind == "plain svd":
        U, S, _ = torch.linalg.svd(Xc, full_matrices=False)
        maps = U[..., :K] * S[:, None, :K]
        ref = X.sum(-1, keepdim=True)
        corr = ((maps - maps.mean(1, keepdim=True)) * (ref - ref.mean(1, keepdim=True))).sum(1, keepdim=True)
        maps = torch.where(corr < 0, -maps, maps)
    else:
        q, _ = torch.linalg.qr(torch.from_numpy(rng.normal(size=(B, h * w, K))).float())
        maps = q
    return maps.clamp_min(0).transpose(1, 2).reshape(B, K, h, w)


def part_pure_clusters(parts: np.ndarray, labels: np.ndarray, share: float = 0.6) -> int:
    """How many clusters have one part (not background) as the dominant part of >= `share` of their members."""
    pure = 0
    for c in np.unique(labels):
        names, counts = np.unique(parts[labels == c], return_counts=True)
        top = int(np.argmax(counts))
        pure += names[top] != "background" and counts[top] >= share * counts.sum()
    return int(pure)


def nmi(n: int, n_clusters: int, model_name: str = "parts-rn", seed: int = 321, checkpoint=None) -> None:
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score
    model = dv.load_model(checkpoint=checkpoint) if checkpoint else dv.load_model(model_name)
    cam = dv.DecomCAM(model)
    items = PartsWorldItems(dv.PartsWorld(n, seed=seed, n_objects=1))
    vocab = items.part_vocabulary
    rng = np.random.default_rng(0)
    feats = {k: [] for k in ("decomcam", "plain svd", "random")}
    overlaps = {k: [] for k in feats}
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    for i in range(n):
        item = items[i]
        exp = cam(item.image, [f"a photo of a {item.labels[0]}"])
        tapped = dv.GradCAM(model)._tapped(model.prepare(item.image).tensor, model.encode_text(exp.prompts),
                                           gradients=False)
        A = tapped.activations.cpu()
        masks = torch.from_numpy(np.stack([item.parts.get(v, np.zeros(exp.saliency.shape[-2:], bool)) for v in vocab])).float()
        sources = {"decomcam": exp.ossms_lowres[:, 0]}
        for kind in ("plain svd", "random"):
            sources[kind] = _components(kind, A, exp.n_components, rng)
        for kind, low in sources.items():  # low: (1, K, h, w)
            keep = low.flatten(2).amax(-1)[0] > 0
            full = torch.nn.functional.interpolate(low, size=exp.saliency.shape[-2:], mode="bilinear",
                                                   align_corners=False)[0][keep]
            energy = full.sum((-2, -1), keepdim=True)
            overlaps[kind].append((torch.einsum("khw,vhw->kv", full, masks) / energy[..., 0].clamp_min(1e-12)).numpy())
            feats[kind].append(ossm_pooled(low[:, None], A)[0, 0][keep].numpy())
    print(f"{model.name}, layer {model.default_layer}; {n} single-object scenes (seed {seed}), K={cam.n_components}, "
          f"{n_clusters} k-means clusters on OSSM-pooled activations ({time.perf_counter() - t0:.0f} s)")
    for kind in feats:
        X = np.concatenate(feats[kind])
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        parts = dominant_parts(np.concatenate(overlaps[kind]), vocab)
        labels = KMeans(n_clusters, n_init=10, random_state=0).fit_predict(X)
        pure = part_pure_clusters(parts, KMeans(12, n_init=10, random_state=0).fit_predict(X))
        print(f"  {kind:10s} components {len(X):6d}  NMI with dominant parts {normalized_mutual_info_score(parts, labels):.3f}"
              f"  background share {np.mean(parts == 'background'):.2f}  12-cluster fit: {pure}/12 clusters "
              f">= 60 % one part")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["throughput", "nmi"])
    ap.add_argument("--scenes", type=int, default=None)
    ap.add_argument("--clusters", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=16, help="images per engine call (throughput)")
    ap.add_argument("--model", default="parts-rn", help="a bundled model (nmi)")
    ap.add_argument("--checkpoint", default=None, help="a trained folder instead of --model (nmi)")
    ap.add_argument("--seed", type=int, default=321, help="PartsWorld seed of the scenes (nmi)")
    ap.add_argument("--profile", type=int, nargs="?", const=40, default=0, metavar="TOP",
                    help="throughput under cProfile; print the TOP calls by cumulative time (default 40)")
    args = ap.parse_args()
    if args.what == "throughput":
        throughput(args.scenes or 2000, args.batch_size, args.profile)
    else:
        nmi(args.scenes or 1000, args.clusters, args.model, args.seed, args.checkpoint)


if __name__ == "__main__":
    main()
