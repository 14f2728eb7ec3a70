"""Language across visual domains on a real two-domain store pair: batches balanced over domains, lang_dist pairs
across them, the objectives lower their loss, and the pretrained encoder trains a policy on source + target demos
that is evaluated in the target domain."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embodied.datasets.store import EpisodeStore
from embodied.envs.franka.config import FrankaConfig, ShiftedFrankaConfig
from embodied.evaluation.collection import CollectConfig, collect
from embodied.pretrain import OBJECTIVES
from embodied.pretrain.fit import PretrainConfig, pretrain
from embodied.pretrain.frames import FrameSampler
from embodied.pretrain.language import LangDistObjective, LangRegObjective

TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
            "image_size": 32, "patch_size": 8}  # fmt: skip


@pytest.fixture(scope="module")
def two_domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("domains")
    source = collect(CollectConfig(env=FrankaConfig(image_size=32, instruction_prefix="source domain: "),
                                   episodes=3, out=str(root / "source.zarr"), num_workers=0), root)  # fmt: skip
    target_env = ShiftedFrankaConfig(image_size=32, domain="dark", instruction_prefix="target domain: ")
    target = collect(CollectConfig(env=target_env, episodes=2, out=str(root / "target.zarr"), num_workers=0,
                                   seed=100), root)  # fmt: skip
    return source, target


def _encoder():
    from embodied.encoders import make_encoder

    return make_encoder({"name": "vit", "model": TINY_VIT, "train": "finetune"})


def test_batches_mix_the_domains_and_lang_dist_pairs_across_them(two_domains):
    frames = FrameSampler([EpisodeStore(p) for p in two_domains], "images/agentview")
    assert frames.domains == ["franka", "franka_shifted:dark"]
    reg = LangRegObjective(_encoder())
    reg.prepare(frames)
    batch = reg.sample(frames, np.random.default_rng(0), 16)
    assert np.bincount(batch["domain"].numpy()).tolist() == [8, 8]
    assert batch["images"].shape == (16, 32, 32, 3)
    assert reg.caption_vectors.shape == (len(reg.captions), 384)
    dist = LangDistObjective(_encoder(), projection_dim=8)
    dist.prepare(frames)
    pairs = dist.sample(frames, np.random.default_rng(1), 12)
    assert (pairs["domain_a"] != pairs["domain_b"]).all()  # every pair crosses the domains
    assert len(pairs["images_a"]) == len(pairs["images_b"]) == 12  # one row per pair: micro-batches keep pairs whole
    loss, metrics = dist.compute_loss(pairs)
    assert loss.item() > 0 and "mean_abs_error" in metrics


@pytest.mark.parametrize("objective", ["lang_reg", "lang_dist", "stage_classify", "mmd"])
def test_language_objectives_lower_their_loss_on_two_domains(two_domains, tmp_path, objective):
    batch = OBJECTIVES.get(objective).tiny_batch_size
    job = PretrainConfig(policy={"encoder": {"name": "vit", "model": TINY_VIT}}, objective=objective,
                         datasets=[str(p) for p in two_domains], steps=30, batch_size=batch, log_every=1,
                         progress=False)  # fmt: skip
    job.optim.lr, job.optim.warmup_steps = 1e-3, 3
    pretrain(job, tmp_path)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert np.mean(losses[-6:]) < np.mean(losses[:6])


def test_mmd_measures_how_far_apart_two_samples_are():
    import torch

    from embodied.pretrain.domain_alignment import mmd2

    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    assert abs(mmd2(x, x).item()) < 1e-6
    near, far = mmd2(x, y).item(), mmd2(x, y + 2.0).item()
    assert 0 < near < far  # two draws of one distribution are closer than a shifted one
    shifted = (y + 2.0).requires_grad_()
    mmd2(x, shifted).backward()
    assert (shifted.grad.mean(0) > 0).all()  # the gradient pulls the shifted sample back toward x


def test_a_language_pretrained_encoder_trains_bc_on_source_and_target_and_runs_in_the_target(two_domains, tmp_path):
    from embodied.policies.bc import BCConfig
    from embodied.training.fit_policy import TrainConfig, train

    job = PretrainConfig(policy={"encoder": {"name": "vit", "model": TINY_VIT}}, objective="lang_reg",
                         datasets=[str(p) for p in two_domains], steps=2, batch_size=8, progress=False)  # fmt: skip
    encoder = pretrain(job, tmp_path / "pretrain")
    policy = BCConfig(encoder={"name": "vit", "pretrained": str(encoder), "train": "last_n", "last_n": 1},
                      hidden_dims=[32])  # fmt: skip
    target_env = ShiftedFrankaConfig(image_size=32, domain="dark", max_episode_steps=8)
    run = tmp_path / "bc"
    job = TrainConfig(env=target_env, policy=policy, dataset=[str(p) for p in two_domains], steps=3, batch_size=8,
                      eval_every=3, eval_episodes=1, eval_num_envs=1, run_dir=str(run), progress=False)  # fmt: skip
    train(job, run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (evaluation,) = [r for r in rows if r["split"] == "eval"]
    assert evaluation["step"] == 3
    result = json.loads((run / "eval" / "step_0000003" / "results.json").read_text())
    assert result["env"]["name"] == "franka_shifted" and result["env"]["domain"] == "dark"  # the target domain


def test_film_on_the_domain_prefixed_instruction_trains_saves_and_reloads(two_domains, tmp_path):
    import torch

    from embodied.policies import load_policy
    from embodied.policies.bc import BCConfig
    from embodied.policies.film import InstructionFiLM
    from embodied.training.fit_policy import TrainConfig, train

    film = InstructionFiLM(6)
    x = torch.randn(2, 1, 6)
    assert torch.equal(film(x, ["source domain: lift", "target domain: lift"]), x)  # starts as the identity
    with pytest.raises(KeyError, match="film_instruction"):
        film(x, None)
    stores = [EpisodeStore(p) for p in two_domains]
    assert stores[0].instructions == ["source domain: lift the red cube"]  # the env's prefix reached the store
    assert stores[1].instructions == ["target domain: lift the red cube"]
    policy = BCConfig.tiny()
    policy.film_instruction = True
    run = tmp_path / "bc"
    checkpoint = train(TrainConfig(policy=policy, dataset=[str(p) for p in two_domains], steps=20, batch_size=8,
                                   run_dir=str(run), progress=False), run)  # fmt: skip
    from safetensors import safe_open

    with safe_open(str(checkpoint / "model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert "instruction_film.affine.weight" in keys
    assert not any("_text" in k or "sentence" in k.lower() for k in keys)  # the frozen text encoder is not saved
    model = load_policy(checkpoint)
    episode = stores[1].episode(0)
    obs = {"images/agentview": episode["images/agentview"][:1], "proprio": episode["proprio"][:1]}
    target = model.predict_action({**obs, "language_instruction": ["target domain: lift the red cube"]})
    source = model.predict_action({**obs, "language_instruction": ["source domain: lift the red cube"]})
    assert not torch.allclose(target, source)  # the prefix tells the policy its domain
    with pytest.raises(KeyError, match="film_instruction"):
        model.predict_action(obs)
