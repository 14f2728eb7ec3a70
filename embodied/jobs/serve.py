"""`embodied serve checkpoint=DIR [host=127.0.0.1 port=8000]`: a trained policy for robot clients (openpi's
websocket client, OpenVLA-style REST clients); see embodied/serving/server.py."""

from __future__ import annotations

from pathlib import Path

from embodied.configs.checks import ConfigValueError, is_loopback
from embodied.serving.config import ServeConfig

SCHEMA = ServeConfig


def check(job: ServeConfig) -> None:
    """A checkpoint, and loopback unless told otherwise."""
    if not job.checkpoint or not (Path(job.checkpoint) / "config.yaml").exists():
        raise ConfigValueError(f"embodied serve needs checkpoint=DIR of a saved policy, got {job.checkpoint!r}")
    if not is_loopback(job.host) and not job.allow_remote:
        raise ConfigValueError(
            f"host={job.host}: the policy server listens on loopback only; anyone who can reach {job.host} could "
            "send actions to your robot, so pass allow_remote=true (and set api_key) to mean it"
        )
    import os

    if not is_loopback(job.host) and not (job.api_key or os.environ.get("EMBODIED_API_KEY")):
        raise ConfigValueError(f"host={job.host} with no api_key: set api_key= (or $EMBODIED_API_KEY) so only your "
                               "clients can drive the robot")  # fmt: skip


def run(job: ServeConfig, run_dir) -> None:
    """Serves until Ctrl-C or SIGTERM."""
    from embodied.serving.server import serve

    serve(job)
