"""Contract of every registered policy (its config's ``tiny()`` preset): it trains two steps through the Trainer on
the real tiny store, saves, reloads to identical actions of the declared shape and rolls out one episode."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embodied.datasets.sampler import horizon_offsets
from embodied.datasets.store import EpisodeStore
from embodied.datasets.window_dataset import WindowDataset
from embodied.envs.franka.config import FrankaConfig
from embodied.evaluation.evaluate import eval_env_config, evaluate
from embodied.policies import POLICIES, load_policy
from embodied.training.fit_policy import TrainConfig, train


def observations(policy, store, n=3) -> dict:
    """Raw observations of ``n`` windows, as an env would give them: (B, n_obs_steps, ...) and instructions."""
    obs_offsets = horizon_offsets(policy.config.n_obs_steps, policy.config.horizon)[0]
    batch = WindowDataset(store, {key: obs_offsets for key in policy.obs_keys})[list(range(0, 4 * n, 4))]
    obs = {key: batch[key].numpy() for key in policy.obs_keys}
    obs["language_instruction"] = batch["language_instruction"]
    return obs


@pytest.mark.parametrize("name", POLICIES.names())
def test_policy_trains_saves_reloads_and_rolls_out(name, image_store, tmp_path):
    config = POLICIES.config_class(name).tiny()
    job = TrainConfig(env=FrankaConfig(image_size=32, max_episode_steps=6), policy=config, dataset=str(image_store),
                      steps=2, batch_size=4, log_every=1, progress=False)  # fmt: skip
    final = train(job, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)

    store = EpisodeStore(image_store)
    policy = load_policy(final)
    policy.save_pretrained(tmp_path / "again")
    again = load_policy(tmp_path / "again")
    obs = observations(policy, store)
    torch.manual_seed(0)
    actions = policy.predict_action(obs)
    torch.manual_seed(0)
    torch.testing.assert_close(again.predict_action(obs), actions, rtol=0, atol=0)
    assert actions.shape == (3, policy.config.n_action_steps, policy.action_dim)
    assert torch.isfinite(actions).all()

    result = evaluate(policy, eval_env_config(job.env, policy), episodes=1, num_envs=1, videos=0, progress=False)
    assert result["episodes"] == 1 and 1 <= result["per_episode"][0]["length"] <= 6
