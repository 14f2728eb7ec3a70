"""PolicyRunner: one policy call per executed chunk, histories per stream, ACT's temporal ensembling."""

from __future__ import annotations

import numpy as np
import pytest

from embodied.datasets.store import EpisodeStore
from embodied.policies import BCConfig, make_policy
from embodied.policies.runner import PolicyRunner


@pytest.fixture()
def policy(image_store):
    store = EpisodeStore(image_store)
    config = BCConfig(n_obs_steps=2, horizon=5, n_action_steps=4, obs_keys=["proprio", "state"], hidden_dims=[16])
    return make_policy(config, store.features, store.stats).eval(), store


def rows(store, start, n):
    episode = store.episode(0, ["proprio", "state"])
    return [{"proprio": episode["proprio"][start + i], "state": episode["state"][start + i]} for i in range(n)]


def counted(policy):
    """Counts the policy's calls (each stream's batch rows) without changing what it returns."""
    calls = []
    original = policy.predict_action

    def predict(obs):
        calls.append(len(obs["proprio"]))
        return original(obs)

    policy.predict_action = predict
    return calls


def test_chunks_are_executed_in_order_with_one_call_per_chunk(policy):
    policy, store = policy
    runner = PolicyRunner(policy, num_streams=2)
    calls = counted(policy)
    obs = rows(store, 0, 9)
    runner.reset(0, obs[0])
    runner.reset(1, obs[0])
    executed = []
    for t in range(8):
        executed.append(runner.act([0, 1]))
        runner.observe(0, obs[t + 1])
        runner.observe(1, obs[t + 1])
    assert calls == [2, 2]  # two chunks of 4 for 8 steps, both streams in one batch each time
    # the first chunk came from the history [obs0, obs0] (the start repeats the first observation)
    expected = policy.predict_action({"proprio": np.stack([[obs[0]["proprio"]] * 2]),
                                      "state": np.stack([[obs[0]["state"]] * 2])})[0].numpy()  # fmt: skip
    np.testing.assert_allclose(np.stack([e[0] for e in executed[:4]]), expected, rtol=1e-5, atol=1e-6)
    # the second from the last two observations before step 4
    second = policy.predict_action({"proprio": np.stack([[obs[3]["proprio"], obs[4]["proprio"]]]),
                                    "state": np.stack([[obs[3]["state"], obs[4]["state"]]])})[0].numpy()  # fmt: skip
    np.testing.assert_allclose(np.stack([e[0] for e in executed[4:]]), second, rtol=1e-5, atol=1e-6)


def test_temporal_ensembling_averages_every_live_chunk_oldest_first(policy):
    policy, store = policy
    m = 0.5
    runner = PolicyRunner(policy, num_streams=1, temporal_ensemble=m)
    obs = rows(store, 0, 4)
    runner.reset(0, obs[0])
    chunks, history = [], [obs[0], obs[0]]
    for t in range(3):
        batch = {k: np.stack([[h[k] for h in history]]) for k in ("proprio", "state")}
        chunks.append(policy.predict_action(batch)[0].numpy())  # what the runner's call at step t returns
        action = runner.act([0])[0]
        live = [chunks[s][t - s] for s in range(t + 1) if t - s < len(chunks[s])]  # oldest first
        weights = np.exp(-m * np.arange(len(live)))
        np.testing.assert_allclose(action, (weights[:, None] * np.stack(live)).sum(0) / weights.sum(), rtol=1e-5)
        runner.observe(0, obs[t + 1])
        history = [history[-1], obs[t + 1]]
    with pytest.raises(ValueError, match="temporal_ensemble"):
        PolicyRunner(policy, temporal_ensemble=-1.0)
