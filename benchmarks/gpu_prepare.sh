#!/usr/bin/env bash
# Prepares what benchmarks/gpu_check.sh needs on a GPU machine that reaches no package index (the `device` tool's,
# which carries at most 64 MiB): the wheels of our dependencies its image lacks (pure or cp312 manylinux), robosuite
# and bitsandbytes cut down to what the check uses (benchmarks/gpu_site.py: their wheels are 157 MB and 43 MB), and
# a lift store collected here. Everything goes into .gpu-carry/ (git-ignored; ~45 MB); then
#   run(command="bash benchmarks/gpu_check.sh", carry=[".gpu-carry"], timeout_s=540)
# GPU_CARRY picks another folder and PY_VERSION another Python (e.g. 3.11, to rehearse the check on this machine in
# a virtualenv that holds only what the GPU image has: see benchmarks/gpu_rehearse.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
carry="${GPU_CARRY:-.gpu-carry}"
pyver="${PY_VERSION:-3.12}"
mkdir -p "$carry/wheels"
if [ ! -f "$carry/lift.zarr/zarr.json" ]; then
  .venv/bin/embodied collect env=franka env.task=lift episodes=24 out="$carry/lift.zarr" num_workers=2 \
    run_dir=/tmp/embodied_gpu_prepare
fi
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux_2_24_x86_64)
download() { .venv/bin/pip download -q --no-deps --only-binary=:all: --python-version "$pyver" "${platforms[@]}" "$@"; }
# what the image lacks of ours, at the versions this machine's .venv runs (and of our dependencies': mujoco's glfw and
# PyOpenGL, robosuite's termcolor; benchmarks/gpu_rehearse.sh finds what is missing)
pinned() { .venv/bin/python -c 'import sys, importlib.metadata as m; print(*(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' "$@"; }
binaries=$(pinned mujoco hydra-core omegaconf zarr numcodecs donfig google-crc32c gymnasium farama-notifications \
  diffusers termcolor glfw pyopengl)
download -d "$carry/wheels" $binaries
# antlr4's runtime (omegaconf's parser) comes as an sdist only: built here into a pure-Python wheel
.venv/bin/pip wheel -q --no-deps -w "$carry/wheels" "$(pinned antlr4-python3-runtime)"
mkdir -p /tmp/embodied_bnb
download -d /tmp/embodied_bnb "$(pinned bitsandbytes)"
.venv/bin/python benchmarks/gpu_site.py --out "$carry/site.tar.xz" --bitsandbytes "$(ls /tmp/embodied_bnb/bitsandbytes-*.whl | tail -1)"
# the GL vendor-neutral loaders (libEGL, libOpenGL): the NVIDIA driver's EGL is reached through them, and the GPU
# image may lack them (the device tool's notes); gpu_check.sh unpacks them only where ldconfig finds no libEGL
mkdir -p "$carry/gl" /tmp/embodied_apt/partial
apt_amd64=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/embodied_apt)
apt-get "${apt_amd64[@]}" update -qq
(cd "$carry/gl" && apt-get "${apt_amd64[@]}" download libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 2>&1 \
  | grep -v "unsandboxed" || true)
du -sh "$carry" "$carry"/*
