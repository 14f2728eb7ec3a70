"""VLA training cost: peak memory and throughput for the tiny LM and a 0.5B-parameter-class LM (Qwen2-0.5B's
shape, built from its config), full fine-tuning and LoRA (r 32, alpha 16, every linear layer).

    python benchmarks/vla_train_memory.py --store lift100.zarr [--variants tiny:full:32 0.5b:full:4 0.5b:lora:4]

Each variant runs in its own process (so its peak is its own): build the policy (openvla_small's cnn encoder,
the given LM), then ``--steps`` AdamW steps of ``compute_loss`` on real windows of the store after one warm-up
step. Reported: parameters (total / trainable), samples/s, and the process's peak resident memory (CPU; on CUDA
``torch.cuda.max_memory_allocated`` as well).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def run_variant(store: str, size: str, mode: str, batch: int, steps: int) -> dict:
    import torch

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from vla_decoding import SIZES

    from embodied.datasets.store import EpisodeStore
    from embodied.datasets.window_dataset import WindowDataset
    from embodied.runtime import resolve_device

    device = resolve_device("auto")
    episodes = EpisodeStore(store)
    from omegaconf import OmegaConf

    from embodied.jobs.config import compose
    from embodied.policies import make_policy

    config = OmegaConf.to_container(compose("train", ["policy=openvla_small", "dataset=x"]).policy)
    config["lm"].update(SIZES[size])
    config["lm"]["train"] = mode
    torch.manual_seed(0)
    policy = make_policy(config, episodes.features, episodes.stats).to(device)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    data = WindowDataset(episodes, policy.key_offsets())
    generator = torch.Generator().manual_seed(0)

    def step():
        batch_data = data[torch.randint(len(data), (batch,), generator=generator).tolist()]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, _ = policy.compute_loss(batch_data)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return {
        "variant": f"{size}:{mode}:{batch}",
        "params": sum(p.numel() for p in policy.parameters()),
        "trainable": sum(p.numel() for p in trainable),
        "step_s": seconds,
        "samples_per_s": batch / seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "cuda_peak_gb": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        "device": device.type,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--variants", nargs="+", default=["tiny:full:32", "0.5b:full:4", "0.5b:lora:4"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    args = parser.parse_args()
    if args.one:
        size, mode, batch = args.one.split(":")
        print("RESULT " + json.dumps(run_variant(args.store, size, mode, int(batch), args.steps)))
        return
    rows = []
    for variant in args.variants:
        command = [sys.executable, __file__, "--store", args.store, "--steps", str(args.steps), "--one", variant]
        out = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if not lines:
            print(f"{variant} failed:\n{out.stderr[-2000:]}")
            continue
        rows.append(json.loads(lines[-1][len("RESULT ") :]))
        print(rows[-1], flush=True)
    print("\n| LM | fine-tuning | batch | parameters | trainable | step | samples/s | peak RSS | CUDA peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        size, mode, batch = r["variant"].split(":")
        cuda = f"{r['cuda_peak_gb']:.2f} GB" if r["cuda_peak_gb"] is not None else "-"
        print(f"| {size} | {mode} | {batch} | {r['params'] / 1e6:.1f}M | {r['trainable'] / 1e6:.2f}M | "
              f"{r['step_s']:.2f} s | {r['samples_per_s']:.1f} | {r['peak_rss_gb']:.2f} GB | {cuda} |")  # fmt: skip


if __name__ == "__main__":
    main()
