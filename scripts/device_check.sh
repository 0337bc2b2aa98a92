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
# The GPU machine has python3 with torch, accelerate, safetensors, torchmetrics and einops; the
# other packages travel as wheels in the ignored folder .whl/, fetched once on a machine with
# network (all pure Python; diffusers 0.42.1 needs huggingface-hub >= 1.32 and safetensors >= 0.8,
# which the machine has):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl diffusers==0.42.1 webdataset==1.0.2 braceexpand==0.1.7 lpips==0.1.4
#
# They are installed into a temporary prefix put first on PYTHONPATH. Environment: PYTHON
# (default python3), WHEELS (default .whl), OUT.
set -uo pipefail

export DEVICE_CHECK_STARTED="$(date +%s.%N)"
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
WHEELS="${WHEELS:-.whl}"
OUT="${OUT:-./device_check_out}"
mkdir -p "$OUT"

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
wheels=("$WHEELS"/*.whl)
if [ -e "${wheels[0]}" ]; then
  prefix="$(mktemp -d)"
  trap 'rm -rf "$prefix"' EXIT
  site="$prefix/site"
  if "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$site" "${wheels[@]}"; then
    export PYTHONPATH="$site:$PYTHONPATH"
    export DEVICE_CHECK_WHEELS="installed ${#wheels[@]} wheels from $WHEELS"
  else
    export DEVICE_CHECK_WHEELS="pip install of $WHEELS failed"
  fi
else
  export DEVICE_CHECK_WHEELS="no wheels in $WHEELS (using the installed packages)"
fi
echo "device_check: $DEVICE_CHECK_WHEELS"

# The script keeps to its own budget; the timeout only stops a hung run (SIGINT: it still
# writes what it measured).
export PYTHONUNBUFFERED=1
timeout --signal=INT --kill-after=15 465 "$PYTHON" scripts/device_check.py --out "$OUT" "$@"
status=$?
echo "device_check: wrote $OUT/device_check.json and $OUT/device_check.md (exit $status)"
exit $status
