"""Shared fixtures: small real stores collected with the real franka env and expert."""

from __future__ import annotations

from pathlib import Path

import pytest

from embodied.envs.franka.config import FrankaConfig
from embodied.evaluation.collection import CollectConfig, collect


@pytest.fixture(scope="session")
def image_store(tmp_path_factory) -> Path:
    """Three lift episodes with one 32 px agentview camera (small chunks, so windows cross chunk edges)."""
    path = tmp_path_factory.mktemp("stores") / "lift_images.zarr"
    env = FrankaConfig(task="lift", obs_mode="image", image_size=32)
    config = CollectConfig(env=env, episodes=3, out=str(path), num_workers=0)
    config.storage.chunk_steps = 16
    return collect(config, path.parent)
