"""The OpenVLA-style policy: prompt layout, label masking, constrained KV-cached decoding, parallel decoding,
LoRA (peft) adapters-only and merged checkpoints, language conditioning, mixtures (8/4-bit: test_vla_quantized)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from embodied.datasets.store import EpisodeStore
from embodied.datasets.window_dataset import WindowDataset
from embodied.jobs.config import job_config
from embodied.policies import Policy, make_policy
from embodied.policies.openvla.language_model import default_tokenizer
from embodied.policies.openvla.sequence import ACTION, BOS, EOS, IMAGE, PAD, SLOT, TEXT
from embodied.training.fit_policy import train
from tests.policies.helpers import save_pretrained_lm

TINY_ENCODER = {"name": "cnn", "channels": [8, 8], "strides": [4, 4], "dim": 16, "random_shift": 0}  # 2x2 tokens
TINY_LM = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
           "num_key_value_heads": 2}  # fmt: skip
TINY = {"name": "openvla", "encoder": TINY_ENCODER, "lm": {"model": TINY_LM}, "projector_hidden": 32}
ENCODER_OVERRIDES = ["encoder=cnn", *(f"policy.encoder.{k}={json.dumps(v)}" for k, v in TINY_ENCODER.items())]
LM_OVERRIDES = [f"+policy.lm.model.{k}={v}" for k, v in TINY_LM.items()]
PARALLEL = {**TINY, "decoding": "parallel", "horizon": 8, "n_action_steps": 8}


@pytest.fixture(scope="module")
def store(image_store):
    return EpisodeStore(image_store)


def batch_of(policy, store, n=6):
    return WindowDataset(store, policy.key_offsets())[list(range(0, 5 * n, 5))]


def obs_of(policy, batch, instructions=None):
    obs = {k: batch[k][:, :1] for k in policy.obs_keys}
    obs["language_instruction"] = instructions or batch["language_instruction"]
    return obs


def test_configs_compose_openvla_defaults():
    job = job_config("train", ["policy=openvla", "dataset=x"])
    p = job.policy
    assert p.encoder["name"] == "dinosiglip" and p.decoding == "sequential" and p.n_bins == 256
    # OpenVLA's fine-tuning recipe: LoRA r 32 / alpha 16 (LM and vision towers) where weights are pretrained, batch 16
    assert (p.lm.train, p.lm.lora_rank, p.lm.lora_alpha, p.lm.lora_dropout) == ("auto", 32, 16, 0.0)
    assert (p.encoder["train"], p.encoder["lora_rank"], p.encoder["lora_alpha"], job.batch_size) == ("auto", 32, 16, 16)
    from embodied.policies.openvla.config import resolve_train_modes

    resolve_train_modes(p)
    assert (p.lm.train, p.encoder["train"]) == ("full", "finetune")  # random weights: nothing to preserve
    pretrained = job_config("train", ["policy=openvla", "dataset=x", "policy.lm.pretrained=/m",
                                                          "+policy.encoder.siglip.pretrained=/s"]).policy  # fmt: skip
    resolve_train_modes(pretrained)
    assert (pretrained.lm.train, pretrained.encoder["train"]) == ("lora", "lora")
    assert p.prompt == "In: What action should the robot take to {instruction}?\nOut:"
    assert (job.optim.lr, job.optim.schedule, job.optim.warmup_steps) == (5e-4, "constant", 0)
    small = job_config("train", ["policy=openvla_small", "dataset=x"])
    assert small.policy.encoder["name"] == "cnn" and small.policy.encoder["strides"] == [2, 2, 2, 2]
    assert small.batch_size == 64


def test_default_tokenizer_keeps_the_last_256_ids_for_actions():
    tokenizer = default_tokenizer()
    prompt = "In: What action should the robot take to lift the red cube?\nOut:"
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == prompt and len(ids) < 25  # merged words, not bytes
    odd = "grab the Ünïcode thing 42"
    assert tokenizer.decode(tokenizer(odd, add_special_tokens=False)["input_ids"]) == odd
    text_ids = tokenizer(prompt + odd, add_special_tokens=False)["input_ids"]
    assert max(text_ids) < tokenizer.vocab_size - 256
    assert tokenizer.convert_ids_to_tokens(tokenizer.vocab_size - 1) == "<action_255>"


def test_prompt_layout_and_labels_only_on_action_tokens_and_eos(store):
    torch.manual_seed(0)
    policy = make_policy(TINY, store.features, store.stats)
    batch = batch_of(policy, store, 3)
    obs = policy.prepare_obs(batch)
    actions = torch.as_tensor(batch["action"]).float()
    tokenizer = policy.action_tokenizers["default"]
    ids = tokenizer.encode(actions).flatten(1)
    instructions = ["lift the red cube", "put the can in its bin", "lift the red cube"]
    inputs = policy.build_inputs(obs, instructions, ids)
    vision = policy.vision_tokens(obs)
    for b in range(3):
        kinds = inputs.kinds[b]
        row = kinds[kinds != PAD]
        n_text = len(policy.prompt_ids(instructions[b]))
        expected = [BOS] + [IMAGE] * vision.shape[1] + [TEXT] * n_text + [ACTION] * 7 + [EOS]
        assert row.tolist() == expected
        assert bool((kinds[: len(kinds) - len(row)] == PAD).all())  # left padding
        text = inputs.input_ids[b][kinds == TEXT]
        assert policy.tokenizer.decode(text) == f"In: What action should the robot take to {instructions[b]}?\nOut:"
        # image tokens sit right after BOS and are the projected patch tokens
        assert torch.allclose(inputs.inputs_embeds[b][kinds == IMAGE], vision[b])
        bos_row = policy.lm.get_input_embeddings().weight[policy.tokenizer.bos_token_id]
        assert torch.allclose(inputs.inputs_embeds[b][kinds == BOS][0], bos_row)
        labels = inputs.labels[b]
        supervised = labels != -100
        assert bool((supervised == ((kinds == ACTION) | (kinds == EOS))).all())
        assert labels[kinds == ACTION].tolist() == ids[b].tolist()
        assert labels[kinds == EOS].item() == policy.tokenizer.eos_token_id
        assert all(policy.vocab_size - 256 <= i < policy.vocab_size for i in ids[b].tolist())
    assert not bool(inputs.attention_mask[inputs.kinds == PAD].any())


def test_constrained_kv_cached_decoding_emits_only_action_ids(store):
    torch.manual_seed(0)
    policy = make_policy(TINY, store.features, store.stats).eval()
    head = policy.lm.get_output_embeddings()
    with torch.no_grad():  # make plain text tokens the model's favourites: they must still never be chosen
        head.weight[: policy.vocab_size - 256] += 5.0 * head.weight[: policy.vocab_size - 256].sign()
    batch = batch_of(policy, store, 4)
    obs = policy.prepare_obs(obs_of(policy, batch, ["lift the red cube", "put the can in its bin"] * 2))
    inputs = policy.build_inputs(obs, obs["language_instruction"])
    with torch.no_grad():
        ids = policy.generate_action_ids(inputs, 7)
        assert ids.shape == (4, 7)
        assert int(ids.min()) >= policy.vocab_size - 256 and int(ids.max()) < policy.vocab_size
        # the KV-cached loop equals recomputing the whole sequence for every token (left padding included)
        full = policy.build_inputs(obs, obs["language_instruction"], ids)
        hidden = policy.decoder_hidden(full)[:, -9:-2]
        assert torch.equal(policy.constrained_argmax(hidden), ids)
        unconstrained = policy.lm_head(policy.decoder_hidden(inputs)[:, -1]).argmax(-1)
    assert bool((unconstrained < policy.vocab_size - 256).any())  # the constraint mattered
    actions = policy.predict_action(obs_of(policy, batch))
    assert actions.shape == (4, 1, 7) and torch.isfinite(actions).all()


@pytest.mark.parametrize("head", ["tokens", "l1"])
def test_parallel_decoding_returns_a_chunk_of_k_actions(store, head):
    torch.manual_seed(0)
    policy = make_policy({**PARALLEL, "action_head": head, "use_proprio": True}, store.features, store.stats)
    assert policy.obs_keys == ["images/agentview", "proprio"]
    batch = batch_of(policy, store, 2)
    loss, metrics = policy.compute_loss(batch)
    assert torch.isfinite(loss) and (("l1" in metrics) if head == "l1" else ("action_accuracy" in metrics))
    loss.backward()
    assert policy.action_slots.grad is not None and policy.proprio_projector[0].weight.grad is not None
    actions = policy.predict_action(obs_of(policy, batch))
    assert actions.shape == (2, 8, 7) and torch.isfinite(actions).all()
    # attention: slots see each other both ways; the prompt never sees the slots
    policy.eval()
    obs = policy.prepare_obs(obs_of(policy, batch))
    inputs = policy.build_inputs(obs, obs["language_instruction"])
    slots = inputs.kinds[0] == SLOT
    with torch.no_grad():
        before = policy.decoder_hidden(inputs)
        embeds = inputs.inputs_embeds.clone()
        last_slot = int(torch.nonzero(slots)[-1])
        embeds[:, last_slot] += 1.0
        after = policy.decoder_hidden(dataclasses.replace(inputs, inputs_embeds=embeds))
    first_slot = int(torch.nonzero(slots)[0])
    assert not torch.allclose(before[:, first_slot], after[:, first_slot])  # an earlier slot sees a later one
    assert torch.allclose(before[:, ~slots], after[:, ~slots])  # the prompt stays causal


def test_training_save_load_and_rollout(store, tmp_path):
    """`embodied train`'s loop on the real store: the loss falls, accuracy and L1 are logged, the checkpoint
    holds the tokenizer, LM config and dataset statistics, reloads to identical actions, and rolls out (the
    evaluation passes each env's instruction)."""
    from embodied.evaluation.evaluate import eval_env_config, evaluate

    overrides = ["policy=openvla", f"dataset={store.path}", "steps=60", "batch_size=16", "log_every=20",
                 "checkpoint_every=60", "progress=false", "env.image_size=32", *ENCODER_OVERRIDES,
                 *LM_OVERRIDES, "policy.projector_hidden=32"]  # fmt: skip
    job = job_config("train", overrides)
    final = train(job, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["loss"] < records[0]["loss"]
    assert {"action_accuracy", "action_l1"} <= set(records[-1])
    for name in ("language_model.json", "tokenizer/tokenizer.json", "dataset_statistics.json"):
        assert (final / name).is_file()
    statistics = json.loads((final / "dataset_statistics.json").read_text())
    assert list(statistics) == [store.path.stem] and len(statistics[store.path.stem]["action"]["q01"]) == 7
    trained = train_policy = Policy.from_pretrained(final)
    batch = batch_of(trained, store, 3)
    again = Policy.from_pretrained(final)
    assert torch.equal(train_policy.predict_action(obs_of(trained, batch)), again.predict_action(obs_of(again, batch)))
    result = evaluate(trained, eval_env_config(job.env, trained, max_episode_steps=6), episodes=2, num_envs=2)
    assert result["episodes"] == 2 and all(r["length"] == 6 for r in result["per_episode"])


def test_instruction_changes_the_output_of_a_trained_model(store):
    """Two instructions, opposite gripper commands: after training, the instruction alone picks the action."""
    torch.manual_seed(0)
    policy = make_policy({**TINY, "encoder": {**TINY_ENCODER, "train": "frozen"}}, store.features, store.stats)
    batch = batch_of(policy, store, 8)
    open_, close = dict(batch), dict(batch)
    open_["action"] = batch["action"].clone()
    open_["action"][..., -1] = -1.0
    close["action"] = batch["action"].clone()
    close["action"][..., -1] = 1.0
    open_["language_instruction"] = ["open the gripper"] * 8
    close["language_instruction"] = ["close the gripper"] * 8
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(60):
        for b in (open_, close):
            loss, _ = policy.compute_loss(b)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    obs = obs_of(policy, batch)
    opened = policy.predict_action({**obs, "language_instruction": ["open the gripper"] * 8})
    closed = policy.predict_action({**obs, "language_instruction": ["close the gripper"] * 8})
    assert bool((opened[..., -1] < 0).all()) and bool((closed[..., -1] > 0).all())


@pytest.fixture(scope="module")
def pretrained_lm(tmp_path_factory):
    return save_pretrained_lm(tmp_path_factory.mktemp("lm") / "tiny-llama", TINY_LM)


def test_lora_freezes_the_base_and_saves_only_adapters(store, pretrained_lm, tmp_path):
    torch.manual_seed(0)
    config = {**TINY, "lm": {"pretrained": str(pretrained_lm), "train": "lora"}}
    policy = make_policy(config, store.features, store.stats)
    lm_params = dict(policy.lm.named_parameters())
    assert lm_params and all(p.requires_grad == ("lora_" in n) for n, p in lm_params.items())
    assert policy.lm.peft_config["default"].r == 32 and policy.lm.peft_config["default"].lora_alpha == 16
    adapted = {n.split(".base_layer")[0] for n in lm_params if ".base_layer" in n}
    assert any("q_proj" in n for n in adapted) and any("down_proj" in n for n in adapted)  # every linear
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-2)
    batch = batch_of(policy, store, 4)
    for _ in range(3):
        loss, _ = policy.compute_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    directory = policy.save_pretrained(tmp_path / "adapters")
    saved = load_file(str(directory / "model.safetensors"))
    lm_keys = [k for k in saved if k.startswith("lm.")]
    assert lm_keys and all("lora_" in k for k in lm_keys)  # no base LM weight in the checkpoint
    assert (directory / "lm_adapter" / "adapter_config.json").is_file()
    obs = obs_of(policy, batch)
    expected = policy.predict_action(obs)
    restored = Policy.from_pretrained(directory)
    assert torch.equal(restored.predict_action(obs), expected)
    # merged: a plain model, no LoRA modules, same actions (up to float rounding of the merge)
    policy.config.save_lm = "merged"
    merged_dir = policy.save_pretrained(tmp_path / "merged")
    merged = Policy.from_pretrained(merged_dir)
    assert merged.config.lm.train == "full" and not any("lora_" in n for n, _ in merged.named_parameters())
    assert torch.allclose(merged.predict_action(obs), expected, atol=2e-2)


def test_mixture_keeps_statistics_per_dataset(image_store, tmp_path):
    other = tmp_path / "lift_copy.zarr"
    shutil.copytree(image_store, other)
    overrides = ["policy=openvla", f"dataset=[{image_store},{other}]", "steps=2", "batch_size=8",
                 "progress=false", "env.image_size=32", *ENCODER_OVERRIDES,
                 *LM_OVERRIDES, "policy.projector_hidden=32"]  # fmt: skip
    final = train(job_config("train", overrides), tmp_path / "run")
    statistics = json.loads((final / "dataset_statistics.json").read_text())
    assert sorted(statistics) == sorted([image_store.stem, "lift_copy"])
    policy = Policy.from_pretrained(final)
    batch = batch_of(policy, EpisodeStore(image_store), 2)
    with pytest.raises(ValueError, match="unnorm_key"):
        policy.predict_action(obs_of(policy, batch))
    policy.config.unnorm_key = "lift_copy"
    assert policy.predict_action(obs_of(policy, batch)).shape == (2, 1, 7)
    policy.config.unnorm_key = "nope"
    with pytest.raises(KeyError, match="lift_copy"):
        policy.predict_action(obs_of(policy, batch))
    # `embodied eval` picks the statistics (and may switch the task of a multi-task checkpoint)
    from embodied.jobs.eval import EvalConfig
    from embodied.jobs.eval import run as run_eval

    job = EvalConfig(checkpoint=str(final), episodes=1, num_envs=1, videos=0, max_episode_steps=3, progress=False)
    with pytest.raises(ValueError, match="unnorm_key"):
        run_eval(job, tmp_path / "eval0")
    job.unnorm_key, job.task = "lift_copy", "lift"
    assert run_eval(job, tmp_path / "eval1")["per_episode"][0]["length"] == 3


def test_config_errors_are_clear(store):
    with pytest.raises(ValueError, match="quantization must be null, 8bit or 4bit"):
        make_policy({**TINY, "lm": {"pretrained": "x", "train": "lora", "quantization": "2bit"}}, store.features,
                    store.stats)  # fmt: skip
    with pytest.raises(ValueError, match="parallel"):
        make_policy({**TINY, "action_head": "l1"}, store.features, store.stats)
    with pytest.raises(ValueError, match="decoding"):
        make_policy({**TINY, "decoding": "beam"}, store.features, store.stats)
    with pytest.raises(ValueError, match="n_obs_steps"):
        make_policy({**TINY, "n_obs_steps": 2, "horizon": 2}, store.features, store.stats)
    with pytest.raises(ValueError, match="lm.train"):
        make_policy({**TINY, "lm": {"train": "half"}}, store.features, store.stats)
    policy = make_policy(TINY, store.features, store.stats)
    batch = batch_of(policy, store, 2)
    with pytest.raises(ValueError, match="language_instruction"):
        policy.predict_action({k: batch[k][:, :1] for k in policy.obs_keys})
    assert np.isfinite(policy.predict_action(obs_of(policy, batch)).numpy()).all()
