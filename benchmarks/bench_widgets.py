"""How long one change of the ComponentScrubber (K = 10 at 224 px) and one prompt switch of the Explorer take,
in the kernel.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_widgets.py [--changes 200] [--model parts-rn]

A change is what one slider step or one toggle click does: compute ``exp.combine(selected)``, push the heat map,
bar colours and thumbnail opacities to the FigureWidget, update the toggles/slider/info label. Each widget is
given a comm that JSON-encodes every message as jupyter_client does before sending it (so serialisation is counted);
the browser's redraw is not included (tests/test_browser.py exercises that). Prints ms per change.

The Explorer's prompt switch (the "show prompt" dropdown after a run of DecomCAM, Grad-CAM and LayerCAM on
three prompts) runs no model: it swaps in the figures of that prompt, built once after the run.

A cluster pick is `ClusterGallery.select_cluster` on notebook 04's shipped bank, clustered as that notebook does:
the exemplar grid built and sent as its differences.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np


class Counter:
    messages = 0
    bytes = 0


class JsonComm:
    """Stands in for a kernel comm: encodes each message to JSON as jupyter_client does before sending it."""

    kernel = object()

    def __init__(self, comm_id: str, counter: Counter):
        self.comm_id = comm_id
        self.counter = counter

    def send(self, data=None, metadata=None, buffers=None):
        self.counter.messages += 1
        self.counter.bytes += len(json.dumps(data, ensure_ascii=False, allow_nan=False).encode())
        self.counter.bytes += sum(len(memoryview(b).cast("B")) for b in (buffers or []))

    def on_msg(self, callback):
        pass

    def close(self, *a, **k):
        pass


def attach(widget, counter):
    """Give a widget and all widgets below it a JSON comm."""
    import ipywidgets as widgets
    seen = set()

    def walk(w):
        if id(w) in seen or not isinstance(w, widgets.Widget):
            return
        seen.add(id(w))
        w.comm = JsonComm(w.model_id, counter)
        for child in getattr(w, "children", ()):
            walk(child)
        if hasattr(w, "layout"):
            walk(w.layout)
    walk(widget)


def explanation(model_name: str):
    import decomviz as dv
    from decomviz.models import ModelLoadError
    try:
        model = dv.load_model(model_name, device="cpu")
        source = model_name
    except ModelLoadError:
        import torch
        torch.manual_seed(0)
        model = dv.load_model("RN50", pretrained=None, device="cpu")
        source = "RN50 (random weights; the bundled model is missing)"
    scene = dv.PartsWorld(4, seed=2024, n_objects=(1, 2))[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = dv.DecomCAM(model, n_components=10)(scene.image, [f"a {scene.objects[0].label}"])
    return model, exp, source


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--changes", type=int, default=200, help="number of changes to time")
    p.add_argument("--model", default="parts-rn")
    args = p.parse_args(argv)

    from decomviz.widgets import ComponentScrubber

    model, exp, source = explanation(args.model)
    K = exp.n_components
    H, W = exp.saliency.shape[-2:]
    s = ComponentScrubber(exp, model=model)
    comm = Counter()
    attach(s, comm)

    rng = np.random.default_rng(0)
    kinds = {"slider": [], "toggle": []}
    for i in range(args.changes):
        if i % 2 == 0:
            k = int(rng.integers(0, K + 1))
            t0 = time.perf_counter()
            s.slider.value = k if s.slider.value != k else (k + 1) % (K + 1)
            kinds["slider"].append(time.perf_counter() - t0)
        else:
            k = int(rng.integers(0, K))
            t0 = time.perf_counter()
            s.toggles[k].value = not s.toggles[k].value
            kinds["toggle"].append(time.perf_counter() - t0)
    allt = kinds["slider"] + kinds["toggle"]

    def fmt(ts):
        ms = np.array(ts) * 1000
        return f"median {statistics.median(ms):6.2f} ms   p95 {np.percentile(ms, 95):6.2f} ms   max {ms.max():6.2f} ms"

    print(f"ComponentScrubber: K={K}, {W}x{H} px, model {source}, python {sys.version.split()[0]}")
    print(f"  slider step   ({len(kinds['slider'])}): {fmt(kinds['slider'])}")
    print(f"  toggle click  ({len(kinds['toggle'])}): {fmt(kinds['toggle'])}")
    print(f"  all changes   ({len(allt)}): {fmt(allt)}")
    print(f"  messages: {comm.messages / len(allt):.1f} per change, {comm.bytes / len(allt) / 1024:.0f} KiB per change")
    t0 = time.perf_counter()
    s.measure()
    print(f"  measure button (one model call): {(time.perf_counter() - t0) * 1000:.0f} ms")
    print(f"  budget: 50 ms per change -> {'OK' if np.percentile(np.array(allt) * 1000, 95) < 50 else 'OVER'} (p95)")
    explorer_prompt_switch(model, args.changes // 10 or 1, fmt)
    cluster_picks(fmt)
    return 0


def cluster_picks(fmt) -> None:
    from pathlib import Path

    import decomviz as dv
    from decomviz.widgets import ClusterGallery
    shipped = Path(__file__).resolve().parents[1] / "notebooks" / "data" / "bank-04"
    if not shipped.is_dir():
        print("ClusterGallery picks: notebooks/data/bank-04 is missing, skipped")
        return
    bank = dv.OSSMBank(shipped)
    clusters = dv.ComponentClusters(n_clusters=12, feature="embedding", min_weight=0.5, random_state=0).fit(bank)
    gallery = ClusterGallery(bank, clusters, layout="pca", n_exemplars=8)
    comm = Counter()
    attach(gallery, comm)
    picks = [c for c in sorted(gallery.names) if c >= 0] * 3
    times = []
    for c in picks:
        t0 = time.perf_counter()
        gallery.select_cluster(c)
        times.append(time.perf_counter() - t0)
    print(f"ClusterGallery pick, notebook 04's bank ({len(times)}): {fmt(times[len(times) // 3:])}")


def explorer_prompt_switch(model, switches: int, fmt) -> None:
    from decomviz.widgets.explorer import Explorer
    ex = Explorer(model)
    ex.set_prompts("a photo of a house, a photo of a car, the roof of a house")
    ex.set_compare(["gradcam", "layercam"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex.run(wait=True)
    if ex._thread is not None:
        ex._thread.join()  # the figures of every prompt are built
    comm = Counter()
    attach(ex, comm)
    times = []
    for i in range(switches):
        t = (i + 1) % 3
        t0 = time.perf_counter()
        ex.prompt_dropdown.value = t
        times.append(time.perf_counter() - t0)
    print(f"Explorer prompt switch ({switches}, 3 figures each, 3 methods): {fmt(times)}")
    print(f"  messages: {comm.messages / switches:.1f} per switch, {comm.bytes / switches / 1024:.1f} KiB per switch")
    print(f"  budget: 100 ms -> {'OK' if np.percentile(np.array(times) * 1000, 95) < 100 else 'OVER'} (p95)")


if __name__ == "__main__":
    sys.exit(main())
