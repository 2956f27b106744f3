#!/usr/bin/env bash
# `make demo` on a machine without a GPU: install torch's CPU wheels from PyTorch's CPU wheel index (about 1.5 GB
# for the whole environment, as binder/ does) instead of the default CUDA build (about 6.3 GB). Where that index
# cannot be reached (e.g. machines that reach only PyPI), fall back to the default wheels and say so.
# Usage: scripts/install_torch.sh PIP   (PIP: the virtual environment's pip). DECOMVIZ_TORCH=default skips the
# CPU index; DECOMVIZ_TORCH=cpu uses it even with a GPU. CI (`make test`) never runs this: it keeps the default path.
set -uo pipefail
PIP=${1:?usage: install_torch.sh PIP}
INDEX=https://download.pytorch.org/whl/cpu
choice=${DECOMVIZ_TORCH:-auto}
if "$PIP" show torch >/dev/null 2>&1; then
    echo "[decomviz] torch is already installed in this environment; leaving it as it is."
    exit 0
fi
if [ "$choice" = default ]; then
    echo "[decomviz] DECOMVIZ_TORCH=default: the default torch wheels will be installed."
    exit 0
fi
if [ "$choice" = auto ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[decomviz] a GPU is present: the default (CUDA) torch wheels will be installed."
    exit 0
fi
echo "[decomviz] no GPU: trying torch's CPU wheels from $INDEX (about 1.5 GB in all, instead of about 6.3 GB)..."
if "$PIP" install --quiet --timeout 15 --retries 1 --index-url "$INDEX" torch torchvision; then
    echo "[decomviz] installed torch's CPU wheels."
else
    echo "[decomviz] could not install from $INDEX (not reachable from here?): falling back to the default torch" \
         "wheels, which bring the CUDA libraries (about 6.3 GB in all). Set DECOMVIZ_TORCH=default to skip this try."
fi
exit 0
