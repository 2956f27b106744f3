"""Write binder/requirements.txt from pyproject.toml: the core dependencies, the notebook extra and the
scikit-image sample photos the Explorer offers, with CPU wheels of torch (Binder has no GPU).

    python scripts/binder_requirements.py           # rewrite binder/requirements.txt
    python scripts/binder_requirements.py --check   # exit 1 if it is stale (tests/test_packaging.py runs this)
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "binder" / "requirements.txt"
#: packages of other extras that the notebooks use on Binder
ALSO = ("scikit-image",)
HEADER = """\
# Made from pyproject.toml by `python scripts/binder_requirements.py`: do not edit by hand.
# What a Binder (repo2docker) build installs; binder/postBuild then installs decomviz itself (pip install -e .).
# CPU wheels of torch keep the image small (Binder has no GPU).
--extra-index-url https://download.pytorch.org/whl/cpu
"""


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def requirements(pyproject: Path = ROOT / "pyproject.toml") -> str:
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = list(project["dependencies"]) + list(extras["notebook"])
    wanted += [r for extra in extras.values() for r in extra if _name(r) in ALSO]
    seen, lines = set(), []
    for r in wanted:
        if _name(r) not in seen:
            seen.add(_name(r))
            lines.append(r)
    return HEADER + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if binder/requirements.txt is stale")
    args = p.parse_args(argv)
    text = requirements()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run python scripts/binder_requirements.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
