"""Training throughput (samples/s) and where a training step's time goes: data, encoder forward, the rest of
the forward pass, backward, optimiser. Reference for the data column: gathering the same windows from numpy
arrays already in memory (the fastest a loader can be).

    python benchmarks/train_throughput.py --store PATH [--steps 30] [--batch-size 64]

Run it alone: two cores are easily disturbed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

SMALL_DIFFUSION = {"name": "diffusion", "down_dims": [32, 64, 128], "step_embed_dim": 64}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", required=True, help="an episode store with an 84 px camera, e.g. from lift_success.py"
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["bc_state", "bc_cnn", "bc_resnet18", "diffusion_small_state", "diffusion_small_cnn"],
        help="which policies to time (default: all)",
    )
    args = parser.parse_args()

    from torch.utils.data import DataLoader

    from embodied.datasets.store import EpisodeStore
    from embodied.datasets.window_dataset import WindowDataset
    from embodied.policies import make_policy
    from embodied.training.sampler import StepBatchSampler

    store = EpisodeStore(args.store)
    variants = {
        "bc_state": {"name": "bc", "obs_keys": ["proprio", "state"]},
        "bc_cnn": {"name": "bc", "encoder": {"name": "cnn"}},
        "bc_resnet18": {"name": "bc", "encoder": {"name": "resnet18"}},
        # policy=diffusion_small: 2 observed steps, horizon 16, U-Net 32-64-128
        "diffusion_small_state": {**SMALL_DIFFUSION, "obs_keys": ["proprio", "state"]},
        "diffusion_small_cnn": {**SMALL_DIFFUSION, "encoder": {"name": "cnn"}},
    }
    print(f"torch threads: {torch.get_num_threads()}, batch {args.batch_size}, {args.steps} timed steps")
    rows = []
    for name in args.variants:
        torch.manual_seed(0)
        policy = make_policy(variants[name], store.features, store.stats)
        dataset = WindowDataset(store, policy.key_offsets())
        sampler = StepBatchSampler(len(dataset), args.batch_size, 0)
        loader = iter(DataLoader(dataset, sampler=sampler, batch_size=None))
        optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4)
        encoder_time = [0.0]

        def pre_hook(module, inputs):
            module._t0 = time.perf_counter()

        def post_hook(module, inputs, output, encoder_time=encoder_time):
            encoder_time[0] += time.perf_counter() - module._t0

        for encoder in getattr(policy, "encoders", {}).values():
            encoder.register_forward_pre_hook(pre_hook)
            encoder.register_forward_hook(post_hook)
        totals = dict(data=0.0, encoder=0.0, forward_rest=0.0, backward=0.0, optimizer=0.0)
        policy.train()
        for step in range(args.steps + 3):
            t0 = time.perf_counter()
            batch = next(loader)
            t1 = time.perf_counter()
            encoder_time[0] = 0.0
            loss, _ = policy.compute_loss(batch)
            t2 = time.perf_counter()
            optimizer.zero_grad()
            loss.backward()
            t3 = time.perf_counter()
            optimizer.step()
            t4 = time.perf_counter()
            if step >= 3:  # warm-up steps excluded
                totals["data"] += t1 - t0
                totals["encoder"] += encoder_time[0]
                totals["forward_rest"] += t2 - t1 - encoder_time[0]
                totals["backward"] += t3 - t2
                totals["optimizer"] += t4 - t3
        reference = numpy_gather_time(dataset, args.batch_size, args.steps)
        total = sum(totals.values())
        rows.append((name, args.steps * args.batch_size / total, totals, total, reference))

    print("\n| policy | samples/s | data | encoder fwd | rest fwd | backward | optimiser | data: ours / numpy |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rate, totals, total, reference in rows:
        shares = " | ".join(f"{100 * totals[k] / total:.0f}%" for k in totals)
        print(f"| {name} | {rate:.0f} | {shares} | {totals['data'] / reference:.2f}x |")


def numpy_gather_time(dataset, batch_size: int, steps: int) -> float:
    """Seconds to gather ``steps`` batches of the same windows from in-memory numpy arrays."""
    sampler = dataset.sampler
    arrays = {key: dataset.store.read(key, 0, dataset.store.n_steps) for key in sampler.key_offsets}
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps):
        picks = rng.integers(0, len(sampler), batch_size)
        rows = [sampler.rows(int(i)) for i in picks]
        batch = {key: torch.from_numpy(np.stack([arrays[key][r[key][0]] for r in rows])) for key in arrays}
        del batch
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
