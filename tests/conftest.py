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


def _collect(path: Path, episodes: int, seed: int, random_style: bool) -> Path:
    env = FrankaConfig(task="lift_zone", image_size=32)
    config = CollectConfig(env=env, episodes=episodes, out=str(path), num_workers=0, seed=seed,
                           expert_random_style=random_style)  # fmt: skip
    return collect(config, path.parent)


@pytest.fixture(scope="session")
def zone_rollouts(tmp_path_factory) -> Path:
    """24 lift_zone episodes at 32 px, each with its own expert style in [-1, 1]."""
    return _collect(tmp_path_factory.mktemp("rewards") / "rollouts.zarr", 24, 0, True)


@pytest.fixture(scope="session")
def zone_demos(tmp_path_factory) -> Path:
    """3 preferred demonstrations (style +1: straight to the cube)."""
    return _collect(tmp_path_factory.mktemp("rewards") / "demos.zarr", 3, 500, False)
