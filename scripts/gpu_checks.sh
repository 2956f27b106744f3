#!/usr/bin/env bash
# The checks that need a GPU, in one run: the CUDA tests, the engine benchmark on the GPU, and a time-boxed
# training run of the parts-vit recipe. Writes logs (and the trained folder) under $OUT (default gpu_out/).
#   OUT=gpu_out BUDGET=540 bash scripts/gpu_checks.sh
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
BUDGET=${BUDGET:-540}    # seconds for the whole script; training gets what the tests and the benchmark leave
PY=${PY:-python3}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
start=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, open_clip, os; print('torch', torch.__version__, 'open_clip', open_clip.__version__, torch.cuda.get_device_name(), 'cpus', os.cpu_count())" | tee -a "$OUT/gpu.txt"
$PY -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.log"
$PY benchmarks/bench_engine.py --device cuda --models RN50 ViT-B-16 parts-rn --repeats 5 2>&1 | tee "$OUT/bench_engine_cuda.log"
left=$(( BUDGET - ($(date +%s) - start) - 60 ))
echo "training parts-vit for $left s"
$PY -m decomviz.apps.train.cli --model parts-vit --device cuda --workers $(( $(nproc) - 1 )) --threads 4 --eval-every 500 \
    --no-progress --max-minutes "$($PY -c "print(max(1, $left) / 60)")" --out "$OUT/parts-vit" 2>&1 | tee "$OUT/train_vit.log"
echo "total $(( $(date +%s) - start )) s"
