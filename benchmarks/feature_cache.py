"""Training on a frozen encoder: encoding images at every step vs reading features from the cache.

    python benchmarks/feature_cache.py --store PATH [--encoder resnet18] [--steps 20] [--batch-size 64]

Same policy (BC, frozen encoder, same seed) both ways; the cache is computed once (its time is reported) into a
copy of the store's cache directory and removed afterwards. Goal: >= 10x faster train steps with the cache.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    from torch.utils.data import DataLoader

    from embodied.datasets.store import EpisodeStore
    from embodied.datasets.window_dataset import WindowDataset
    from embodied.encoders.cache import compute_features, load_features
    from embodied.policies.base import feature_key
    from embodied.training.fit_policy import TrainConfig, build_policy
    from embodied.training.sampler import StepBatchSampler

    store = EpisodeStore(args.store)
    job = TrainConfig(policy={"name": "bc", "encoder": {"name": args.encoder, "train": "frozen"}}, dataset=args.store)

    def steps_per_second(policy, extra) -> float:
        dataset = WindowDataset(store, policy.key_offsets(), extra_arrays=extra)
        sampler = StepBatchSampler(len(dataset), args.batch_size, 0)
        batches = iter(DataLoader(dataset, sampler=sampler, batch_size=None))
        optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-4)
        policy.train()
        for step in range(args.steps + 2):
            if step == 2:
                start = time.perf_counter()
            loss, _ = policy.compute_loss(next(batches))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return args.steps / (time.perf_counter() - start)

    on_the_fly = steps_per_second(build_policy(job, store), None)
    policy = build_policy(job, store)
    start = time.perf_counter()
    compute_features(store, policy.image_encoders(), batch_size=args.batch_size)
    encode_s = time.perf_counter() - start
    features = load_features(store, policy.image_encoders())
    policy.use_cached_features(features)
    cached = steps_per_second(policy, {feature_key(k): v for k, v in features.items()})

    print(
        f"\nBC with a frozen {args.encoder}, batch {args.batch_size}, {store.n_steps} frames, "
        f"torch threads {torch.get_num_threads()}"
    )
    print("| train step | steps/s | samples/s | vs on the fly |")
    print("|---|---|---|---|")
    print(f"| encode images every step | {on_the_fly:.2f} | {on_the_fly * args.batch_size:.0f} | 1.0x |")
    print(f"| cached features | {cached:.1f} | {cached * args.batch_size:.0f} | {cached / on_the_fly:.0f}x |")
    print(f"one-time cache computation: {encode_s:.0f} s ({store.n_steps / encode_s:.0f} frames/s)")


if __name__ == "__main__":
    main()
