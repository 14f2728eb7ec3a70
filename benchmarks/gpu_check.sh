#!/usr/bin/env bash
# The GPU path in one run of under 8 minutes (see benchmarks/gpu_check.py for what it prints).
#   on any CUDA machine with the project installed:   bash benchmarks/gpu_check.sh
#   through the `device` tool: run benchmarks/gpu_prepare.sh here first, then
#     run(command="bash benchmarks/gpu_check.sh", carry=[".gpu-carry"], timeout_s=540)
# Uses $PYTHON (default python3: the image's, which holds a CUDA PyTorch) and installs what is missing from
# .gpu-carry/wheels without any index; the table and gpu_check.json go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 MUJOCO_GL="${MUJOCO_GL:-egl}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"
PY="${PYTHON:-python3}"
OUT="${OUT:-/tmp/embodied_gpu_check}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/nvidia-smi.txt"
if ! "$PY" -c "import embodied, mujoco, zarr, hydra, diffusers" 2>/dev/null; then
  if [ -d .gpu-carry/wheels ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation .gpu-carry/wheels/* 2>&1 | tail -3
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>&1 | tail -3
fi
store=()
[ -f .gpu-carry/lift.zarr/zarr.json ] && store=(--store .gpu-carry/lift.zarr)
timeout 450 "$PY" benchmarks/gpu_check.py --work /tmp/embodied_gpu_check --out "$OUT" "${store[@]}" 2>&1 \
  | tee "$OUT/gpu_check.log"
