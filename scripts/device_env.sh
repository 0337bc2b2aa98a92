# Sourced (from the repository root) by the scripts that run on a bare GPU machine without
# network: puts this checkout and the wheels in $WHEELS (default .whl) on PYTHONPATH, installed
# into a temporary prefix that is removed on exit. Sets DEVICE_WHEELS to what it did.
#
# The GPU machine has python3 with torch, accelerate, safetensors, torchmetrics and einops; the
# other packages travel as wheels in the ignored folder .whl/, fetched once on a machine with
# network (all pure Python; diffusers 0.42.1 needs huggingface-hub >= 1.32 and safetensors >= 0.8,
# which the machine has):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl diffusers==0.42.1 webdataset==1.0.2 braceexpand==0.1.7 lpips==0.1.4
PYTHON="${PYTHON:-python3}"
WHEELS="${WHEELS:-.whl}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
wheels=("$WHEELS"/*.whl)
if [ -e "${wheels[0]}" ]; then
  wheel_prefix="$(mktemp -d)"
  trap 'rm -rf "$wheel_prefix"' EXIT
  if "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$wheel_prefix/site" "${wheels[@]}"; then
    export PYTHONPATH="$wheel_prefix/site:$PYTHONPATH"
    export DEVICE_WHEELS="installed ${#wheels[@]} wheels from $WHEELS"
  else
    export DEVICE_WHEELS="pip install of $WHEELS failed"
  fi
else
  export DEVICE_WHEELS="no wheels in $WHEELS (using the installed packages)"
fi
