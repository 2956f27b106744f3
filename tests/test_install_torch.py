"""`make demo` without a GPU tries torch's CPU wheel index and falls back to the default wheels, saying so
(scripts/install_torch.sh, run with a stand-in pip: nothing is installed)."""
import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "install_torch.sh"


def _run(tmp_path, pip_body, env_extra=None):
    pip = tmp_path / "pip"
    log = tmp_path / "pip.log"
    pip.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n{pip_body}\n")
    pip.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "DECOMVIZ_TORCH"}
    env.update(PATH=f"{tmp_path}:/usr/bin:/bin", **(env_extra or {}))   # no nvidia-smi on this PATH
    out = subprocess.run(["bash", str(SCRIPT), str(pip)], capture_output=True, text=True, env=env, timeout=30)
    return out, (log.read_text() if log.exists() else "")


@pytest.mark.skipif(not Path("/bin/bash").exists(), reason="needs bash")
def test_without_a_gpu_the_cpu_index_is_tried_and_its_failure_falls_back_saying_so(tmp_path):
    if any((Path(d) / "nvidia-smi").exists() for d in ("/usr/bin", "/bin")):
        pytest.skip("this machine has nvidia-smi on /usr/bin: the script would take the GPU path")
    out, calls = _run(tmp_path, 'case "$1" in show) exit 1;; install) exit 1;; esac')
    assert out.returncode == 0
    assert "--index-url https://download.pytorch.org/whl/cpu torch torchvision" in calls
    assert "falling back to the default torch wheels" in out.stdout and "6.3 GB" in out.stdout


def test_an_installed_torch_or_default_choice_is_left_alone(tmp_path):
    out, calls = _run(tmp_path, 'exit 0')                  # `pip show torch` succeeds: already installed
    assert "already installed" in out.stdout and "install" not in calls.replace("show", "")
    out, calls = _run(tmp_path, 'case "$1" in show) exit 1;; esac', {"DECOMVIZ_TORCH": "default"})
    assert "default torch wheels will be installed" in out.stdout and "index-url" not in calls
