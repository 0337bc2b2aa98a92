#!/usr/bin/env bash
# Train the bundled demo model and denoiser with their GPU recipes (configs/train/demo_gpu.yaml,
# configs/train/denoiser_demo_gpu.yaml) on one bare GPU machine without network, in one command
# of about 9 minutes: the synthetic scenes (all CPUs), the model for MODEL_BUDGET_S seconds, the
# denoiser on its scenes for DENOISER_BUDGET_S seconds (each run's step count comes from a short
# calibration run, so the cosine schedule ends on time).
#
#   bash scripts/train_demo_gpu.sh             # on the GPU machine
#   bash scripts/train_demo_gpu.sh --dry-run   # tiny sizes on the CPU, about a minute
#
# Writes into $OUT (default ./demo_gpu_out) what the packaging stages need, then, anywhere:
#
#   mkdir -p runs && tar -xf $OUT/demo-gpu.tar -C runs && tar -xf $OUT/denoiser-gpu.tar -C runs
#   python scripts/train_demo_model.py --config configs/train/demo_gpu.yaml --stage package \
#       --run-dir runs/demo-gpu
#   python scripts/train_demo_denoiser.py --config configs/train/denoiser_demo_gpu.yaml \
#       --stage package --run-dir runs/denoiser-gpu
#
# The packages the GPU machine lacks travel as wheels in .whl/ (scripts/device_env.sh says how
# to fetch them). Environment: PYTHON, WHEELS, OUT, RUNS (default a temporary folder),
# MODEL_BUDGET_S and DENOISER_BUDGET_S (default 190 each).
set -euo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-./demo_gpu_out}"
mkdir -p "$OUT"
source scripts/device_env.sh
echo "train_demo_gpu: $DEVICE_WHEELS"
RUNS="${RUNS:-$(mktemp -d)}"
mkdir -p "$RUNS" && RUNS="$(cd "$RUNS" && pwd)"
MODEL_BUDGET_S="${MODEL_BUDGET_S:-190}"
DENOISER_BUDGET_S="${DENOISER_BUDGET_S:-190}"
export PYTHONUNBUFFERED=1

# Each stage runs in the background so that a TERM or INT sent to this script (a timeout) is
# passed on: the training saves a checkpoint and stops (re-running the script resumes it).
run() {
  "$@" &
  child=$!
  trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143' TERM INT
  wait "$child"
  trap - TERM INT
}

model_set=() denoiser_set=()
if [ "${1:-}" = "--dry-run" ]; then
  stream="{dataset: re10k, context_frames: [3, 6], sampler: {context_gap: [3, 3], long_side: 32}}"
  tiny=(data.synthetic.train_scenes=16 data.synthetic.val_scenes=4 data.synthetic.image_size=32
    "data.train=[$stream]" data.num_workers=2 data.val_batches=1
    loop.global_batch_size=2 loop.micro_batch_size=2 loop.eval_every=20 loop.log_every=10)
  model_set=("${tiny[@]}" "model.overrides.image_size=[32,32]"
    model.overrides.encoder_image_size=32 optim.warmup_steps=5)
  denoiser_set=("${tiny[@]}" optim.warmup_steps=5)
  MODEL_BUDGET_S=10 DENOISER_BUDGET_S=10
fi

echo "train_demo_gpu: $(date +%T) model"
run "$PYTHON" scripts/train_demo_model.py --config configs/train/demo_gpu.yaml --stage train \
  --run-dir "$RUNS/demo-gpu" --budget-s "$MODEL_BUDGET_S" "${model_set[@]/#/--set=}"
tar -cf "$OUT/demo-gpu.tar" -C "$RUNS" demo-gpu/model demo-gpu/train_record.json \
  demo-gpu/config.yaml demo-gpu/logs/metrics.jsonl demo-gpu/synthetic/train-shards/index.json

echo "train_demo_gpu: $(date +%T) denoiser"
# The denoiser's synthetic settings are the model's: it reads the same shards.
mkdir -p "$RUNS/denoiser-gpu"
ln -sfn "$RUNS/demo-gpu/synthetic" "$RUNS/denoiser-gpu/synthetic"
run "$PYTHON" scripts/train_demo_denoiser.py --config configs/train/denoiser_demo_gpu.yaml \
  --stage train --run-dir "$RUNS/denoiser-gpu" --budget-s "$DENOISER_BUDGET_S" \
  --set "model.checkpoint=$RUNS/demo-gpu/model" "${denoiser_set[@]/#/--set=}"
tar -cf "$OUT/denoiser-gpu.tar" -C "$RUNS" denoiser-gpu/pipeline/denoiser \
  denoiser-gpu/pipeline/scheduler denoiser-gpu/train_record.json denoiser-gpu/config.yaml \
  denoiser-gpu/logs/metrics.jsonl
echo "train_demo_gpu: $(date +%T) wrote $OUT/demo-gpu.tar and $OUT/denoiser-gpu.tar"
