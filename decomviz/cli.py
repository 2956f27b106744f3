"""The `decomviz` command line."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional

METHOD_NAMES = ("decomcam", "decomcam-nointegration", "gradcam", "gradcam++", "layercam", "eigencam",
                "scorecam", "gscorecam")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_method(name: str, model, **knobs):
    """A CAM object from its command-line name; DecomCAM knobs that are None are left at their defaults."""
    import decomviz as dv
    from decomviz.baselines import METHODS
    knobs = {k: v for k, v in knobs.items() if v is not None}
    if name in ("decomcam", "decomcam-nointegration"):
        if name == "decomcam-nointegration":
            knobs["integration"] = "none"
        return dv.DecomCAM(model, **knobs)
    if name not in METHODS:
        raise ValueError(f"Unknown method '{name}'. Choose from: {', '.join(METHOD_NAMES)}.")
    common = {k: knobs[k] for k in ("layer", "score", "batch_size") if k in knobs}
    return METHODS[name](model, **common)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="bundled name (parts-rn, parts-vit) or an open_clip name (RN50, ...)")
    p.add_argument("--pretrained", default=None, help="open_clip pretrained tag (downloads once, then cached)")
    p.add_argument("--checkpoint", default=None, help="local weights file (.safetensors/.pt) or open_clip folder")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")


def load_from_args(args):
    import decomviz as dv
    name = args.model
    if name is None:
        name = None if args.checkpoint and Path(args.checkpoint).is_dir() else dv.models.DEFAULT_MODEL
    if args.pretrained is None and args.checkpoint is None and name not in dv.models.BUNDLED \
            and name not in dv.models.NOT_BUNDLED:
        _log(f"note: no --pretrained or --checkpoint given: {name} gets random weights.")
    return dv.load_model(name, pretrained=args.pretrained, checkpoint=args.checkpoint, device=args.device)


def cmd_explain(args) -> int:
    from decomviz.viz.figures import comparison_figure
    from decomviz.viz.report import write_report

    out = Path(args.out)
    if out.suffix not in (".html", ".npz"):
        raise ValueError(f"--out must end in .html (a report) or .npz (the Explanation), got '{out}'.")
    from decomviz.images import load_images
    load_images(args.image)  # fail on a bad image before loading a model
    t0 = time.perf_counter()
    model = load_from_args(args)
    _log(f"[decomviz] model {model.name} on {model.device} ({time.perf_counter() - t0:.1f} s)")
    knobs = dict(layer=args.layer, n_components=args.n_components, top_channels=args.top_channels,
                 batch_size=args.batch_size)
    methods = [args.method] + [m for m in (args.compare or "").split(",") if m and m != args.method]
    results = {}
    for name in methods:
        cam = make_method(name, model, **knobs)
        t1 = time.perf_counter()
        results[name] = cam(args.image, args.prompt)
        _log(f"[decomviz] {name}: {len(args.prompt)} prompt(s) in {time.perf_counter() - t1:.2f} s")
    main_exp = results[args.method]
    if out.suffix == ".npz":
        main_exp.save(out)
    else:
        figs = []
        for t in range(len(args.prompt)):
            if main_exp.ossms is not None:
                figs.append(main_exp.figure(0, t))
            if len(results) > 1 or main_exp.ossms is None:
                figs.append(comparison_figure(results, 0, t))
        write_report(out, figs, title=f"decomviz: {Path(args.image).name}",
                     intro=f"Model {model.name} ({model.source}), layer {main_exp.params.get('layer')}.",
                     preformatted=_summary(results))
    _log(f"[decomviz] wrote {out} (total {time.perf_counter() - t0:.1f} s)")
    return 0


def _dataset_from_arg(spec: str, objects: str):
    import decomviz as dv
    if spec.startswith("partsworld:"):
        fields = spec.split(":")[1:]
        try:
            n = int(fields[0])
            seed = int(fields[1]) if len(fields) > 1 else 0
            lo, hi = (int(v) for v in objects.split(","))
        except (ValueError, IndexError):
            raise ValueError(f"Write PartsWorld datasets as partsworld:N[:SEED] with --objects lo,hi; got '{spec}'.") from None
        return dv.PartsWorld(n, seed=seed, n_objects=(lo, hi))
    return spec


def cmd_extract(args) -> int:
    import decomviz as dv
    dataset = _dataset_from_arg(args.dataset, args.objects)
    model = load_from_args(args)
    cam = make_method("decomcam", model, n_components=args.n_components, top_channels=args.top_channels)
    prompts = args.prompt or ["a photo of a {}"]
    t0 = time.perf_counter()
    bank = dv.extract(cam, dataset, prompts, out=args.out, batch_size=args.batch_size, shard_size=args.shard_size)
    _log(f"[decomviz] {bank} in {time.perf_counter() - t0:.1f} s; {len(bank.failed)} image(s) failed")
    for f in bank.failed[:20]:
        _log(f"  failed: {f['id']}: {f['error']}")
    return 0


def cmd_cluster(args) -> int:
    import decomviz as dv
    from decomviz.viz.report import write_report
    from decomviz.viz.cluster_figures import cluster_report_figures

    bank = dv.OSSMBank(args.bank)
    clusters = dv.ComponentClusters(args.n_clusters, method=args.method, feature=args.feature,
                                    random_state=args.seed).fit(bank)
    text = f"{clusters.n_clusters_} clusters of {len(clusters.rows_)} components (weight > 0) from {bank}"
    if bank.part_vocabulary:
        text += "\n\n" + clusters.part_report().table()
    write_report(args.out, cluster_report_figures(bank, clusters), title=f"decomviz clusters: {bank.path.name}",
                 preformatted=text)
    print(text)
    _log(f"[decomviz] wrote {args.out}")
    return 0


def _summary(results) -> str:
    lines = []
    for name, exp in results.items():
        for t, p in enumerate(exp.prompts):
            score = f"{float(exp.base_score[0, t]):.4f}" if exp.base_score is not None else "-"
            lines.append(f"{name:24s} {p!r:40s} score {score}  ({exp.params.get('seconds', 0):.2f} s)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="decomviz", description="DecomCAM saliency for CLIP-style models.")
    sub = p.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("explain", help="explain one image against one or more prompts; write HTML or .npz")
    ex.add_argument("image", help="path of an image file")
    ex.add_argument("--prompt", action="append", required=True, help="text prompt (repeat for several)")
    _add_model_args(ex)
    ex.add_argument("--method", default="decomcam", choices=METHOD_NAMES)
    ex.add_argument("--compare", default="gradcam", help="comma-separated methods to show beside it ('' for none)")
    ex.add_argument("--layer", default=None)
    ex.add_argument("--n-components", type=int, default=None)
    ex.add_argument("--top-channels", type=int, default=None)
    ex.add_argument("--batch-size", type=int, default=None)
    ex.add_argument("--out", required=True, help="report.html or explanation.npz")

    demo = sub.add_parser("demo", help="explain PartsWorld scenes with the bundled model; write an HTML report")
    demo.add_argument("--model", default="parts-rn", help="a bundled model: parts-rn or parts-vit")
    demo.add_argument("--scenes", type=int, default=4)
    demo.add_argument("--seed", type=int, default=2024)
    demo.add_argument("--device", default=None)
    demo.add_argument("--out", default="demo_report.html")

    exr = sub.add_parser("extract", help="run DecomCAM over a dataset; write a resumable OSSM bank")
    exr.add_argument("dataset", help="an image folder (sub-folders = classes), a CSV with a 'path' column, or "
                                     "partsworld:N[:SEED] for N PartsWorld scenes")
    exr.add_argument("--prompt", action="append", default=None,
                     help="prompt or template such as 'a photo of a {}' (repeat for several; default: the template)")
    _add_model_args(exr)
    exr.add_argument("--n-components", type=int, default=None)
    exr.add_argument("--top-channels", type=int, default=None)
    exr.add_argument("--batch-size", type=int, default=16)
    exr.add_argument("--shard-size", type=int, default=256)
    exr.add_argument("--objects", default="1,2", help="objects per PartsWorld scene, lo,hi")
    exr.add_argument("--out", required=True, help="folder of the bank (rerun to resume)")

    cl = sub.add_parser("cluster", help="cluster the components of a bank; write an HTML report")
    cl.add_argument("bank")
    cl.add_argument("--n-clusters", type=int, default=12)
    cl.add_argument("--method", default="kmeans", choices=["kmeans", "agglomerative", "hdbscan"])
    cl.add_argument("--feature", default="embedding", choices=["embedding", "pooled", "loading", "ossm"])
    cl.add_argument("--seed", type=int, default=0)
    cl.add_argument("--out", required=True, help="clusters.html")

    sub.add_parser("train", help="train a bundled PartsWorld CLIP (see `decomviz train --help`)", add_help=False)
    sub.add_parser("bench", help="benchmarks on PartsWorld (see `decomviz bench --help`)", add_help=False)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from decomviz import train
        return train.main(argv[1:]) or 0
    if argv and argv[0] == "bench":
        from decomviz import bench
        return bench.main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    from decomviz.images import ImageInputError
    from decomviz.models import LayerError, ModelLoadError
    try:
        if args.command == "explain":
            return cmd_explain(args)
        if args.command == "extract":
            return cmd_extract(args)
        if args.command == "cluster":
            return cmd_cluster(args)
        if args.command == "demo":
            from decomviz.demo import run_demo
            return run_demo(model=args.model, n_scenes=args.scenes, seed=args.seed, out=args.out, device=args.device)
    except (ImageInputError, ModelLoadError, LayerError, ValueError, TypeError, OSError, IndexError) as err:
        _log(f"decomviz {args.command}: error: {err}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
