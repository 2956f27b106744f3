"""Make the data the notebooks ship in notebooks/data, so that they open in seconds (in Voila too) instead of
extracting for minutes: notebook 04's bank of 200 PartsWorld scenes, and notebook 05's COCO-format part dataset of
32 scenes with its bank. Each is made exactly as its notebook would make it with EXTRACT = True; the notebooks open
them only when `OSSMBank.made_with` their DecomCAM (tests/test_shipped_banks.py checks that they still are).

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/ship_notebook_data.py [--only bank-04 bank-05]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
import warnings
from pathlib import Path

import decomviz as dv

DATA = Path(__file__).resolve().parents[1] / "notebooks" / "data"


def bank_04(model) -> None:
    world = dv.PartsWorld(200, seed=4, n_objects=1)
    _extract(dv.DecomCAM(model, n_components=6), world, "a photo of a {}", DATA / "bank-04", batch_size=64)


def bank_05(model) -> None:
    coco = DATA / "coco-05"
    shutil.rmtree(coco, ignore_errors=True)
    dv.PartsWorld(32, seed=5, n_objects=1).export(coco, format="coco")
    dataset = dv.datasets.COCOParts(coco / "annotations.json", coco / "images")
    _extract(dv.DecomCAM(model, n_components=6), dataset, ["a photo of a {class}", "the {part} of a {class}"],
             DATA / "bank-05", batch_size=16)


def _extract(cam, dataset, prompts, out: Path, batch_size: int) -> None:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No component raised the score")
        bank = dv.extract(cam, dataset, prompts, out=out, batch_size=batch_size)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out.name}: {bank} in {time.perf_counter() - t0:.0f} s, {size / 1e6:.1f} MB", flush=True)


MAKERS = {"bank-04": bank_04, "bank-05": bank_05}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", choices=sorted(MAKERS), default=sorted(MAKERS))
    args = ap.parse_args(argv)
    model = dv.load_model()
    for name in args.only:
        MAKERS[name](model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
