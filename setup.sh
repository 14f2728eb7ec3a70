#!/usr/bin/env bash
# Sets up embodied from nothing: Debian's headless OpenGL libraries, a virtualenv in .venv, PyTorch, the package.
# TORCH_SPEC picks the PyTorch build (default torch==2.13.0: a CPU wheel; a bare "torch" may pull a multi-GB
# CUDA build). Safe to run again: every step skips what is already there.
set -euo pipefail
cd "$(dirname "$0")"

# MuJoCo renders headless through EGL (libegl1 + Mesa) or OSMesa (libosmesa6); the labelling page's tests drive
# Debian's chromium headless; `embodied ros` uses ROS 1 from Debian (rospy, rosmaster and the message packages).
packages=(libegl1 libgl1 libgl1-mesa-dri libosmesa6 chromium python3-rospy python3-rosmaster python3-sensor-msgs
          python3-geometry-msgs python3-std-msgs)
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
# ROS 1's Python packages live in Debian's dist-packages; the virtualenv sees only them (symlinks in .venv/ros-site,
# one .pth line), not the rest of Debian's Python packages, so pip keeps managing everything else.
ros_dir=/usr/lib/python3/dist-packages
if [ -d "$ros_dir/rospy" ]; then
  mkdir -p .venv/ros-site
  for m in rospy rosgraph rosgraph_msgs roslib rospkg catkin catkin_pkg genmsg genpy rosparam roscpp std_msgs \
           sensor_msgs geometry_msgs; do
    if [ -e "$ros_dir/$m" ]; then ln -sfn "$ros_dir/$m" ".venv/ros-site/$m"; fi
  done
  # rosgraph's local-address lookup uses netifaces (a C extension: linked only when built for this Python)
  tag=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
  if [ -e "$ros_dir/netifaces$tag" ]; then ln -sfn "$ros_dir/netifaces$tag" ".venv/ros-site/netifaces$tag"; fi
  site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  echo "$(pwd)/.venv/ros-site" > "$site/embodied-ros.pth"
fi
echo "setup.sh: ready; activate with: source .venv/bin/activate"
