"""Random 16-step training windows per second: our zarr store vs the same data as in-memory numpy arrays.

    python benchmarks/store_throughput.py [--episodes 40] [--windows 3000] [--store PATH]

Collects real lift episodes with one 84 px camera (or uses --store), rewrites them with several chunk and
codec settings, and reads the same random windows (image + proprio + action, padded at episode edges) from
each: cold (no chunk cache: every read decompresses from disk) and warm (through the store's chunk cache,
after EpisodeStore.preload, which WindowDataset calls when the data fits its cache).
The in-memory figure is the limit; the goal is >= 0.5x.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

KEYS = ("images/agentview", "proprio", "action")


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def copy_store(source, path: Path, storage) -> None:
    from embodied.datasets import EpisodeStore

    features = [f for f in source.features.values() if f.key in (*KEYS, "state")]
    info = source.episode_info()
    with EpisodeStore.create(path, features, source.metadata, storage) as target:
        for i in range(source.n_episodes):
            episode = source.episode(i)
            target.append_episode(
                {k: episode[k] for k in (*KEYS, "state", "reward")},
                language_instruction=episode["language_instruction"][0],
                terminated=bool(episode["is_terminal"][-1]), success=bool(info["success"][i]),
                seed=int(info["seed"][i]), task=info["task"][i],
            )  # fmt: skip


def windows_per_second(read_window, indices) -> float:
    start = time.perf_counter()
    for index in indices:
        read_window(index)
    return len(indices) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--windows", type=int, default=3000)
    parser.add_argument("--store", help="an existing store with images/agentview (skips collection)")
    args = parser.parse_args()

    from embodied.datasets import EpisodeStore, StorageConfig, WindowSampler
    from embodied.envs.franka.config import FrankaConfig
    from embodied.evaluation.collection import CollectConfig, collect

    workdir = Path(tempfile.mkdtemp(prefix="store_bench_"))
    try:
        source_path = Path(args.store) if args.store else workdir / "source.zarr"
        if not args.store:
            collect(CollectConfig(env=FrankaConfig(task="lift"), episodes=args.episodes, out=str(source_path)), workdir)
        source = EpisodeStore(source_path)
        offsets = {key: list(range(16)) for key in KEYS}
        sampler = WindowSampler(source.episode_ends, offsets)
        indices = np.random.default_rng(0).integers(0, len(sampler), args.windows)

        memory = {key: source.read(key, 0, source.n_steps) for key in KEYS}
        raw_bytes = sum(a.nbytes for a in memory.values())

        def read_memory(index):
            return {key: memory[key][rows] for key, (rows, _) in sampler.rows(index).items()}

        limit = windows_per_second(read_memory, indices)
        print(f"\n{source.n_episodes} episodes, {source.n_steps} steps, {raw_bytes / 1e6:.1f} MB raw; "
              f"{args.windows} random 16-step windows of {', '.join(KEYS)}\n")  # fmt: skip
        columns = ["MB on disk", "cold win/s", "preload s", "warm win/s"]
        header = f"| {'storage':<22} | " + " | ".join(f"{c:>10}" for c in columns) + f" | {'warm vs memory':>14} |"
        print(header)
        print("|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:-1]) + "|")
        print(f"| {'in-memory numpy':<22} | {'-':>10} | {'-':>10} | {'-':>10} | {limit:>10.0f} | {1.0:>13.2f}x |")
        settings = [StorageConfig(64, "zstd", 3), StorageConfig(16, "zstd", 3), StorageConfig(256, "zstd", 3),
                    StorageConfig(64, "lz4", 5), StorageConfig(64, "none", 0)]  # fmt: skip
        for storage in settings:
            path = workdir / f"{storage.codec}_{storage.chunk_steps}.zarr"
            copy_store(source, path, storage)
            cold_store = EpisodeStore(path, cache_bytes=0)
            warm_store = EpisodeStore(path)

            def reader(store):
                return lambda index: {key: store.take(key, rows) for key, (rows, _) in sampler.rows(index).items()}

            cold = windows_per_second(reader(cold_store), indices[: max(200, args.windows // 10)])
            start = time.perf_counter()
            warm_store.preload(KEYS)
            preload_s = time.perf_counter() - start
            warm = windows_per_second(reader(warm_store), indices)
            name = f"{storage.codec} lvl {storage.level}, chunk {storage.chunk_steps}"
            print(
                f"| {name:<22} | {folder_size(path) / 1e6:>10.1f} | {cold:>10.0f} | {preload_s:>10.2f} "
                f"| {warm:>10.0f} | {warm / limit:>13.2f}x |"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
