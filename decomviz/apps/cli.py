"""The `decomviz` command line."""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import List, Optional

from ..knobs import show_defaults
from ..methods.registry import METHODS, all_knobs, method_spec, route_knobs


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def add_knob_args(parser: argparse.ArgumentParser, methods=None) -> None:
    """One option per knob of the registered methods, from their declarations (help and default included).
    A knob whose default differs between methods shows each method's; an option not given leaves each method
    its own default."""
    names = list(METHODS if methods is None else methods)
    for kname, knob in all_knobs(names).items():
        per_method = {n: method_spec(n).defaults[kname] for n in names if kname in method_spec(n).knobs}
        knob.add_to_parser(parser, next(iter(per_method.values())), show_defaults(per_method))


def knobs_from_args(args, methods=None):
    """The knob options the user gave (those left unset keep each method's default)."""
    return {k: getattr(args, k) for k in all_knobs(methods) if hasattr(args, k)}


def make_methods(names, model, knobs):
    """The CAM objects of ``names``, each given the knobs it takes."""
    routed = route_knobs(names, knobs)
    return {n: method_spec(n).make(model, **routed[n]) for n in names}


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="bundled name (parts-rn, parts-rn-dense, parts-vit) or an open_clip name (RN50, ...)")
    p.add_argument("--pretrained", default=None, help="open_clip pretrained tag (downloads once, then cached)")
    p.add_argument("--checkpoint", default=None, help="local weights file (.safetensors/.pt) or open_clip folder")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")


def load_from_args(args):
    from ..models import BUNDLED, NOT_BUNDLED, load_model
    name = args.model  # None: the bundled default, or the folder given with --checkpoint
    if args.pretrained is None and args.checkpoint is None and name is not None and name not in BUNDLED \
            and name not in NOT_BUNDLED:
        _log(f"note: no --pretrained or --checkpoint given: {name} gets random weights.")
    return load_model(name, pretrained=args.pretrained, checkpoint=args.checkpoint, device=args.device)


