"""The policy interface through BC: horizons, normalisation, save/load, config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embodied.datasets.store import EpisodeStore
from embodied.datasets.window_dataset import WindowDataset
from embodied.policies import POLICIES, Policy, make_policy


@pytest.fixture(scope="module")
def store(image_store):
    return EpisodeStore(image_store)


def batch_of(policy, store, n=4):
    dataset = WindowDataset(store, policy.key_offsets())
    items = [dataset[i * 7] for i in range(n)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0] if torch.is_tensor(items[0][k])}


def test_default_observation_keys(store):
    image_policy = make_policy({"name": "bc"}, store.features, store.stats)
    assert image_policy.obs_keys == ["images/agentview", "proprio"]
    state_features = {k: f for k, f in store.features.items() if f.kind != "image"}
    state_policy = make_policy({"name": "bc"}, state_features, store.stats)
    assert state_policy.obs_keys == ["proprio", "state"] and not state_policy.image_keys


def test_predict_action_shapes_and_raw_units(store):
    policy = make_policy(
        {"name": "bc", "horizon": 6, "n_obs_steps": 2, "n_action_steps": 3}, store.features, store.stats
    )
    batch = batch_of(policy, store)
    assert batch["images/agentview"].shape[:2] == (4, 2) and batch["action"].shape == (4, 6, 7)
    loss, metrics = policy.compute_loss(batch)
    assert loss.ndim == 0 and "l1" in metrics
    actions = policy.predict_action({k: batch[k] for k in policy.obs_keys})
    assert actions.shape == (4, 3, 7)
    # unnormalised: the min-max action scaling maps the head's output back to the data's range
    offset = policy.normalizer.unnormalize("action", torch.zeros(7))
    assert torch.allclose(
        offset,
        torch.tensor(
            (np.array(store.stats["action"]["max"]) + np.array(store.stats["action"]["min"])) / 2, dtype=torch.float32
        ),
    )


def test_single_step_observations_without_time_dimension(store):
    policy = make_policy({"name": "bc"}, store.features, store.stats)
    obs = {"images/agentview": np.zeros((2, 32, 32, 3), np.uint8), "proprio": np.zeros((2, 9), np.float32)}
    assert policy.predict_action(obs).shape == (2, 8, 7)
    with pytest.raises(ValueError, match="proprio"):
        policy.predict_action({**obs, "proprio": np.zeros((2, 5), np.float32)})
    with pytest.raises(KeyError, match="images/agentview"):
        policy.predict_action({"proprio": obs["proprio"]})


def test_save_and_load_give_identical_actions(store, tmp_path):
    torch.manual_seed(0)
    policy = make_policy({"name": "bc", "encoder": {"name": "cnn", "dim": 32}}, store.features, store.stats)
    with torch.no_grad():  # make the weights differ from a fresh init
        for p in policy.parameters():
            p.add_(0.01 * torch.randn_like(p))
    batch = batch_of(policy, store)
    obs = {k: batch[k] for k in policy.obs_keys}
    policy.save_pretrained(tmp_path / "ckpt", run_config={"note": "test"})
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} >= {
        "model.safetensors",
        "config.yaml",
        "features.json",
        "dataset_stats.json",
        "encoders",
    }
    restored = Policy.from_pretrained(tmp_path / "ckpt")
    assert type(restored) is type(policy) and restored.config == policy.config
    torch.testing.assert_close(restored.predict_action(obs), policy.predict_action(obs), rtol=0, atol=0)


def test_resnet_policy_restores_offline_from_saved_backbone_config(store, tmp_path):
    from transformers import ResNetConfig, ResNetModel

    ResNetModel(
        ResNetConfig(layer_type="basic", depths=[1, 1], hidden_sizes=[8, 16], embedding_size=8)
    ).save_pretrained(tmp_path / "tiny")
    config = {"name": "bc", "encoder": {"name": "resnet18", "pretrained": str(tmp_path / "tiny")}}
    policy = make_policy(config, store.features, store.stats)
    policy.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "tiny" / "model.safetensors").unlink()  # the pretrained source is gone: the checkpoint suffices
    restored = Policy.from_pretrained(tmp_path / "ckpt")
    obs = {k: v for k, v in batch_of(policy, store).items() if k in policy.obs_keys}
    torch.testing.assert_close(restored.predict_action(obs), policy.predict_action(obs))


def test_config_errors_name_the_field(store):
    with pytest.raises(ValueError, match="n_action_steps"):
        make_policy({"name": "bc", "horizon": 4, "n_action_steps": 6}, store.features, store.stats)
    with pytest.raises(KeyError, match="nope"):
        make_policy({"name": "bc", "obs_keys": ["nope"]}, store.features, store.stats)
    with pytest.raises(Exception, match="hidden_width"):
        make_policy({"name": "bc", "hidden_width": 3}, store.features, store.stats)
    with pytest.raises(KeyError, match="registered: bc"):
        POLICIES.get("nope")


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        Policy.from_pretrained(tmp_path)


def test_lora_transformer_policy_round_trip(store, tmp_path):
    from embodied.training.fit_policy import describe_parameters

    encoder = {
        "name": "dinov2",
        "train": "lora",
        "lora_rank": 2,
        "model": {
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
    }
    policy = make_policy({"name": "bc", "encoder": encoder}, store.features, store.stats)
    assert "train=lora" in describe_parameters(policy)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.1)  # LoRA's B starts at zero: make the adapters matter
    policy.save_pretrained(tmp_path / "ckpt")
    restored = Policy.from_pretrained(tmp_path / "ckpt")
    obs = {k: v for k, v in batch_of(policy, store).items() if k in policy.obs_keys}
    torch.testing.assert_close(restored.predict_action(obs), policy.predict_action(obs))
    trainable = [n for n, p in restored.named_parameters() if p.requires_grad and n.startswith("encoders.")]
    assert trainable and all("lora_" in n for n in trainable)
