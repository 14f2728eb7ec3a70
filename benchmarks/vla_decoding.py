"""VLA action latency: our constrained KV-cached decoding vs ``model.generate`` on the same model and prompt, and
parallel (OpenVLA-OFT) vs sequential decoding per action.

    python benchmarks/vla_decoding.py --store lift100.zarr [--sizes tiny 0.5b] [--batches 1 8] [--calls 20]
        [--device auto]

Both decoders start from the same input embeddings ([BOS, image tokens, prompt]) and produce 7 greedy action
tokens; ``generate`` gets a logits processor that allows only the 256 action ids, so both must return the same
ids (checked and printed). Timed: the language model's decoding only (the vision encoder and projector run once,
outside the timing) and, separately, whole ``predict_action`` calls, for sequential (one 7-D action per call) and
parallel decoding (a chunk of 8 actions per call; token head and L1 head). Prints one table per size; weights are
random (speed does not depend on them). ``0.5b`` is a Qwen2-0.5B-shaped LM built from its config (24 layers,
896 wide, 151,936-entry vocabulary).
"""

from __future__ import annotations

import argparse
import time

import torch

SIZES = {
    "tiny": {"model_type": "llama", "model": {}},  # the offline default (TINY_LLAMA)
    "0.5b": {
        "model_type": "qwen2",
        "model": {
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "vocab_size": 151936,
            "max_position_embeddings": 4096,
            "tie_word_embeddings": True,
        },
    },
}


DEVICE = torch.device("cpu")


def build(store, size: str, overrides: dict):
    from omegaconf import OmegaConf

    from embodied.jobs.config import compose
    from embodied.policies import make_policy

    policy_cfg = OmegaConf.to_container(compose("train", ["policy=openvla_small", "dataset=x"]).policy)
    policy_cfg["lm"].update(SIZES[size])
    policy_cfg.update(overrides)
    torch.manual_seed(0)
    return make_policy(policy_cfg, store.features, store.stats).to(DEVICE).eval()


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, calls: int) -> float:
    fn()  # warm-up
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - start) / calls


def observations(policy, store, batch: int) -> dict:
    from embodied.datasets.window_dataset import WindowDataset

    data = WindowDataset(store, policy.key_offsets())[list(range(batch))]
    obs = {k: data[k][:, :1] for k in policy.obs_keys}
    obs["language_instruction"] = data["language_instruction"]
    return obs


class ActionIdsOnly:
    """A ``LogitsProcessor`` for ``generate``: every id outside the action range gets -inf."""

    def __init__(self, first: int, stop: int):
        self.first, self.stop = first, stop

    def __call__(self, input_ids, scores):
        masked = torch.full_like(scores, float("-inf"))
        masked[:, self.first : self.stop] = scores[:, self.first : self.stop]
        return masked


def bench_size(store, size: str, batches: list[int], calls: int) -> None:
    """Times one LM size and prints its two tables."""
    from transformers import LogitsProcessorList

    sequential = build(store, size, {})
    lm = sequential.lm
    n_params = sum(p.numel() for p in lm.parameters())
    ids = sequential.action_token_ids
    processor = LogitsProcessorList([ActionIdsOnly(ids.start, ids.stop)])
    rows = []
    for batch in batches:
        obs = observations(sequential, store, batch)
        with torch.no_grad():
            inputs = sequential.build_inputs(sequential.prepare_obs(obs), obs["language_instruction"])

            def generate(inputs=inputs):
                return lm.generate(
                    inputs_embeds=inputs.inputs_embeds,
                    attention_mask=inputs.attention_mask,
                    max_new_tokens=7,
                    min_new_tokens=7,
                    do_sample=False,
                    logits_processor=processor,
                    pad_token_id=sequential.tokenizer.pad_token_id,
                    eos_token_id=None,
                )

            def ours(inputs=inputs):
                return sequential.generate_action_ids(inputs, 7)

            same = bool(torch.equal(generate()[:, -7:], ours()))
            rows.append((batch, timed(ours, calls), timed(generate, calls), same))
    # whole calls, per action: sequential (1 action per call) vs parallel (8 actions per call)
    sequential_s = {}
    for batch in batches:
        obs = observations(sequential, store, batch)
        sequential_s[batch] = timed(lambda obs=obs: sequential.predict_action(obs), calls)
    per_action = []
    for head in ("tokens", "l1"):
        parallel = build(store, size, {"decoding": "parallel", "horizon": 8, "n_action_steps": 8, "action_head": head})
        for batch in batches:
            obs = observations(sequential, store, batch)
            par_s = timed(lambda obs=obs, parallel=parallel: parallel.predict_action(obs), calls) / 8
            per_action.append((batch, head, sequential_s[batch], par_s))
        del parallel
    print(f"\n{size}: LM {n_params / 1e6:.1f}M parameters ({SIZES[size]['model_type']}), encoder cnn 6x6 tokens")
    print("| batch | decode 7 action tokens: ours | model.generate | speed-up | same ids |")
    print("|---|---|---|---|---|")
    for batch, ours_s, generate_s, same in rows:
        print(f"| {batch} | {ours_s * 1e3:.1f} ms | {generate_s * 1e3:.1f} ms | {generate_s / ours_s:.2f}x | {same} |")
    print("| batch | parallel head | sequential, per action | parallel (K=8), per action | speed-up |")
    print("|---|---|---|---|---|")
    for batch, head, seq_s, par_s in per_action:
        print(f"| {batch} | {head} | {seq_s * 1e3:.1f} ms | {par_s * 1e3:.1f} ms | {seq_s / par_s:.1f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "0.5b"], choices=list(SIZES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    args = parser.parse_args()

    from embodied.datasets.store import EpisodeStore
    from embodied.runtime import resolve_device

    global DEVICE
    DEVICE = resolve_device(args.device)
    store = EpisodeStore(args.store)
    where = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {where}")
    for size in args.sizes:
        bench_size(store, size, args.batches, args.calls if size == "tiny" else max(3, args.calls // 4))


if __name__ == "__main__":
    main()