def display_name(path) -> str:
    """A file name as text that can be written anywhere: bytes that are not UTF-8 (a name from another system)
    show as U+FFFD instead of failing when the report is written."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def check_output(out: Path, option: str = "--out") -> None:
    """Fail before any work when the output cannot be written where asked."""
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{option}: the folder '{display_name(parent)}' does not exist; create it first.")
    if out.is_dir():
        raise ValueError(f"{option}: '{display_name(out)}' is a folder; give a file name.")


def cmd_explain(args) -> int:
    from ..images import load_images
    from .explain_files import expand_images, output_kind, write_overlays

    out = Path(args.out)
    kind = output_kind(args.out)
    if kind == "png":
        if not (out.parent if str(out.parent) else Path(".")).is_dir():
            raise ValueError(f"--out: the folder '{display_name(out.parent)}' does not exist; create it first.")
    else:
        check_output(out)
    images = expand_images(args.image)
    methods = [args.method] + [m for m in (args.compare or "").split(",") if m and m != args.method]
    for name in methods:
        method_spec(name)  # an unknown method fails before any work
    knobs = knobs_from_args(args)
    route_knobs(methods, knobs)
    load_images(images)  # fail on a bad image before loading a model
    t0 = time.perf_counter()
    model = load_from_args(args)
    _log(f"[decomviz] model {model.name} on {model.device} ({time.perf_counter() - t0:.1f} s)")
    results = {}
    with warnings.catch_warnings():  # said once below, plainly, instead of once per method
        warnings.filterwarnings("ignore", message=".*(has random weights|not look like a PartsWorld scene)")
        for name, cam in make_methods(methods, model, knobs).items():
            t1 = time.perf_counter()
            results[name] = cam(images, args.prompt)
            _log(f"[decomviz] {name}: {len(args.prompt)} prompt(s) x {len(images)} image(s) in "
                 f"{time.perf_counter() - t1:.2f} s")
    main_exp = results[args.method]
    from ..viz.caveats import explain_caveats
    for msg in explain_caveats(main_exp):
        _log(f"WARNING: {msg}")
    if kind == "npz":
        main_exp.save(out)
    elif kind == "png":
        written = write_overlays(out, images, main_exp)
        _log(f"[decomviz] {len(written)} overlay(s) of {args.method}, one per image and prompt")
    else:
        _write_explain_report(out, images, model, results, main_exp)
    _log(f"[decomviz] wrote {out} (total {time.perf_counter() - t0:.1f} s)")
    return 0


def _dataset_from_arg(spec: str, objects: str, images: Optional[str] = None):
    from ..data import PartsWorld
    from ..data.coco import COCOParts
    from ..data.maskfolder import MaskFolder
    if images is not None and not spec.startswith("coco:"):
        raise ValueError("--images is the image folder of a COCO dataset (coco:annotations.json --images DIR).")
    if spec.startswith("coco:"):
        if images is None:
            raise ValueError(f"{spec}: give the folder its file_name entries are relative to with --images DIR.")
        return COCOParts(spec[len("coco:"):], images)
    if spec.startswith("masks:"):
        return MaskFolder(spec[len("masks:"):])
    if spec.startswith("partsworld:"):
        fields = spec.split(":")[1:]
        try:
            n = int(fields[0])
            seed = int(fields[1]) if len(fields) > 1 else 0
            lo, hi = (int(v) for v in objects.split(","))
        except (ValueError, IndexError):
            raise ValueError(f"Write PartsWorld datasets as partsworld:N[:SEED] with --objects lo,hi; got '{spec}'.") from None
        return PartsWorld(n, seed=seed, n_objects=(lo, hi))
    return spec


def cmd_extract(args) -> int:
    from ..analysis import extract
    from ..analysis.datasets import check_templates
    dataset = _dataset_from_arg(args.dataset, args.objects, args.images)
    knobs = knobs_from_args(args, ["decomcam"])
    prompts = args.prompt or ["a photo of a {}"]
    check_templates(prompts)  # before loading a model
    model = load_from_args(args)
    cam = method_spec("decomcam").make(model, **knobs)
    t0 = time.perf_counter()
    ray_options = {"address": args.address, "num_actors": args.num_actors, "num_gpus": args.num_gpus,
                   "num_cpus": args.num_cpus}
    if args.engine == "local" and any(v is not None for v in ray_options.values()):
        raise ValueError("--address, --num-actors, --num-gpus and --num-cpus are options of --engine ray.")
    bank = extract(cam, dataset, prompts, out=args.out, batch_size=args.images_per_batch,
                   shard_size=args.shard_size, engine=args.engine, allow_other_files=args.allow_other_files,
                   wait=args.wait, **(ray_options if args.engine == "ray" else {}))
    _log(f"[decomviz] {bank} in {time.perf_counter() - t0:.1f} s; {len(bank.failed)} image(s) failed")
    for f in bank.failed[:20]:
        _log(f"  failed: {display_name(f['id'])}: {display_name(f['error'])}")
    if bank.failed and bank.n_images == 0:  # nothing explained: not a success, whatever was written
        from collections import Counter
        reason, n = Counter(str(f["error"]) for f in bank.failed).most_common(1)[0]
        _log(f"decomviz extract: error: every image failed ({len(bank.failed)} of {len(bank.failed)}); the bank "
             f"holds no component. Most common reason ({n} image(s)): {display_name(reason)}")
        return 1
    return 0


def cmd_cluster(args) -> int:
    from ..analysis import ComponentClusters, OSSMBank
    from ..analysis.cluster_views import cluster_report_figures
    from ..viz.report import write_report

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out must end in .html (the cluster report is an HTML page), got "
                         f"'{display_name(out)}'.")
    check_output(out)
    bank = OSSMBank(args.bank)
    streaming = {"auto": "auto", "on": True, "off": False}[args.streaming]
    clusters = ComponentClusters(args.n_clusters, method=args.method, feature=args.feature,
                                 random_state=args.seed, streaming=streaming).fit(bank)
    how = "streamed" if clusters.streaming_ else "in memory"
    text = (f"{clusters.n_clusters_} clusters of {len(clusters.rows_)} components (weight > 0, {how}) "
            f"from {bank}")
    text = _bank_made_by(bank) + "\n" + text
    if bank.part_vocabulary:
        report = clusters.part_report()
        clusters.name_by_parts(report=report)
        text += ("\n\nEach cluster is named by its dominant ground-truth part (the part holding most of its "
                 "components' energy).\n\n" + report.table())
    elif args.vocabulary:
        words = [w.strip() for w in args.vocabulary.split(",") if w.strip()]
        clusters.name_parts(load_from_args(args), words)
        text += "\n\nEach cluster is named by the model's reading: its components' mean embedding against the words."
    text += "\n\n" + _cluster_list(clusters)
    write_report(args.out, cluster_report_figures(bank, clusters),
                 title=f"decomviz clusters: {display_name(bank.path.name)}",
                 preformatted=text)
    print(text)
    _log(f"[decomviz] wrote {args.out}")
    return 0


def _bank_made_by(bank) -> str:
    """The model, layer and prompts that made a bank, from its record."""
    p, prompts = bank.protocol, bank._meta.get("prompts")
    shown = prompts if isinstance(prompts, str) else ", ".join(repr(x) for x in (prompts or [])[:8]) or "?"
    return (f"Made by {p.get('method', 'decomcam')} on model {p.get('model', '?')} "
            f"({p.get('model_source', '?')}), layer {p.get('layer') or 'default'}, prompts {shown}.")


def _cluster_list(clusters) -> str:
    """One line per cluster, largest first: its name (where named), its size."""
    import numpy as np

    from ..analysis.cluster_views import cluster_names
    names, labels = cluster_names(clusters), np.asarray(clusters.labels_)
    sizes = {c: int((labels == c).sum()) for c in names}
    lines = ["Clusters, largest first:"]
    for c in sorted(names, key=lambda c: -sizes[c]):
        lines.append(f"  {names[c]:32s} {sizes[c]:6d} components")
    return "\n".join(lines)


def _write_explain_report(out: Path, images: List[str], model, results, main_exp) -> None:
    """A static report: per image and prompt, every method's map side by side and DecomCAM's components."""
    import html

    from ..viz import static_report as sr
    layer = main_exp.params.get("layer")
    title = display_name(Path(images[0]).name) if len(images) == 1 else f"{len(images)} images"
    head = sr.section(f"{title} explained by {model.name}",
                      f"<pre>{html.escape(_summary(results))}</pre>",
                      note=html.escape(f"Model {model.name} ({model.source})" + (f", layer {layer}" if layer else "")
                                       + ". ") + f"The {sr.term('score s(x, t)', 'score')} is the model's, the same "
                                       "for every method; each method explains it differently.")
    blocks = [sr.caveat_banner(results), head]
    for b, image in enumerate(images):
        words = _word_shares(model, image, main_exp.prompts)
        for t, prompt in enumerate(main_exp.prompts):
            rows = []
            if words is not None:  # which words of the prompt drive the score
                pairs = words.pairs(0, t)
                rows.append(sr.prompt_shading([w for w, _ in pairs], [v for _, v in pairs]))
            if len(results) > 1 or main_exp.ossms is None:
                rows.append(sr.methods_row(results, b, t))
            if main_exp.ossms is not None:
                rows.append(sr.components_row(main_exp, b, t))
            name = "" if len(images) == 1 else f"{display_name(Path(image).name)}: "
            blocks.append(sr.section(f"{name}“{prompt}”", *rows))
    sr.write_page(out, f"decomviz: {title}", blocks)


def _word_shares(model, image, prompts):
    """Each prompt word's share of the score (`token_attribution`), or None for a text tower it cannot read."""
    from ..methods.tokens import token_attribution
    try:
        return token_attribution(model, image, list(prompts))
    except ValueError as err:
        _log(f"[decomviz] no word shares in the report: {err}")
        return None


