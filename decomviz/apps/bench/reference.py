"""BENCHMARKS.md, made from the results: one section per question, each with its command, date, commit and machine.

    python -m decomviz.apps.bench.reference           # rewrite BENCHMARKS.md from benchmarks/results/*.json
    python -m decomviz.apps.bench.reference --check   # exit 1 if BENCHMARKS.md is stale (a test runs this)

Each ``benchmarks/results/<question>.json`` holds one section: ``order``, ``title``, ``question``, ``command``,
``date``, ``commit``, ``machine``, and the figures as ``blocks`` (Markdown: tables and short readings) and/or
``bench_results`` (a results.json that `decomviz bench` wrote, rendered by the bench's own tables). The history
of how the figures were reached is in docs/experiments/.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "BENCHMARKS.md"
FIELDS = ("order", "title", "question", "command", "date", "commit", "machine")

HEADER = """\
# Benchmarks

The current figures, one section per question. Each gives the command that reproduces it, when and at which
commit it was taken, and on which machine. This file is made by `python -m decomviz.apps.bench.reference` from
`benchmarks/results/*.json` (a test fails when it is stale); how the figures were reached, including the
attempts that were not kept, is in [docs/experiments/](docs/experiments/).
"""


def load_sections(results: Path = RESULTS) -> List[Dict]:
    """The sections in ``results/*.json`` that carry a ``question`` (other JSON files there are raw results)."""
    sections = []
    for path in sorted(results.glob("*.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "question" not in data:
            continue
        missing = [f for f in FIELDS if f not in data]
        if missing:
            raise ValueError(f"{path.relative_to(ROOT)} lacks {', '.join(missing)}: every section says its "
                             "question, command, date, commit and machine.")
        if "/tmp/" in json.dumps(data):
            raise ValueError(f"{path.relative_to(ROOT)} names a /tmp path: name what was measured instead.")
        sections.append(data)
    return sorted(sections, key=lambda s: (s["order"], s["title"]))


def section_markdown(s: Dict, results: Path = RESULTS) -> str:
    lines = [f"## {s['title']}", "", f"*{s['question']}*", "", "```", s["command"].rstrip(), "```", "",
             f"Taken {s['date']} at commit `{s['commit']}` on {s['machine']}.", ""]
    if s.get("bench_results"):
        from .runner import to_markdown
        bench = to_markdown(json.loads((results / s["bench_results"]).read_text()))
        lines += [bench.replace("\n### ", "\n#### ").rstrip(), ""]
    for block in s.get("blocks", []):
        lines += [block.rstrip(), ""]
    return "\n".join(lines)


def benchmarks_markdown(results: Path = RESULTS) -> str:
    sections = load_sections(results)
    toc = [f"- [{s['title']}](#{_anchor(s['title'])})" for s in sections]
    return "\n".join([HEADER, *toc, ""] + [section_markdown(s, results) for s in sections]).rstrip() + "\n"


def _anchor(title: str) -> str:
    keep = "".join(c for c in title.lower() if c.isalnum() or c in " -")
    return keep.replace(" ", "-")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Make BENCHMARKS.md from benchmarks/results/*.json.")
    p.add_argument("--check", action="store_true", help="exit 1 if BENCHMARKS.md is stale")
    args = p.parse_args(argv)
    text = benchmarks_markdown()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print("BENCHMARKS.md is stale: run python -m decomviz.apps.bench.reference", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
