"""The VLA's language model loaded 8-bit and 4-bit through bitsandbytes (its CPU backend, bitsandbytes >= 0.46; the
same code path takes the GPU's kernels on CUDA): quantised layers, smaller weights, logits near full precision,
QLoRA training, and checkpoints that reload the base from ``lm.pretrained`` and quantise it again."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from embodied.datasets.store import EpisodeStore
from embodied.datasets.window_dataset import WindowDataset
from embodied.policies import Policy, make_policy
from embodied.policies.openvla.language_model import base_model
from tests.policies.helpers import save_pretrained_lm

# bitsandbytes' CPU 4-bit kernels quantise in blocks of 64 inputs: every linear layer is at least 64 wide
LM = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
      "num_key_value_heads": 2}  # fmt: skip
ENCODER = {"name": "cnn", "channels": [8, 8], "strides": [4, 4], "dim": 16, "random_shift": 0}
QUANTISED_LAYER = {"8bit": "Linear8bitLt", "4bit": "Linear4bit"}


@pytest.fixture(scope="module")
def store(image_store):
    return EpisodeStore(image_store)


@pytest.fixture(scope="module")
def pretrained_lm(tmp_path_factory):
    return save_pretrained_lm(tmp_path_factory.mktemp("lm") / "llama-64", LM)


def vla(store, pretrained_lm, **lm):
    torch.manual_seed(0)  # the same vision encoder and projector whatever the LM
    config = {"name": "openvla", "encoder": ENCODER, "projector_hidden": 32, "lm": {"pretrained": str(pretrained_lm),
              **lm}}  # fmt: skip
    return make_policy(config, store.features, store.stats)


def batch_and_obs(policy, store, n=4):
    batch = WindowDataset(store, policy.key_offsets())[list(range(0, 5 * n, 5))]
    obs = {k: batch[k][:, :1] for k in policy.obs_keys}
    obs["language_instruction"] = batch["language_instruction"]
    return batch, obs


def layer_types(policy) -> set[str]:
    return {type(m).__name__ for m in base_model(policy.lm).model.layers.modules()}


@pytest.mark.parametrize("bits", ["8bit", "4bit"])
def test_a_quantised_frozen_lm_predicts_and_its_checkpoint_quantises_again(store, pretrained_lm, tmp_path, bits):
    full = vla(store, pretrained_lm, train="frozen")
    policy = vla(store, pretrained_lm, train="frozen", quantization=bits)
    assert QUANTISED_LAYER[bits] in layer_types(policy) and QUANTISED_LAYER[bits] not in layer_types(full)
    assert base_model(policy.lm).get_memory_footprint() < 0.8 * base_model(full.lm).get_memory_footprint()
    ids = torch.randint(4, 200, (2, 12))
    with torch.no_grad():
        exact, approx = full.lm(input_ids=ids).logits, policy.lm(input_ids=ids).logits
    error = ((approx - exact).norm() / exact.norm()).item()
    assert 0 < error < (0.05 if bits == "8bit" else 0.25)  # quantised, and close to the full-precision weights

    batch, obs = batch_and_obs(policy, store)
    actions = policy.predict_action(obs)
    assert actions.shape == (4, 1, 7) and torch.isfinite(actions).all()
    directory = policy.save_pretrained(tmp_path / bits)
    assert not any(k.startswith("lm.") for k in load_file(str(directory / "model.safetensors")))  # base left out
    restored = Policy.from_pretrained(directory)
    assert QUANTISED_LAYER[bits] in layer_types(restored)
    assert torch.equal(restored.predict_action(obs), actions)


def test_qlora_trains_adapters_on_a_4bit_base_and_reloads(store, pretrained_lm, tmp_path):
    policy = vla(store, pretrained_lm, train="lora", quantization="4bit")
    lm_params = dict(policy.lm.named_parameters())
    assert lm_params and all(p.requires_grad == ("lora_" in n) for n, p in lm_params.items())
    assert "Linear4bit" in {type(m).__name__ for m in policy.lm.modules()}
    batch, obs = batch_and_obs(policy, store)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-2)
    before = {n: p.detach().clone() for n, p in lm_params.items() if "lora_B" in n}
    for _ in range(2):
        loss, _ = policy.compute_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(p, before[n]) for n, p in policy.lm.named_parameters() if n in before)
    expected = policy.predict_action(obs)
    directory = policy.save_pretrained(tmp_path / "qlora")
    lm_keys = [k for k in load_file(str(directory / "model.safetensors")) if k.startswith("lm.")]
    assert lm_keys and all("lora_" in k for k in lm_keys)
    restored = Policy.from_pretrained(directory)
    assert torch.equal(restored.predict_action(obs), expected)


def test_a_qlora_run_resumes_exactly_without_saving_its_base(image_store, pretrained_lm, tmp_path):
    """Through the Trainer: the training state leaves the 4-bit base out too (it is reloaded from lm.pretrained),
    and a run stopped at step 2 and resumed ends exactly where an uninterrupted one does."""
    import json

    from embodied.jobs.config import job_config
    from embodied.training.fit_policy import train

    sizes = [f"policy.encoder.{k}={json.dumps(v)}" for k, v in ENCODER.items()]
    overrides = ["policy=openvla_small", f"dataset={image_store}", "env.image_size=32", "batch_size=8", "log_every=1",
                 "checkpoint_every=2", "progress=false", "encoder=cnn", *sizes, f"policy.lm.pretrained={pretrained_lm}",
                 "policy.lm.train=lora", "policy.lm.quantization=4bit"]  # fmt: skip

    def run(run_dir, steps, *extra):
        return train(job_config("train", [*overrides, f"steps={steps}", f"run_dir={run_dir}", *extra]), run_dir)

    def losses(run_dir):
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if r["split"] == "train"]

    run(tmp_path / "whole", 4)
    run(tmp_path / "resumed", 2)
    state = torch.load(tmp_path / "resumed" / "checkpoints" / "last" / "training_state.pt", weights_only=False)
    lm_keys = [k for k in state["model"] if k.startswith("lm.")]
    assert lm_keys and all("lora_" in k for k in lm_keys)
    final = run(tmp_path / "resumed", 4, "resume=true")
    assert losses(tmp_path / "resumed") == losses(tmp_path / "whole")
    assert "Linear4bit" in {type(m).__name__ for m in Policy.from_pretrained(final).lm.modules()}


def test_quantisation_refuses_what_it_cannot_do(store, pretrained_lm):
    with pytest.raises(ValueError, match="cannot be fully fine-tuned"):
        vla(store, pretrained_lm, train="full", quantization="8bit")
    with pytest.raises(ValueError, match="save_lm=adapters"):
        make_policy({"name": "openvla", "encoder": ENCODER, "save_lm": "merged",
                     "lm": {"pretrained": str(pretrained_lm), "train": "lora", "quantization": "4bit"}},
                    store.features, store.stats)  # fmt: skip
    with pytest.raises(ValueError, match="needs policy.lm.pretrained"):
        make_policy({"name": "openvla", "encoder": ENCODER, "lm": {"train": "frozen", "quantization": "4bit"}},
                    store.features, store.stats)  # fmt: skip
