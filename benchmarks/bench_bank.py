"""Issue 13: a bank larger than memory, read lazily and clustered by streaming.

    python benchmarks/bench_bank.py [--rows 1000000] [--out /tmp/bank-1m] [--keep]

Writes a synthetic bank of N rows in the bank schema (`dv.bank_schema()`, Parquet files of 50,000 rows, no
manifest): random data at realistic widths (ossm 196 = a 14 x 14 grid, embedding 128, pooled 256, loading 256,
part_overlap over 20 parts), 16 rows per image (2 prompts x 8 components), 1-2 labels per image out of 6, and
embeddings drawn around 24 centres so that clusters exist. The bank is written by a child process, so that the
peak resident memory printed by this one (`resource.getrusage`) is that of reading and clustering only: opening
with `dv.OSSMBank`, counting, filtering by label, projecting scalar columns, one pass over the OSSMs in batches,
and `dv.ComponentClusters(streaming=True)` (PCA from the streamed covariance, then MiniBatchKMeans by partial_fit over 3 passes), then
the dominant parts of the clustered rows (`part_report`). `--keep` leaves the bank (and reuses one already there).
"""
import argparse
import multiprocessing
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

WIDTHS = {"ossm": 196, "embedding": 128, "pooled": 256, "loading": 256, "part_overlap": 20}
ROWS_PER_FILE = 50_000
ROWS_PER_IMAGE = 16  # 2 prompts x 8 components
CLASSES = ["car", "house", "tree", "boat", "lamp", "snowman"]
CENTRES = 24


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_bank(out: Path, n_rows: int, seed: int = 0) -> None:
    """N rows of synthetic data in the bank schema, file by file (memory: one file's worth)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import decomviz as dv
    from decomviz.analysis.schema import vector_array
    rng = np.random.default_rng(seed)
    vocabulary = [f"{c}/part{j}" for c in CLASSES for j in range(4)][:WIDTHS["part_overlap"]]
    schema = dv.bank_schema({"method": "synthetic", "n_components": 8}, vocabulary,
                            {"kind": "synthetic", "n": n_rows // ROWS_PER_IMAGE})
    centres = rng.normal(size=(CENTRES, WIDTHS["embedding"])).astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    for f, lo in enumerate(range(0, n_rows, ROWS_PER_FILE)):
        n = min(ROWS_PER_FILE, n_rows - lo)
        rows = np.arange(lo, lo + n)
        image = rows // ROWS_PER_IMAGE
        first = np.asarray(CLASSES)[image % len(CLASSES)]
        second = np.asarray(CLASSES)[(image * 7 + 3) % len(CLASSES)]
        labels = np.where(image % 3 == 0, np.char.add(np.char.add(first, "|"), second), first)
        component = rows % 8
        vectors = {k: rng.random((n, w), dtype=np.float32) for k, w in WIDTHS.items()}
        which = rng.integers(0, CENTRES, n)
        vectors["embedding"] = centres[which] + 0.3 * rng.normal(size=(n, WIDTHS["embedding"])).astype(np.float32)
        vectors["part_overlap"] /= vectors["part_overlap"].sum(1, keepdims=True)
        cols = {"image_index": pa.array(image, pa.int64()),
                "image_id": pa.array([f"img-{i}" for i in image]), "labels": pa.array(labels.tolist()),
                "prompt": pa.array(np.where((rows // 8) % 2 == 0, "a photo of a {}", "a part").tolist()),
                "prompt_index": pa.array((rows // 8) % 2, pa.int64()), "component": pa.array(component, pa.int64()),
                "singular_value": pa.array(rng.random(n)), "explained_variance": pa.array(rng.random(n)),
                "weight": pa.array(np.where(component < 6, rng.random(n), 0.0)),
                "contribution": pa.array(rng.random(n)), "masked_score": pa.array(rng.random(n)),
                "base_score": pa.array(rng.random(n)), "reference_score": pa.array(rng.random(n)),
                "grid_h": pa.array(np.full(n, 14), pa.int64()), "grid_w": pa.array(np.full(n, 14), pa.int64()),
                **{k: vector_array(v) for k, v in vectors.items()}, "error": pa.nulls(n, pa.string())}
        table = pa.Table.from_pydict(cols, schema=schema)
        pq.write_table(table, out / f"part-{f:05d}.parquet", row_group_size=16_384)


def step(name: str, t0: float, extra: str = "") -> float:
    now = time.perf_counter()
    print(f"{name:44s} {now - t0:8.2f} s   peak RSS {peak_rss_mb():8.0f} MB   {extra}", flush=True)
    return now


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--out", default=None, help="the bank folder (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the bank; reuse one already in --out")
    p.add_argument("--clusters", type=int, default=24)
    args = p.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-bank-")) / "bank"
    t = time.perf_counter()
    if not (args.keep and any(out.glob("*.parquet"))):
        child = multiprocessing.get_context("spawn").Process(target=write_bank, args=(out, args.rows))
        child.start()
        child.join()
        if child.exitcode:
            raise SystemExit(f"writing the bank failed (exit {child.exitcode})")
    size = sum(f.stat().st_size for f in out.glob("*.parquet")) / 2**30
    t = step(f"write {args.rows} rows (child process)", t, f"{size:.2f} GiB on disk in {out}")
    try:
        import decomviz as dv
        t = step("import decomviz", t)
        bank = dv.OSSMBank(out)
        n = len(bank)
        t = step("open + count", t, f"{n} rows in {len(list(out.glob('*.parquet')))} files")
        houses = bank.filter(label="house")
        t = step("filter(label='house') + count", t, f"{len(houses)} rows")
        df = houses.to_pandas(columns=["image_id", "prompt", "weight"])
        t = step("project 3 scalar columns of the view", t, f"{len(df)} x {df.shape[1]}, mean weight "
                                                            f"{df.weight.mean():.3f}")
        del df
        energy = 0.0
        for batch in bank.iter_batches(columns=["ossm"], batch_size=65_536):
            energy += float(np.asarray(batch.column(0).values).sum())
        t = step("one pass over the OSSMs in batches", t, f"sum {energy:.3g}")
        rows = bank.ossms_of([0, n // 2, n - 1])
        t = step("3 OSSMs by row (take)", t, f"{rows.shape}")
        clusters = dv.ComponentClusters(args.clusters, feature="embedding", streaming=True, random_state=0,
                                        n_pca=32, n_epochs=3).fit(bank)
        t = step(f"streaming fit, k={args.clusters}", t, f"{len(clusters.rows_)} components clustered, "
                                                          f"{clusters.n_clusters_} clusters")
        report = clusters.part_report()
        t = step("part report (streamed part overlaps)", t, f"purity {report['purity']:.3f} (random parts)")
        xy = clusters.transform()
        step("2-D layout (streamed PCA)", t, f"{xy.shape}")
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
