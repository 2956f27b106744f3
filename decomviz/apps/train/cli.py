"""`decomviz train`: the command line of the training loop."""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import Optional, Sequence

from .loop import default_out, train
from .recipes import RECIPES


def build_parser(parser: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="decomviz train",
                                          description="Train a bundled PartsWorld CLIP (open_clip local-dir output).")
    p.add_argument("--model", default="parts-rn", choices=sorted(RECIPES), help="training recipe")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the recipe's)")
    p.add_argument("--batch-size", type=int, default=None, help="scenes per step (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0, help="fixes initialisation, scenes, captions and order")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    p.add_argument("--out", default=None, help="output folder (default: trained/<model> in the current folder; the bundled models live in decomviz/assets/<model>)")
    p.add_argument("--eval-every", type=int, default=100, help="steps between zero-shot evaluations (0: off)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes drawing scenes")
    p.add_argument("--device", default="cpu", help="cpu or cuda (scenes are drawn on the CPU either way)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop training after this long, then save and evaluate what was trained")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return run_args(args, argv)


def run_args(args: argparse.Namespace, argv: Optional[Sequence[str]] = None) -> int:
    """Run a parsed ``decomviz train`` command line (for a CLI that adds this parser as a sub-command)."""
    command = "decomviz train " + " ".join(shlex.quote(a) for a in (argv or []))
    rec = train(model=args.model, steps=args.steps, batch_size=args.batch_size, seed=args.seed, out=args.out,
                lr=args.lr, eval_every=args.eval_every, progress=not args.no_progress, threads=args.threads,
                workers=args.workers, command=command.strip(), device=args.device,
                max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes)
    out = args.out or str(default_out(args.model))
    acc = rec.get("zero_shot_accuracy")
    print(f"saved {out}: final loss {rec['final_loss']:.4f}, zero-shot accuracy "
          f"{'n/a' if acc is None else f'{acc:.3f}'}, {rec['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
