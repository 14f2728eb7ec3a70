"""`embodied ros checkpoint=DIR | server=ws://HOST:PORT [image_topics=...] [control_rate=20]`: a policy driving a
robot over ROS (camera images and state in, end-effector twists and gripper commands out, with a watchdog, an
e-stop topic and limits); see embodied/serving/bridge.py."""

from __future__ import annotations

from pathlib import Path

from embodied.configs.checks import ConfigValueError
from embodied.serving.bridge import BridgeConfig

SCHEMA = BridgeConfig


def check(job: BridgeConfig) -> None:
    """One policy source."""
    if (job.checkpoint is None) == (job.server is None):
        raise ConfigValueError("embodied ros needs exactly one of checkpoint=DIR or server=ws://HOST:PORT")
    if job.checkpoint is not None and not (Path(job.checkpoint) / "config.yaml").exists():
        raise ConfigValueError(f"checkpoint={job.checkpoint!r} is not a saved policy directory")


def run(job: BridgeConfig, run_dir) -> None:
    """Runs the node until Ctrl-C or SIGTERM."""
    if job.ros_version == 2:
        from embodied.serving.ros2 import run_node
    else:
        from embodied.serving.ros1 import run_node
    run_node(job)