def _summary(results) -> str:
    """Per prompt, the model's score (once: it does not depend on the method), then each method's time and any
    flag on its map."""
    from ..viz.pairs import flag_note
    first = next(iter(results.values()))
    lines = []
    n_images = first.saliency.shape[0]
    for b in range(n_images):
        for t, p in enumerate(first.prompts):
            kind = first.params.get("score", "cosine")
            score = f"{float(first.base_score[b, t]):.4f}" if first.base_score is not None else "-"
            lines.append((f"image {b}, " if n_images > 1 else "") + f"{p!r}: {kind} score s(x, t) = {score}")
            for name, exp in results.items():
                note = flag_note(exp, b, t)
                lines.append(f"  {name:24s} {exp.params.get('seconds', 0):6.2f} s" + (f"  ({note})" if note else ""))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="decomviz", description="DecomCAM saliency for CLIP-style models.")
    sub = p.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("explain", help="explain images against one or more prompts; write HTML, .npz or PNGs")
    ex.add_argument("image", nargs="+", help="image files, or folders of images (explained together)")
    ex.add_argument("--prompt", action="append", required=True, help="text prompt (repeat for several)")
    _add_model_args(ex)
    ex.add_argument("--method", default="decomcam", choices=list(METHODS), help="the method to run (default: decomcam)")
    ex.add_argument("--compare", default="gradcam", help="comma-separated methods to show beside it, '' for none "
                                                         "(default: gradcam)")
    add_knob_args(ex)
    ex.add_argument("--out", required=True, help="report.html, explanation.npz, or a folder dir/ for one PNG "
                                                  "overlay per image and prompt (the --method's map)")

    demo = sub.add_parser("demo", help="explain PartsWorld scenes with the bundled model; write an HTML report")
    demo.add_argument("--model", default="parts-rn", help="a bundled model: parts-rn, parts-rn-dense or parts-vit (default: parts-rn)")
    demo.add_argument("--scenes", type=int, default=4, help="two-object PartsWorld scenes to explain (default: 4)")
    demo.add_argument("--seed", type=int, default=2024, help="seed of the scenes (default: 2024)")
    demo.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    demo.add_argument("--out", default="demo_report.html",
                      help="the HTML report to write (default: demo_report.html)")

    exr = sub.add_parser("extract", help="run DecomCAM over a dataset; write a resumable OSSM bank")
    exr.add_argument("dataset", help="an image folder (sub-folders = classes), a CSV with a 'path' column, "
                                     "partsworld:N[:SEED] for N PartsWorld scenes, coco:ANNOTATIONS.json (with "
                                     "--images DIR) for COCO-style part annotations, or masks:DIR for a folder of "
                                     "images with PNG label maps and labels.json")
    exr.add_argument("--images", default=None, help="the image folder of a coco: dataset")
    exr.add_argument("--prompt", action="append", default=None,
                     help="prompt or template: '{class}' (or '{}') is filled with each image's labels, '{part}' with "
                          "each part it shows, e.g. 'the {part} of a {class}' (repeat for several; default: "
                          "'a photo of a {}')")
    _add_model_args(exr)
    add_knob_args(exr, ["decomcam"])
    exr.add_argument("--images-per-batch", type=int, default=16, help="images per engine call (default: 16)")
    exr.add_argument("--shard-size", type=int, default=256,
                     help="images per Parquet shard, the unit of resuming (default: 256)")
    exr.add_argument("--objects", default="1,2", help="objects per PartsWorld scene, lo,hi (default: 1,2)")
    exr.add_argument("--out", required=True, help="folder of the bank (rerun to resume)")
    exr.add_argument("--allow-other-files", action="store_true",
                     help="write a new bank into a folder that already holds other files (the bank reads, replaces "
                          "and deletes only its own)")
    exr.add_argument("--wait", action="store_true",
                     help="when another extraction is writing the same --out folder, wait for it to finish instead "
                          "of stopping at once")
    exr.add_argument("--engine", default="local", choices=["local", "ray"],
                     help="local: this process, shards + manifest; ray: Ray Data actors (pip install "
                          "'decomviz[ray]'), resumable by image id (default: local)")
    exr.add_argument("--address", default=None,
                     help="Ray cluster to join, e.g. ray://head:10001 or auto (default: a local Ray)")
    exr.add_argument("--num-actors", type=int, default=None,
                     help="model replicas (Ray actors) (default: GPUs / --num-gpus, or CPUs / (--num-cpus or 4))")
    exr.add_argument("--num-gpus", type=float, default=None, help="GPUs per Ray actor, e.g. 1 or 0.5 (default: none)")
    exr.add_argument("--num-cpus", type=float, default=None,
                     help="CPUs per Ray actor, which are its torch threads (default: Ray's, 1)")

    cl = sub.add_parser("cluster", help="cluster the components of a bank; write an HTML report")
    cl.add_argument("bank", help="the bank folder written by `decomviz extract` (or any bank-schema Parquet folder)")
    cl.add_argument("--n-clusters", type=int, default=12, help="number of clusters (default: 12)")
    cl.add_argument("--method", default="kmeans", choices=["kmeans", "agglomerative", "hdbscan"],
                    help="clustering algorithm of scikit-learn (default: kmeans; the only one that streams)")
    cl.add_argument("--feature", default="embedding", choices=["embedding", "pooled", "loading", "ossm"],
                    help="what describes a component: the embedding of its masked input, the activations pooled "
                         "under its map, its channel loadings, or the map itself (default: embedding)")
    cl.add_argument("--seed", type=int, default=0, help="random state of the clustering (default: 0)")
    cl.add_argument("--streaming", default="auto", choices=["auto", "on", "off"],
                    help="k-means a batch at a time (streamed PCA + MiniBatchKMeans), for banks larger than memory; "
                         "auto: above 1 GiB of features (default: auto)")
    cl.add_argument("--vocabulary", default=None,
                    help="comma-separated words to name the clusters by the model's reading (banks without "
                         "ground-truth parts; loads --model, default the bundled parts-rn)")
    _add_model_args(cl)
    cl.add_argument("--out", required=True, help="clusters.html")

    sub.add_parser("train", help="train a bundled PartsWorld CLIP (see `decomviz train --help`)", add_help=False)
    sub.add_parser("bench", help="benchmarks on PartsWorld (see `decomviz bench --help`)", add_help=False)
    return p


