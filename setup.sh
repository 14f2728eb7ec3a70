#!/usr/bin/env bash
# Sets up embodied from nothing: Debian's headless OpenGL libraries, a virtualenv in .venv, PyTorch, the package.
# TORCH_SPEC picks the PyTorch build (default torch==2.13.0: a CPU wheel; a bare "torch" may pull a multi-GB
# CUDA build). Safe to run again: every step skips what is already there.
set -euo pipefail
cd "$(dirname "$0")"

# MuJoCo renders headless through EGL (libegl1 + Mesa) or OSMesa (libosmesa6); the labelling page's tests drive
# Debian's chromium headless.
packages=(libegl1 libgl1 libgl1-mesa-dri libosmesa6 chromium)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "setup.sh: install EGL or OSMesa for MuJoCo rendering and chromium for the browser tests (Debian: ${missing[*]})" >&2
  fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".[dev]"
# Meta-World (env=metaworld) pins mujoco==3.3.0 exactly; robosuite runs on 3.3.0 too, but our fast franka stepper
# matches robosuite's physics only on 3.9.0, and Meta-World runs on 3.9.0 (its scripted policies: 246/250 over the
# 50 tasks). So it goes in without its pins; its real dependencies (gymnasium, numpy, scipy, imageio, packaging)
# are ours, in pyproject.toml. `pip check` reports the pin; nothing else does.
.venv/bin/python -m pip install -q --no-deps "metaworld==3.1.1"
echo "setup.sh: ready; activate with: source .venv/bin/activate"
