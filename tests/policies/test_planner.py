"""policy=planner (Manipulate by Seeing): the action bank and k*, both losses falling on the real tiny store, the
argmax (and CEM) choosing the direction toward a goal embedding, the gripper classifier, goals kept through
save/load, action-free training and one rollout with a user's goal image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from embodied.datasets.store import EpisodeStore
from embodied.datasets.window_dataset import WindowDataset
from embodied.envs.franka.config import FrankaConfig
from embodied.evaluation.evaluate import eval_env_config, evaluate
from embodied.policies import load_policy, make_policy
from embodied.policies.planner import PlannerConfig
from embodied.policies.planner import bank as actions
from embodied.training.fit_policy import TrainConfig, train

AXES = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64)


def planner(store_path, **overrides):
    """A tiny planner fitted to the store's data (bank and goals), as `embodied train` builds it."""
    store = EpisodeStore(store_path)
    torch.manual_seed(0)
    policy = make_policy(PlannerConfig(**{**vars(PlannerConfig.tiny()), **overrides}), store.features, store.stats)
    dataset = WindowDataset(store, policy.key_offsets(), goal_keys=policy.goal_keys())
    policy.fit_data([dataset])
    return policy, dataset


def test_bank_recovers_clustered_directions_and_k_star():
    rng = np.random.default_rng(0)
    samples = AXES[rng.integers(0, 6, 3000)] + 0.05 * rng.standard_normal((3000, 3))
    samples /= np.linalg.norm(samples, axis=1, keepdims=True)
    bank = actions.fit_bank(samples, 6)
    np.testing.assert_allclose(np.linalg.norm(bank, axis=1), 1, atol=1e-5)
    assert np.sort((bank @ AXES.T).max(0)).min() > 0.99  # every axis has a centre

    with_stay = torch.cat([torch.from_numpy(AXES).float(), torch.zeros(1, 3)])
    positions = torch.tensor([
        [[0, 0, 0], [0.01, 0.002, 0]],  # mostly +x
        [[0, 0, 0], [0, 0, -0.02]],  # -z
        [[0, 0, 0], [0.0002, 0, 0]],  # below min_motion: stay
    ]).float()  # fmt: skip
    directions, moving = actions.motion_directions(positions, min_motion=0.001)
    assert moving.tolist() == [True, True, False]
    torch.testing.assert_close(directions[1], torch.tensor([0.0, 0.0, -1.0]))
    assert torch.equal(directions[2], torch.zeros(3))
    assert actions.nearest_entry(directions, moving, with_stay, stay=True).tolist() == [0, 5, 6]


def test_bank_needs_enough_moving_steps():
    with pytest.raises(ValueError, match="n_directions"):
        actions.fit_bank(AXES[:3], 6)