def _plain_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one plain line on stderr: no file, line number or warning class."""
    print("decomviz: warning: " + " ".join(str(message).split()), file=sys.stderr, flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    previous, warnings.showwarning = warnings.showwarning, _plain_warning
    try:
        return _main(argv)
    finally:
        warnings.showwarning = previous


def _main(argv: Optional[List[str]]) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from .train.cli import main as train_main
        return train_main(argv[1:]) or 0
    if argv and argv[0] == "bench":
        from .bench.runner import main as bench_main
        return bench_main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    if getattr(args, "prompt", None):  # text from a terminal that is not UTF-8: carried with U+FFFD, as file names are
        args.prompt = [display_name(p) for p in args.prompt]
    from ..images import ImageInputError
    from ..models import LayerError, ModelLoadError
    try:
        if args.command == "explain":
            return cmd_explain(args)
        if args.command == "extract":
            return cmd_extract(args)
        if args.command == "cluster":
            return cmd_cluster(args)
        if args.command == "demo":
            from .demo import run_demo
            return run_demo(model=args.model, n_scenes=args.scenes, seed=args.seed, out=args.out, device=args.device)
    except (ImageInputError, ModelLoadError, LayerError, ValueError, TypeError, OSError, IndexError) as err:
        _log(f"decomviz {args.command}: error: {err}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
