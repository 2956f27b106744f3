"""Speed of DecomCAM and the baselines, and DecomCAM's cost over its floor.

    python benchmarks/bench_engine.py [--models RN50 ViT-B-16] [--repeats 3] [--device cpu] [--images 1]
                                      [--profile]

For each model (random weights for open_clip names; the bundled ones as they ship), at the model's input size:
seconds per (image, prompt) pair for every method, and the floor measured in the same run: one forward of the
image tower + one backward from the score to the tapped layer, plus K masked images in one forward batch
(plus the blurred reference). Ratio = DecomCAM / floor (target <= 1.2). ``--images N`` explains N images against
one prompt per call (the floor scales with them) and reports seconds per pair; ``--profile`` prints where
DecomCAM's time goes (torch.profiler, top operators). Feature-space integration is set
against one forward + backward alone (target <= 1.5).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

import decomviz as dv
from decomviz.apps.bench import floor_seconds, make_methods, timeit


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["RN50", "ViT-B-16"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None)
    ap.add_argument("--n-components", type=int, default=10)
    ap.add_argument("--skip", nargs="*", default=[], help="methods to skip, e.g. scorecam")
    ap.add_argument("--images", type=int, default=1, help="images per call (one prompt)")
    ap.add_argument("--profile", action="store_true", help="print DecomCAM's top operators")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"device {args.device or ('cuda' if torch.cuda.is_available() else 'cpu')}")
    for name in args.models:
        bundled = name in dv.models.BUNDLED
        model = dv.load_model(name, pretrained=None, device=args.device) if not bundled else \
            dv.load_model(name, device=args.device)
        H, W = model.image_size
        img = [(rng.random((H, W, 3)) * 255).astype(np.uint8) for _ in range(args.images)]
        N = len(img)
        prompt = "a photo of a house"
        x = model.prepare(img).tensor
        text = model.encode_text([prompt])
        K = args.n_components
        floor = floor_seconds(model, x, text, K, args.repeats)
        fwd_bwd = floor_seconds(model, x, text, 0, args.repeats)
        methods = make_methods(model)   # every registered method at its defaults, by registry name
        for method in ("decomcam", "decomcam-feature", "decomcam-nointegration"):
            methods[method] = dv.make_method(method, model, n_components=K)
        if model.device.type == "cuda":
            methods["decomcam (gesvda)"] = dv.DecomCAM(model, n_components=K, svd_driver="gesvda")
        floor, fwd_bwd = floor / N, fwd_bwd / N
        print(f"\n{name} ({model.source}), {H}x{W}, layer {model.default_layer}, K={K}, {N} image(s) per call")
        print(f"  {'floor (fwd+bwd, K+1 masked fwd)':34s} {floor:8.3f} s")
        print(f"  {'forward + backward':34s} {fwd_bwd:8.3f} s")
        for label, cam in methods.items():
            if label.split(" ")[0] in args.skip:
                continue
            reps = 1 if label in ("scorecam", "gscorecam", "occlusion") else args.repeats
            t = timeit(lambda: cam(img, prompt), reps) / N
            extra = {"decomcam": f"   ratio to floor {t / floor:.2f}",
                     "decomcam-feature": f"   ratio to forward+backward {t / fwd_bwd:.2f}"}.get(label, "")
            print(f"  {label:34s} {t:8.3f} s/pair{extra}", flush=True)
        if args.profile:
            for label in ("decomcam", "decomcam-feature"):
                profile(methods[label], img, prompt, label)


def profile(cam, img, prompt, label):
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cam.model.device.type == "cuda" else [])
    cam(img, prompt)
    with torch_profile(activities=activities) as prof:
        for _ in range(3):
            cam(img, prompt)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if cam.model.device.type == "cuda" else "self_cpu_time_total"
    print(f"\n  profile of {label}, 3 calls, by {key}:")
    print(prof.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=48))


if __name__ == "__main__":
    main()
