"""One store from several: the shards distributed collection writes (one writer per rank), or stores collected on
different machines (`embodied data merge OUT SHARD...`).

Episodes are keyed by (task, seed), the pair that fixes a scene. Two shards holding the same key would put one scene
into the data twice (or two different episodes under one name), so the merge refuses before writing anything.
Episodes already in ``out`` are skipped, so an interrupted merge resumes where it stopped; appends go in (task,
seed) order, so the merged store does not depend on which rank finished first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from embodied.datasets.layout import StorageConfig
from embodied.datasets.store import EpisodeStore

DERIVED = ("is_first", "is_last", "is_terminal", "language_instruction")  # recomputed by append_episode


class OverlappingShards(ValueError):
    """Two shards hold an episode of the same task and seed."""


def episode_keys(store: EpisodeStore) -> list[tuple[str, int]]:
    """(task, seed) of each of the store's episodes, in order."""
    info = store.episode_info()
    return [(task, int(seed)) for task, seed in zip(info["task"], info["seed"])]


def merge_stores(out: str | Path, shards: Sequence[str | Path], progress: bool = True) -> int:
    """Appends every episode of ``shards`` to ``out`` (created with the first shard's features, metadata and
    storage when missing); returns the number of episodes appended. Raises :class:`OverlappingShards` naming the
    shards and seeds when two shards share a (task, seed)."""
    from tqdm.auto import tqdm

    out = Path(out)
    if not shards:
        raise ValueError("merge needs at least one shard store")
    opened = [EpisodeStore(path) for path in shards]
    owner: dict[tuple[str, int], tuple[int, int]] = {}
    clashes: list[str] = []
    for i, store in enumerate(opened):
        for j, key in enumerate(episode_keys(store)):
            if key in owner and owner[key][0] != i:
                clashes.append(f"task {key[0]!r} seed {key[1]} in {shards[owner[key][0]]} and {shards[i]}")
            owner.setdefault(key, (i, j))
    if clashes:
        shown = "; ".join(clashes[:5]) + (f"; and {len(clashes) - 5} more" if len(clashes) > 5 else "")
        raise OverlappingShards(
            f"the shards overlap ({shown}): each scene must come from one shard. Collect shards with disjoint seeds "
            "(torchrun ranks do) or merge only one of the overlapping stores"
        )
    first = opened[0]
    for store in opened[1:]:
        store.check_features(list(first.features.values()))
    if (out / "zarr.json").exists():
        target = EpisodeStore.open(out, mode="a")
        target.check_features(list(first.features.values()))
    else:
        storage = StorageConfig(**first._attrs.get("storage", {}))
        target = EpisodeStore.create(out, list(first.features.values()), first.metadata, storage)
    try:
        present = set(episode_keys(target))
        tasks = {task: n for n, task in enumerate(dict.fromkeys(task for task, _ in owner))}
        todo = sorted((key for key in owner if key not in present), key=lambda key: (tasks[key[0]], key[1]))
        infos = [store.episode_info() for store in opened]
        for key in tqdm(todo, desc=f"merge into {out.name}", unit="ep", disable=not progress):
            i, j = owner[key]
            episode = opened[i].episode(j)
            steps = {k: v for k, v in episode.items() if k not in DERIVED}
            target.append_episode(
                steps, language_instruction=episode["language_instruction"][0],
                terminated=bool(episode["is_terminal"][-1]), success=bool(infos[i]["success"][j]), seed=key[1],
                task=key[0], env_config=infos[i]["env_config"][j],
            )  # fmt: skip
    finally:
        target.close()
        for store in opened:
            store.close()
    return len(todo)
