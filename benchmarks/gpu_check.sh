#!/usr/bin/env bash
# The GPU path in one run of under 8 minutes (see benchmarks/gpu_check.py for what it prints).
#   on any CUDA machine with the project installed:   bash benchmarks/gpu_check.sh
#   through the `device` tool: run benchmarks/gpu_prepare.sh here first, then
#     run(command="bash benchmarks/gpu_check.sh", carry=[".gpu-carry"], timeout_s=540)
# Uses $PYTHON (default python3: the image's, which holds a CUDA PyTorch). Where embodied's dependencies are missing
# it puts the carried ones ($GPU_CARRY, default .gpu-carry: wheels, robosuite and bitsandbytes cut down) into
# /tmp/embodied_site, without any index, and runs this checkout from PYTHONPATH; nothing is installed into the
# image's own environment. The table, the log and gpu_check.json go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 MUJOCO_GL="${MUJOCO_GL:-egl}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"
PY="${PYTHON:-python3}"
OUT="${OUT:-/tmp/embodied_gpu_check}"
carry="${GPU_CARRY:-.gpu-carry}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/nvidia-smi.txt"
if ! "$PY" -c "import embodied, mujoco, zarr, hydra, diffusers, robosuite" 2>/dev/null; then
  site=/tmp/embodied_site
  rm -rf "$site" && mkdir -p "$site"
  if [ -d "$carry/wheels" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-build-isolation --target "$site" \
      "$carry"/wheels/* 2>&1 | tail -3
  fi
  # Python's tarfile: the image may have no xz binary
  [ -f "$carry/site.tar.xz" ] && "$PY" -m tarfile --filter data -e "$carry/site.tar.xz" "$site"
  export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
fi
# EGL on the NVIDIA driver goes through glvnd's libEGL: unpack the carried loaders (Debian 12's; as root) where the
# image has none. grep reads a file, not a pipe: with pipefail, `ldconfig -p | grep -q` can fail on SIGPIPE
if ! grep -q 'libEGL.so.1' <(ldconfig -p) && ls "$carry"/gl/*.deb >/dev/null 2>&1; then
  for deb in "$carry"/gl/*.deb; do dpkg -x "$deb" /; done
  ldconfig
fi
vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] && [ -f "$vendor" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$vendor"
"$PY" -c "import embodied, mujoco, zarr, hydra, diffusers" || echo "gpu_check.sh: dependencies still missing (above)"
store=()
[ -f "$carry/lift.zarr/zarr.json" ] && store=(--store "$carry/lift.zarr")
timeout "${GPU_CHECK_TIMEOUT:-450}" "$PY" benchmarks/gpu_check.py --work /tmp/embodied_gpu_check --out "$OUT" "${store[@]}" "$@" 2>&1 \
  | tee "$OUT/gpu_check.log"
