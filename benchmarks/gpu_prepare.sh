#!/usr/bin/env bash
# Prepares what benchmarks/gpu_check.sh needs on a GPU machine that reaches no package index (the `device` tool's):
# the wheels of our dependencies its image lacks (pure or cp312 manylinux) and a lift store collected here, since
# robosuite's wheel (157 MB) and bitsandbytes' (105 MB) exceed what may be carried (64 MiB). Everything goes into
# .gpu-carry/ (git-ignored); run the check with  carry=[".gpu-carry"]  command="bash benchmarks/gpu_check.sh".
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu-carry/wheels
if [ ! -f .gpu-carry/lift.zarr/zarr.json ]; then
  .venv/bin/embodied collect env=franka env.task=lift episodes=24 out=.gpu-carry/lift.zarr num_workers=2 \
    run_dir=/tmp/embodied_gpu_prepare
fi
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64)
.venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 "${platforms[@]}" \
  -d .gpu-carry/wheels mujoco==3.9.0 hydra-core omegaconf "zarr>=3.1,<4" "numcodecs>=0.15" donfig crc32c \
  gymnasium farama-notifications diffusers
.venv/bin/pip download -q --no-deps --no-binary=:all: -d .gpu-carry/wheels antlr4-python3-runtime==4.9.3
du -sh .gpu-carry .gpu-carry/*
