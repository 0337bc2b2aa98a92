#!/usr/bin/env bash
# LagerNVS on one GPU, in one command that ends within 8 minutes on a bare H100/H200 without
# network: bf16 parity, encoder latency, renderer FPS (every attention variant, 256² and 512²,
# 1-9 source views, each fast-path option on and off), peak memory, training throughput.
#
#   bash scripts/device_check.sh             # full size on CUDA, ~7 minutes
#   bash scripts/device_check.sh --dry-run   # tiny sizes on the CPU, seconds
#   bash scripts/device_check.sh --budget-s 300
#
# Writes device_check.json and device_check.md into $OUT (default ./device_check_out).
#
# The packages the GPU machine lacks travel as wheels in .whl/ (scripts/device_env.sh says how
# to fetch them). Environment: PYTHON (default python3), WHEELS (default .whl), OUT.
set -uo pipefail

export DEVICE_CHECK_STARTED="$(date +%s.%N)"
cd "$(dirname "$0")/.."
OUT="${OUT:-./device_check_out}"
mkdir -p "$OUT"
source scripts/device_env.sh
export DEVICE_CHECK_WHEELS="$DEVICE_WHEELS"
echo "device_check: $DEVICE_CHECK_WHEELS"

# The script keeps to its own budget; the timeout only stops a hung run (SIGINT: it still
# writes what it measured).
export PYTHONUNBUFFERED=1
timeout --signal=INT --kill-after=15 465 "$PYTHON" scripts/device_check.py --out "$OUT" "$@"
status=$?
echo "device_check: wrote $OUT/device_check.json and $OUT/device_check.md (exit $status)"
exit $status
