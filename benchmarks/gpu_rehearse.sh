#!/usr/bin/env bash
# Rehearses benchmarks/gpu_check.sh on this CPU machine, as the GPU machine will run it: in a virtualenv holding
# only what the GPU image holds of ours (its listed packages at its versions where they are known: numpy 2,
# transformers 5.17, ...; the CPU torch wheel stands in for its CUDA one) plus what gpu_prepare.sh carries, so a
# missing dependency or an incompatibility shows here rather than in the few minutes of a lent GPU.
#   bash benchmarks/gpu_rehearse.sh                 # the script at tiny sizes (--smoke), ~2 min after setup
#   bash benchmarks/gpu_rehearse.sh --steps 2       # the GPU sizes, 2 train steps each (~7 min on 2 cores)
# What it cannot show: the image's Python 3.12, CUDA torch 2.11 and numpy 2.5 (here 3.11, CPU torch 2.13 and numpy
# 2.4, with a cp311 carry of the same versions), and anything CUDA, NCCL or the NVIDIA EGL driver does.
# The virtualenv (/tmp/embodied_gpu_image) and the Python 3.11 carry (/tmp/embodied_gpu_carry311) are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${GPU_IMAGE_VENV:-/tmp/embodied_gpu_image}"
carry="${GPU_REHEARSE_CARRY:-/tmp/embodied_gpu_carry311}"
if [ ! -x "$venv/bin/python" ]; then
  python3.11 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q torch==2.13.0
  # the image's packages that embodied imports, at the image's versions where known (py3.11 has no numpy 2.5)
  "$venv/bin/pip" install -q "numpy==2.4.6" "transformers==5.17.0" "tokenizers==0.23.2" "huggingface_hub==1.33.0" \
    "safetensors==0.8.0" "accelerate==1.15.0" "sentence-transformers==6.0.1" peft scipy numba \
    opencv-python-headless pillow h5py matplotlib tensorboard imageio tqdm msgpack pyyaml requests rich psutil \
    cloudpickle packaging typing-extensions jinja2 fsspec filelock networkx sympy einops absl-py etils
fi
[ -f "$carry/site.tar.xz" ] || GPU_CARRY="$carry" PY_VERSION=3.11 bash benchmarks/gpu_prepare.sh
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--smoke)
rm -rf /tmp/embodied_gpu_check
GPU_CHECK_TIMEOUT="${GPU_CHECK_TIMEOUT:-1200}" PYTHON="$venv/bin/python" GPU_CARRY="$carry" OUT="${OUT:-/tmp/embodied_gpu_rehearsal}" bash benchmarks/gpu_check.sh "${args[@]}"
