"""The frozen-feature cache: computed once, read by training, refused when stale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embodied.cli import main
from embodied.datasets.store import EpisodeStore
from embodied.encoders.cache import CACHE_DIR, FeatureCacheError, clear_cache, load_features
from embodied.envs.franka.config import FrankaConfig
from embodied.policies.bc import BCConfig
from embodied.training.fit_policy import TrainConfig, build_policy, train

TINY_DINO = {
    "name": "dinov2",
    "train": "frozen",
    "model": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
}


def cache_args(store, *extra):
    return [
        "cache-features",
        f"dataset={store}",
        "env.image_size=32",
        "encoder=dinov2",
        "policy.encoder.train=frozen",
        "+policy.encoder.model={hidden_size:16,num_hidden_layers:1,num_attention_heads:2,image_size:32,patch_size:8}",
        "batch_size=16",
        *extra,
    ]


@pytest.fixture()
def store_copy(image_store, tmp_path):
    import shutil

    target = tmp_path / "store.zarr"
    shutil.copytree(image_store, target)
    return target


def test_cache_then_train_reads_features(store_copy, tmp_path, capsys):
    assert main(cache_args(store_copy)) == 0
    assert "features:" in capsys.readouterr().out
    store = EpisodeStore(store_copy)
    job = TrainConfig(
        env=FrankaConfig(image_size=32),
        policy=BCConfig(encoder=TINY_DINO, hidden_dims=[32]),
        dataset=str(store_copy),
        steps=3,
        batch_size=16,
        run_dir=str(tmp_path / "run"),
        progress=False,
        feature_cache="require",
    )
    policy = build_policy(job, store)
    (features,) = load_features(store, policy.image_encoders()).values()
    assert features.shape == (store.n_steps, 16)
    # the cached vectors are exactly what the frozen encoder computes
    images = torch.from_numpy(store.read("images/agentview", 0, 8))
    expected = policy.image_encoders()["images/agentview"].eval()(images).pooled
    np.testing.assert_allclose(features[:8], expected.detach().numpy(), rtol=1e-4, atol=1e-5)
    final = train(job, tmp_path / "run")
    assert (final / "model.safetensors").is_file()


def test_stale_cache_is_refused_with_the_reason(store_copy, tmp_path, capsys):
    assert main(cache_args(store_copy)) == 0
    store = EpisodeStore(store_copy)
    other_size = {**TINY_DINO, "image_size": 48}
    job = TrainConfig(env=FrankaConfig(image_size=32), policy=BCConfig(encoder=other_size), dataset=str(store_copy))
    with pytest.raises(FeatureCacheError, match="input_size"):
        load_features(store, build_policy(job, store).image_encoders())
    other_seed = TrainConfig(
        env=FrankaConfig(image_size=32), policy=BCConfig(encoder=TINY_DINO), dataset=str(store_copy), seed=1
    )  # other random weights
    with pytest.raises(FeatureCacheError, match="weights"):
        load_features(store, build_policy(other_seed, store).image_encoders())
    # auto mode says why and trains on images instead; require fails
    code = main(
        ["train", *cache_args(store_copy)[1:], "seed=1", "steps=1", f"run_dir={tmp_path / 'a'}", "progress=false"]
    )
    assert code == 0 and "feature cache not used" in capsys.readouterr().out
    code = main(
        [
            "train",
            *cache_args(store_copy)[1:],
            "seed=1",
            "steps=1",
            f"run_dir={tmp_path / 'b'}",
            "feature_cache=require",
            "progress=false",
        ]
    )
    assert code == 1 and "stale" in capsys.readouterr().err


def test_cache_refused_after_the_store_grows(store_copy):
    assert main(cache_args(store_copy)) == 0
    store = EpisodeStore(store_copy)
    manifest = next((store_copy / CACHE_DIR).glob("*/manifest.json"))
    manifest.write_text(manifest.read_text().replace(f'"n_steps": {store.n_steps}', '"n_steps": 1'))
    job = TrainConfig(env=FrankaConfig(image_size=32), policy=BCConfig(encoder=TINY_DINO), dataset=str(store_copy))
    with pytest.raises(FeatureCacheError, match="recompute"):
        load_features(store, build_policy(job, store).image_encoders())
    clear_cache(store_copy)
    assert not (store_copy / CACHE_DIR).exists()


def test_only_frozen_encoders_are_cached(store_copy, capsys):
    assert main(["cache-features", f"dataset={store_copy}", "env.image_size=32"]) == 2
    assert "frozen" in capsys.readouterr().err
