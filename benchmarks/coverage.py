"""Which open_clip architectures decomviz explains: a markdown table.

    python benchmarks/coverage.py --out benchmarks/results/coverage.md [--limit-s 90] [--budget-s 1380]
                                  [--max-params 1.5e9] [--only REGEX] [--device cpu] [--resume]

Every name of `open_clip.list_models()` is built with random weights (``pretrained=None``, nothing downloaded),
smallest first, each in a child process with a time limit. For each one explained: the tower's adapter, the
default layer, its grid, whether DecomCAM gave a non-empty map (or an empty one, flagged, with the flag), and the
seconds of one (image, prompt) pair. The rest are listed with the reason: too many parameters, a text tower or
tokenizer whose files come from the Hugging Face hub (offline here), the time limit, an error. Where only the
tokenizer comes from the hub, a stand-in tokenizer (random token ids of the right length) is used and noted:
the image tower, which is what decomviz explains, is the model's own.

--resume reads the table already at --out, keeps its explained rows and runs only the architectures it lists
as not run or not finished (a run's time budget spent), so a long survey can be made in several sittings; with
--only, it runs the matching architectures again and keeps every other row. The header lists each run's settings.

    python benchmarks/coverage.py --summary benchmarks/results/coverage.md

prints the table's summary by tower family (the one in the README).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import sys
import time
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def estimate_params(name: str):
    """(total, image tower) parameter counts from a model built on the meta device (no memory, no init), or the
    reason it cannot be built here."""
    import open_clip
    import torch
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            model = open_clip.create_model(name, pretrained=None, device="meta")
    except Exception as err:  # noqa: BLE001 - the reason is reported
        text = f"{type(err).__name__}: {err}"
        if "huggingface.co" in text or "offline" in text.lower() or "OSError" in text:
            return None, "its text tower's config and tokenizer come from the Hugging Face hub (offline here)"
        return None, f"cannot be built: {text.splitlines()[0][:160]}"
    return (sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.visual.parameters())), None


def _image(size: int = 320):
    import numpy as np
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.zeros((size, size, 3)) + rng.uniform(0.2, 0.5, 3) + 0.2 * (xx / size)[..., None]
    for _ in range(3):
        cy, cx, r = rng.uniform(0.25, 0.75, 2).tolist() + [rng.uniform(0.08, 0.2)]
        img[(yy / size - cy) ** 2 + (xx / size - cx) ** 2 < r ** 2] = rng.uniform(0, 1, 3)
    return (img.clip(0, 1) * 255).astype(np.uint8)


def explain_one(name: str, device: str) -> dict:
    """Build `name` with random weights and explain one pair; a row of the table."""
    import open_clip
    import torch

    import decomviz as dv
    torch.manual_seed(0)
    note = ""
    tokenizer = None
    try:
        open_clip.get_tokenizer(name)
    except Exception:  # noqa: BLE001 - e.g. SigLIP's tokenizer, from the hub
        text_cfg = open_clip.get_model_config(name).get("text_cfg", {})
        ctx, vocab = int(text_cfg.get("context_length", 77)), int(text_cfg.get("vocab_size", 49408))
        tokenizer = lambda prompts: torch.randint(1, vocab - 1, (len(prompts), ctx))  # noqa: E731
        note = "tokenizer from the hub: a stand-in used"
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dv.load_model(name, pretrained=None, device=device, tokenizer=tokenizer)
        built = time.perf_counter() - t0
        img = _image()
        t0 = time.perf_counter()
        exp = dv.DecomCAM(model)(img, "a photo of a red ball")
        seconds = time.perf_counter() - t0
    flags = [k for k, v in exp.flags.items() if bool(v.any())]
    nonempty = float(exp.saliency.max()) > 0
    grid = "x".join(map(str, exp.params["grid"]))
    return {"name": name, "kind": model.kind, "layer": model.default_layer, "grid": grid,
            "map": "non-empty" if nonempty else f"empty, flagged ({', '.join(flags) or 'no flag'})",
            "ok": nonempty or bool(flags), "seconds": seconds, "build": built, "note": note}


def _child(name: str, device: str, threads: int, conn) -> None:
    import torch
    torch.set_num_threads(threads)
    try:
        conn.send(explain_one(name, device))
    except Exception as err:  # noqa: BLE001 - the reason is reported
        conn.send({"name": name, "error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}",
                   "trace": traceback.format_exc()[-800:]})
    conn.close()


def run_one(name: str, device: str, limit_s: float, threads: int) -> dict:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(name, device, threads, child))
    proc.start()
    child.close()
    result = None
    if parent.poll(limit_s):
        try:
            result = parent.recv()
        except EOFError:
            result = None
    proc.join(5)
    killed_here = proc.is_alive()
    if killed_here:
        proc.kill()
        proc.join()
    if result is None:
        if killed_here or proc.exitcode == 0:
            return {"name": name, "error": f"over the time limit of {limit_s:.0f} s on this machine"}
        if proc.exitcode == -9:  # not killed here: the kernel's out-of-memory killer
            return {"name": name, "error": "killed by the system while building or explaining: out of memory"}
        return {"name": name, "error": f"the process ended with code {proc.exitcode}"}
    return result


_DONE_ROW = re.compile(r"^\| (?P<name>[^|]+) \| (?P<params>\d+) \| (?P<kind>[^|]+) \| `(?P<layer>[^`]+)` \| "
                       r"(?P<grid>[^|]+) \| (?P<map>[^|]+) \| (?P<seconds>[\d.]+) \| (?P<note>[^|]*) \|$")


def explained_rows(table: str) -> list:
    """The explained rows of a table written by `render` (for --resume)."""
    rows = []
    for line in table.splitlines():
        m = _DONE_ROW.match(line)
        if m:
            row = {k: v.strip() for k, v in m.groupdict().items()}
            row.update(params=float(row["params"]) * 1e6, seconds=float(row["seconds"]))
            rows.append(row)
    return rows


_REST_ROW = re.compile(r"^\| (?P<name>[^|]+) \| (?P<params>\d*) \| (?P<reason>[^|]+) \|$")
_REASONS = (("hub", "text tower or tokenizer from the Hugging Face hub (offline here)"),
            ("parameters", "over the survey's parameter limit (not built; see the table)"),
            ("budget", "not reached: the survey's time budget was spent"),
            ("time limit", "over the time limit per architecture"))


def listed_rows(table: str) -> list:
    """(name, params or None, reason) of the architectures a table lists as not explained."""
    if "Not explained here:" not in table:
        return []
    rows = []
    for line in table.split("Not explained here:")[-1].splitlines():
        m = _REST_ROW.match(line)
        if m and m.group("name").strip() != "architecture":
            params = float(m.group("params")) * 1e6 if m.group("params") else None
            rows.append((m.group("name").strip(), params, m.group("reason").strip()))
    return rows


def summary(table: str) -> str:
    """Counts by tower adapter (explained, with a non-empty map, flagged empty) and by reason for the rest."""
    done = explained_rows(table)
    rest = [reason for _, _, reason in listed_rows(table)]
    lines = ["| tower adapter | explained | non-empty map | empty map, flagged |", "|---|---:|---:|---:|"]
    for kind in sorted({r["kind"] for r in done}):
        rows = [r for r in done if r["kind"] == kind]
        full = sum(r["map"] == "non-empty" for r in rows)
        lines.append(f"| {kind} | {len(rows)} | {full} | {len(rows) - full} |")
    lines.append(f"| **all** | **{len(done)}** | {sum(r['map'] == 'non-empty' for r in done)} | "
                 f"{sum(r['map'] != 'non-empty' for r in done)} |")
    lines += ["", "| not explained | architectures |", "|---|---:|"]
    for key, text in _REASONS:
        n = sum(key in reason for reason in rest)
        if n:
            lines.append(f"| {text} | {n} |")
    other = [r for r in rest if not any(key in r for key, _ in _REASONS)]
    if other:
        lines.append(f"| other errors (see the table) | {len(other)} |")
    return "\n".join(lines) + "\n"


def earlier_headers(table: str) -> list:
    """The own headers of the runs behind a table: those it lists as resumed, then its own (for --resume)."""
    paragraphs = table.split("\n\n")
    listed = []
    if "kept as they were:" in paragraphs[1]:
        listed = [line[2:] for line in paragraphs[2].splitlines() if line.startswith("- ")]
    return listed + [paragraphs[1].split(" It resumed")[0].replace("\n", " ")]


def render(rows: list, skipped: list, header: str) -> str:
    ok = [r for r in rows if "error" not in r]
    lines = [header, "",
             f"{len(ok)} of {len(ok) + len([r for r in rows if 'error' in r]) + len(skipped)} open_clip architectures "
             "explained with random weights.", "",
             "| architecture | params (M) | tower adapter | default layer | grid | DecomCAM map | s / pair | note |",
             "|---|---:|---|---|---|---|---:|---|"]
    for r in sorted(ok, key=lambda r: r["name"].lower()):
        lines.append(f"| {r['name']} | {r['params'] / 1e6:.0f} | {r['kind']} | `{r['layer']}` | {r['grid']} | "
                     f"{r['map']} | {r['seconds']:.2f} | {r['note']} |")
    rest = [(r["name"], r.get("params"), r["error"]) for r in rows if "error" in r] + skipped
    if rest:
        lines += ["", "Not explained here:", "", "| architecture | params (M) | reason |", "|---|---:|---|"]
        for name, params, reason in sorted(rest, key=lambda r: r[0].lower()):
            lines.append(f"| {name} | {'' if params is None else f'{params / 1e6:.0f}'} | {reason} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="markdown file to write")
    ap.add_argument("--summary", metavar="TABLE", help="print the summary by tower family of a written table; "
                                                     "nothing is run")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--limit-s", type=float, default=90.0, help="time limit per architecture (build + one pair)")
    ap.add_argument("--budget-s", type=float, default=1380.0, help="time for the whole run; the rest is listed")
    ap.add_argument("--max-params", type=float, default=1.5e9, help="larger models are listed, not built")
    ap.add_argument("--only", default=None, help="a regular expression: only the matching names")
    ap.add_argument("--note", default="", help="a sentence added to the header (e.g. what else ran meanwhile)")
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 1)), help="torch threads per model")
    ap.add_argument("--resume", action="store_true",
                    help="keep the explained rows of the table at --out; run only the architectures not reached")
    args = ap.parse_args(argv)
    if args.summary:
        print(summary(Path(args.summary).read_text(encoding="utf-8")), end="")
        return 0
    if not args.out:
        ap.error("--out is required (or --summary TABLE)")
    previous = Path(args.out).read_text(encoding="utf-8") if args.resume else ""
    kept = explained_rows(previous)
    earlier = earlier_headers(previous) if previous else []
    import open_clip
    import torch
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    names = [n for n in open_clip.list_models() if args.only is None or re.search(args.only, n)]
    sized, skipped = [], []
    if args.only and previous:  # resuming a part: what the earlier run said about the others stands
        skipped = [row for row in listed_rows(previous) if row[0] not in names]
        kept = [r for r in kept if r["name"] not in names]
    for name in names:
        params, reason = estimate_params(name)
        if reason:
            skipped.append((name, None, reason))
        elif params[0] > args.max_params:
            skipped.append((name, params[0], f"{params[0] / 1e9:.1f} B parameters ({params[0] * 4 / 1e9:.0f} GB "
                                              f"of fp32 weights): not built, over the run's limit of "
                                              f"{args.max_params / 1e9:.1f} B parameters"))
        else:
            sized.append((params[0], name))
    rows = list(kept)
    done = {r["name"] for r in kept}
    for params, name in sorted(sized):
        if name in done:
            continue
        left = args.budget_s - (time.perf_counter() - start)
        if left < 10:
            skipped.append((name, params, "not run: the run's time budget was spent"))
            continue
        row = run_one(name, device, min(args.limit_s, left), args.threads)
        if left < args.limit_s and "time limit" in row.get("error", ""):
            row["error"] = "not finished: the run's time budget was spent"
        row["params"] = params
        rows.append(row)
        status = row.get("error") or f"{row['kind']} {row['grid']} {row['map']} {row['seconds']:.2f} s"
        print(f"[{time.perf_counter() - start:6.0f} s] {name}: {status}", flush=True)
    import platform

    import decomviz
    header = (f"# decomviz coverage of open_clip architectures\n\n"
              f"Made by `python benchmarks/coverage.py` (decomviz {decomviz.__version__}, open_clip "
              f"{open_clip.__version__}, torch {torch.__version__}) on {device} ({platform.processor() or 'cpu'}, "
              f"{args.threads} threads), random weights, one 320x320 image and one prompt per architecture, "
              f"DecomCAM with its defaults; time limit {args.limit_s:.0f} s per architecture (build + one pair)."
              + (f" {args.note}" if args.note else ""))
    if args.resume:
        header += (f" It resumed earlier runs{f' for the architectures matching {args.only!r}' if args.only else ''}"
                   f"; the {len(kept)} rows they explained are kept as they were:\n\n"
                   + "\n".join(f"- {h}" for h in earlier))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(render(rows, skipped, header), encoding="utf-8")
    print(f"wrote {args.out}: {len([r for r in rows if 'error' not in r])} explained, "
          f"{len(skipped) + len([r for r in rows if 'error' in r])} listed with a reason")
    return 0


if __name__ == "__main__":
    sys.exit(main())
