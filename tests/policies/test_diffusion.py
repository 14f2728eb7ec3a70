"""Diffusion Policy: the paper's recipe composed from configs, training on a real store, DDIM sampling, EMA
weights in checkpoints, save/load, config errors, both denoisers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from embodied.datasets.store import EpisodeStore
from embodied.datasets.window_dataset import WindowDataset
from embodied.evaluation.evaluate import eval_env_config, evaluate
from embodied.jobs.config import job_config
from embodied.policies import Policy, make_policy
from embodied.policies.diffusion.denoisers import ConditionalUnet1D, Conv1d, TransformerDenoiser
from embodied.training.fit_policy import train
from embodied.training.optim import EMAConfig, make_ema

TINY_ENCODER = {"name": "cnn", "channels": [8, 8], "strides": [2, 2], "dim": 16, "random_shift": 0, "crop": 0.9}
TINY = {"name": "diffusion", "down_dims": [16, 32], "step_embed_dim": 16, "encoder": TINY_ENCODER}


@pytest.fixture(scope="module")
def store(image_store):
    return EpisodeStore(image_store)


def batch_of(policy, store, n=8):
    return WindowDataset(store, policy.key_offsets())[list(range(0, 6 * n, 6))]


def test_paper_defaults_compose_from_configs():
    job = job_config("train", ["policy=diffusion", "dataset=x"])
    p = job.policy
    assert (p.n_obs_steps, p.horizon, p.n_action_steps) == (2, 16, 8)
    assert (list(p.down_dims), p.kernel_size, p.n_groups, p.step_embed_dim) == ([512, 1024, 2048], 5, 8, 128)
    assert (p.num_train_timesteps, p.beta_schedule, p.prediction_type) == (100, "squaredcos_cap_v2", "epsilon")
    assert p.inference == "ddim" and p.normalization == {"proprio": "min_max", "state": "min_max", "action": "min_max"}
    assert p.encoder["name"] == "resnet18" and p.encoder["norm"] == "group" and p.encoder["pool"] == "spatial_softmax"
    assert (job.optim.lr, list(job.optim.betas), job.optim.weight_decay, job.optim.warmup_steps) == (
        1e-4,
        [0.95, 0.999],
        1e-6,
        500,
    )
    assert job.optim.schedule == "cosine" and job.ema.enabled and job.ema.power == 0.75
    # any registered encoder by override: the command line beats the policy's default encoder
    swapped = job_config("train", ["policy=diffusion", "encoder=dinov2", "dataset=x"])
    assert swapped.policy.encoder["name"] == "dinov2"
    small = job_config("train", ["policy=diffusion_small", "dataset=x"])
    assert list(small.policy.down_dims) == [32, 64, 128] and small.policy.encoder["name"] == "cnn"


def test_schedulers_are_diffusers_ddpm_and_ddim(store):
    from diffusers import DDIMScheduler, DDPMScheduler

    policy = make_policy(TINY, store.features, store.stats)
    assert isinstance(policy.noise_scheduler, DDPMScheduler)
    assert policy.noise_scheduler.config.beta_schedule == "squaredcos_cap_v2"
    assert isinstance(policy.inference_scheduler, DDIMScheduler) and len(policy.inference_scheduler.timesteps) == 10
    ddpm = make_policy({**TINY, "inference": "ddpm"}, store.features, store.stats)
    assert isinstance(ddpm.inference_scheduler, DDPMScheduler) and len(ddpm.inference_scheduler.timesteps) == 100


def test_sampling_returns_chunks_within_the_action_bounds(store):
    policy = make_policy(TINY, store.features, store.stats)
    batch = batch_of(policy, store, n=5)
    assert batch["images/agentview"].shape[:2] == (5, 2) and batch["action"].shape == (5, 16, 7)
    actions = policy.predict_action({k: batch[k] for k in policy.obs_keys})
    assert actions.shape == (5, 8, 7)
    low = torch.tensor(store.stats["action"]["min"]) - 1e-5
    high = torch.tensor(store.stats["action"]["max"]) + 1e-5
    assert ((actions >= low) & (actions <= high)).all()
    # the executed actions start at the current step: index n_obs_steps - 1 of the predicted horizon
    chunk = policy.predict_chunk(policy.prepare_obs({k: batch[k] for k in policy.obs_keys}))
    assert chunk.shape == (5, 16, 7)


def test_loss_decreases_and_checkpoints_hold_the_ema_weights(store, tmp_path):
    job = job_config(
        "train",
        [
            "policy=diffusion_small",
            f"dataset={store.path}",
            "policy.down_dims=[32,64]",
            "policy.step_embed_dim=32",
            "policy.encoder.channels=[8,8]",
            "policy.encoder.strides=[2,2]",
            "policy.encoder.dim=16",
            "env.image_size=32",
            "steps=200",
            "batch_size=32",
            "log_every=10",
            "optim.warmup_steps=10",
            "progress=false",
        ],
    )
    final = train(job, tmp_path / "run")
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    saved = load_file(final / "model.safetensors")
    raw = torch.load(final / "training_state.pt", weights_only=False)
    ema_state = {k.removeprefix("module."): v for k, v in raw["ema"].items() if k.startswith("module.")}
    name = next(k for k in saved if k.startswith("denoiser.") and k.endswith("weight"))
    assert not torch.equal(saved[name], raw["model"][name])  # the averaged weights differ from the trained ones
    assert all(torch.equal(saved[k], ema_state[k]) for k in saved)  # and they are what the checkpoint holds
    # evaluation loads the checkpoint, hence the averaged weights
    trained = Policy.from_pretrained(final)
    assert torch.equal(trained.state_dict()[name], ema_state[name])
    # and rolls out in two env processes with a two-step observation history and 8-step chunks
    result = evaluate(
        trained,
        eval_env_config(job.env, trained, max_episode_steps=12),
        episodes=2,
        num_envs=2,
        out_dir=tmp_path / "eval",
        videos=0,
        progress=False,
    )
    assert result["episodes"] == 2 and all(1 <= e["length"] <= 12 for e in result["per_episode"])


def test_ema_decay_warms_up_with_power():
    model = torch.nn.Linear(1, 1, bias=False)
    ema = make_ema(model, EMAConfig(enabled=True, decay=0.9999, power=0.75))
    values = [1.0, 2.0, 3.0]
    expected = None
    for k, value in enumerate(values):
        model.weight.data.fill_(value)
        ema.update_parameters(model)
        decay = 0.0 if k == 0 else min(0.9999, 1 - (1 + k) ** -0.75)  # Chi et al.'s EMAModel.get_decay
        expected = value if expected is None else decay * expected + (1 - decay) * value
    assert ema.module.weight.item() == pytest.approx(expected, rel=1e-6)


def test_save_load_gives_identical_actions_for_a_fixed_seed(store, tmp_path):
    policy = make_policy(
        {**TINY, "denoiser": "transformer", "transformer": {"n_layer": 1, "n_emb": 16, "n_head": 2}},
        store.features,
        store.stats,
    )
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = Policy.from_pretrained(tmp_path / "ckpt")
    obs = {k: v for k, v in batch_of(policy, store, n=3).items() if k in policy.obs_keys}
    torch.manual_seed(7)
    first = policy.predict_action(obs)
    torch.manual_seed(7)
    second = loaded.predict_action(obs)
    assert torch.equal(first, second)
    torch.manual_seed(8)
    assert not torch.equal(first, policy.predict_action(obs))  # the seed matters: sampling is stochastic


@pytest.mark.parametrize(
    "change, message",
    [
        ({"horizon": 8, "n_action_steps": 12}, "horizon"),
        ({"horizon": 10, "down_dims": [8, 16, 32]}, "divisible by 4"),
        ({"denoiser": "mlp"}, "denoiser"),
        ({"prediction_type": "v"}, "prediction_type"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"beta_schedule": "cubic"}, "beta_schedule"),
    ],
)
def test_config_errors_fail_clearly(store, change, message):
    with pytest.raises(ValueError, match=message):
        make_policy({**TINY, **change}, store.features, store.stats)


@pytest.mark.parametrize(
    "in_ch, out_ch, kernel, stride, length", [(7, 16, 5, 1, 16), (16, 16, 3, 2, 16), (32, 8, 1, 1, 4)]
)
def test_cpu_conv1d_matches_torch_in_values_and_gradients(in_ch, out_ch, kernel, stride, length):
    torch.manual_seed(0)
    conv = Conv1d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)
    x = torch.randn(Conv1d.MATMUL_MIN_BATCH + 1, in_ch, length, requires_grad=True)  # the matrix-product path
    ours = conv(x)
    reference = torch.nn.functional.conv1d(x, conv.weight, conv.bias, stride, kernel // 2)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    for a, b in zip(
        torch.autograd.grad(ours.square().sum(), [x, conv.weight, conv.bias]),
        torch.autograd.grad(reference.square().sum(), [x, conv.weight, conv.bias]),
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_unet_film_conditioning_and_transformer_causality():
    torch.manual_seed(0)
    unet = ConditionalUnet1D(action_dim=3, cond_dim=5, down_dims=[16, 32, 64], step_embed_dim=8).eval()
    x, t = torch.randn(2, 16, 3), torch.tensor([3, 50])
    cond = torch.randn(2, 5)
    out = unet(x, t, cond)
    assert out.shape == (2, 16, 3)
    assert not torch.allclose(out, unet(x, t, cond + 1))  # the observation features steer the output
    assert not torch.allclose(out, unet(x, t + 10, cond))  # so does the diffusion step
    net = TransformerDenoiser(3, 5, horizon=16, n_obs_steps=2, n_layer=2, n_head=2, n_emb=16, p_drop_attn=0).eval()
    cond = torch.randn(2, 10)
    out = net(x, t, cond)
    later = x.clone()
    later[:, 8:] += 1.0
    changed = net(later, t, cond)
    assert torch.allclose(out[:, :8], changed[:, :8], atol=1e-5) and not torch.allclose(out[:, 8:], changed[:, 8:])
    # action 0 sees only the first observed step; later actions see both
    second_obs = cond.clone()
    second_obs[:, 5:] += 1.0
    shifted = net(x, t, second_obs)
    assert torch.allclose(out[:, 0], shifted[:, 0], atol=1e-5) and not torch.allclose(out[:, 1:], shifted[:, 1:])


def test_state_only_policy_and_cached_features(store):
    state_features = {k: f for k, f in store.features.items() if f.kind != "image"}
    policy = make_policy({**TINY, "obs_keys": ["proprio", "state"]}, state_features, store.stats)
    assert not policy.image_keys and policy.observation_width == 19
    batch = batch_of(policy, store)
    loss, metrics = policy.compute_loss(batch)
    assert torch.isfinite(loss) and "mse" in metrics
    masked = make_policy({**TINY, "obs_keys": ["proprio", "state"], "mask_padding": True}, state_features, store.stats)
    padded = {**batch, "action_is_pad": torch.ones_like(batch["action_is_pad"])}
    assert masked.compute_loss(padded)[0].item() == 0.0  # every step padded: nothing counts
    # cached features stand in for the images exactly: the same loss from the encoder's pooled vectors (no
    # augmentation here, so a frozen encoder gives the cache's values), the same noise (same seed)
    encoder = {**TINY_ENCODER, "train": "frozen", "crop": 1.0}
    frozen = make_policy({**TINY, "encoder": encoder}, store.features, store.stats)
    images = batch_of(frozen, store)
    frozen.use_cached_features(["images/agentview"])
    assert "features/agentview" in frozen.key_offsets()
    with torch.no_grad():
        pixels = images["images/agentview"]  # (B, To, H, W, 3)
        pooled = frozen.camera_encoder("images/agentview")(pixels.flatten(0, 1)).pooled
    cached = {k: v for k, v in images.items() if k != "images/agentview"}
    cached["features/agentview"] = pooled.view(*pixels.shape[:2], -1)
    torch.manual_seed(3)
    from_cache = frozen.compute_loss(cached)[0]
    frozen.cached_image_keys = set()
    torch.manual_seed(3)
    from_images = frozen.compute_loss(images)[0]
    torch.testing.assert_close(from_cache, from_images)
    torch.manual_seed(4)
    assert not torch.allclose(frozen.compute_loss(images)[0], from_images)  # the seed is what made them equal
