"""The dataset documentation runs as written: docs/extending.md's own dataset class, and docs/datasets.md's
export and read-back."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _section_blocks(path: Path, heading: str = None):
    """The ```python blocks of a Markdown file, or of one of its '## ' sections."""
    text = path.read_text()
    if heading is not None:
        start = text.index(f"## {heading}\n")
        end = text.find("\n## ", start + 1)
        text = text[start:end if end >= 0 else None]
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _run(code: str, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_the_own_dataset_class_of_the_extending_guide_runs_and_gives_part_rows(tmp_path):
    blocks = _section_blocks(ROOT / "docs" / "extending.md", "Add a dataset")
    assert len(blocks) == 1
    out = _run(blocks[0] + "\nassert not bank.failed and bank.part_overlap.any()\nprint('OK')", tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "'the tail of a kite'" in out.stdout and "['kite/body', 'kite/tail'] (" in out.stdout
    assert out.stdout.strip().endswith("OK")


def test_the_datasets_page_runs_as_written(tmp_path):
    blocks = _section_blocks(ROOT / "docs" / "datasets.md")
    assert blocks
    out = _run("\n\n".join(blocks) + "\nprint('OK')", tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "00000.png" in out.stdout and out.stdout.strip().endswith("OK")