def test_both_losses_fall_on_the_real_store(image_store):
    # one fixed batch of real windows, no augmentation: the losses must be fittable by gradient through R and F
    policy, dataset = planner(image_store, temperature=0.1, encoder={**PlannerConfig.tiny().encoder, "random_shift": 0,
                                                                      "color_jitter": 0.0})  # fmt: skip
    batch = dataset.get_batch(np.arange(0, len(dataset), max(1, len(dataset) // 24)))
    optimizer = torch.optim.Adam(policy.parameters(), lr=5e-3)
    policy.train()
    history = []
    for _ in range(80):
        loss, metrics = policy.compute_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(metrics)
    for name in ("distance", "dynamics", "gripper"):
        late = np.mean([m[name] for m in history[-5:]])
        assert late < 0.6 * history[0][name], (name, history[0][name], late)
    assert np.mean([m["top1"] for m in history[-5:]]) > history[0]["top1"]


def test_argmax_and_cem_choose_the_direction_toward_the_goal(image_store):
    policy, _ = planner(image_store, n_directions=6)
    policy.bank[:6] = torch.from_numpy(AXES).float()
    # F(z, a) = the direction itself in the first three embedding dimensions: ReLU([a, -a]) then a - (-a) ... / 2
    first, last = policy.dynamics[0], policy.dynamics[-1]
    with torch.no_grad():
        for layer in (first, last):
            layer.weight.zero_()
            layer.bias.zero_()
        d = policy.config.embedding_dim
        first.weight[0:3, d : d + 3] = torch.eye(3)
        first.weight[3:6, d : d + 3] = -torch.eye(3)
        last.weight[0:3, 0:3] = torch.eye(3)
        last.weight[0:3, 3:6] = -torch.eye(3)
    z = F.normalize(torch.randn(2, d), dim=-1)
    goal = torch.zeros(2, d)
    goal[0, :3] = torch.tensor([0.2, 0.1, -1.0])  # mostly down
    goal[1, :3] = torch.tensor([-1.0, 0.3, 0.0])  # mostly -x
    goal = F.normalize(goal, dim=-1)
    torch.testing.assert_close(policy.plan(z, goal), torch.tensor([[0, 0, -1.0], [-1.0, 0, 0]]))
    policy.config.search = "cem"
    refined = policy.plan(z, goal)
    cosine = (refined * goal[:, :3] / goal[:, :3].norm(dim=-1, keepdim=True)).sum(-1)
    assert (cosine > 0.97).all()  # the continuous search finds directions finer than the six axes


def test_gripper_classifier_learns_open_and_close(image_store):
    policy, dataset = planner(
        image_store, encoder={**PlannerConfig.tiny().encoder, "random_shift": 0, "color_jitter": 0.0}
    )
    batch = dataset.get_batch(np.arange(len(dataset)))
    labels = policy.gripper_labels(batch)
    assert 0 < labels.float().mean() < 1  # lift episodes hold both
    optimizer = torch.optim.Adam(policy.parameters(), lr=5e-3)
    policy.train()
    for _ in range(100):
        features, _ = policy.represent({k: batch[k][:, 0] for k in policy.image_keys})
        loss = F.binary_cross_entropy_with_logits(policy.gripper(features)[:, 0], labels.float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    policy.eval()
    with torch.no_grad():
        features, _ = policy.represent({k: batch[k][:, 0] for k in policy.image_keys})
    accuracy = ((policy.gripper(features)[:, 0] > 0) == labels).float().mean()
    assert accuracy > 0.9


def test_action_free_labels_come_from_proprio(image_store):
    policy, dataset = planner(image_store, action_free=True)
    assert "action" not in policy.key_offsets()
    batch = dataset.get_batch(np.arange(len(dataset)))
    from_opening = policy.gripper_labels(batch)
    commanded = torch.from_numpy(dataset.store.take("action", dataset.sampler.anchors)[:, -1] > 0)
    assert (from_opening == commanded).float().mean() > 0.8  # the opening a few steps ahead follows the command


def test_trained_planner_keeps_goals_through_save_load_and_rolls_out(image_store, tmp_path):
    job = TrainConfig(env=FrankaConfig(image_size=32, max_episode_steps=5), policy=PlannerConfig.tiny(),
                      dataset=str(image_store), steps=3, batch_size=8, progress=False)  # fmt: skip
    policy = load_policy(train(job, tmp_path / "run"))
    store = EpisodeStore(image_store)
    assert len(policy.goal_tasks) == 2 and policy.goals["images/agentview"].shape[1:] == (32, 32, 3)
    ends = store.episode_ends
    final_frame = torch.from_numpy(store.take("images/agentview", ends[:1] - 1)[0])
    torch.testing.assert_close(policy.goals["images/agentview"][0], final_frame)
    assert policy.bank[:-1].norm(dim=-1).allclose(torch.ones(policy.config.n_directions))

    obs = {"images/agentview": store.take("images/agentview", np.array([0, 5]))}
    again = load_policy(tmp_path / "run" / "checkpoints" / "last")
    torch.testing.assert_close(again.predict_action(obs), policy.predict_action(obs), rtol=0, atol=0)
    action = policy.predict_action(obs)[:, 0]
    norms = action[:, :3].norm(dim=-1).tolist()
    assert all(abs(n - policy.step) < 1e-5 or n == 0 for n in norms)  # a fixed step, or stay
    assert set(action[:, -1].tolist()) <= {-1.0, 1.0} and (action[:, 3:6] == 0).all()

    # a user's goal image, given with the observation, replaces the kept goals
    goal = {**obs, "goal/images/agentview": store.take("images/agentview", np.array([0, 0]))}
    assert torch.isfinite(policy.predict_action(goal)).all()
    policy.set_goal({"images/agentview": store.take("images/agentview", np.array([3]))[0]})
    result = evaluate(policy, eval_env_config(job.env, policy), episodes=1, num_envs=1, videos=0, progress=False)
    assert result["episodes"] == 1 and 1 <= result["per_episode"][0]["length"] <= 5


def test_planner_refuses_data_it_cannot_plan_on(image_store):
    store = EpisodeStore(image_store)
    with pytest.raises(ValueError, match="cameras only"):
        make_policy(
            PlannerConfig(**{**vars(PlannerConfig.tiny()), "obs_keys": ["proprio"]}), store.features, store.stats
        )
    with pytest.raises(ValueError, match="translation_dims"):
        make_policy(PlannerConfig(**{**vars(PlannerConfig.tiny()), "translation_dims": [0, 1]}), store.features,
                    store.stats)  # fmt: skip
