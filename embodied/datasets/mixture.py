"""Opening the stores a run trains on: one store, or a mixture of several (each keeping its own statistics)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from embodied.datasets.store import EpisodeStore


def is_mixture(dataset: Any) -> bool:
    """``dataset=`` names a mixture when it is a list (of one store or more), one store when it is a path."""
    return dataset is not None and not isinstance(dataset, (str, Path))


def open_datasets(paths: Any) -> list[EpisodeStore]:
    """``dataset=``: one store path or a list of them (a mixture)."""
    if is_mixture(paths):
        paths = list(paths)
        if not paths:
            raise ValueError("dataset=[] names no store")
        return [open_dataset(p) for p in paths]
    return [open_dataset(paths)]


def open_dataset(path: str | Path | None) -> EpisodeStore:
    """One training store, with errors that say what to pass."""
    if not path:
        raise ValueError("no dataset given: pass dataset=PATH, an episode store written by `embodied collect`")
    if not Path(path).exists():
        raise FileNotFoundError(f"dataset {str(path)!r} does not exist; create one with `embodied collect out={path}`")
    store = EpisodeStore(path)
    if store.n_episodes == 0:
        raise ValueError(f"dataset {path} holds no episodes yet")
    return store


def training_inputs(stores: list[EpisodeStore], mixture: bool | None = None) -> tuple[dict, dict]:
    """(features, statistics) a policy is built from: one store's, or for a mixture (``mixture``, default: more
    than one store) the features all stores share (same shape) and merged statistics; ``stats["datasets"]`` keeps
    each store's own, by store name."""
    from embodied.datasets.stats import merge_stats

    names = [s.name for s in stores]
    if len(set(names)) != len(names):
        raise ValueError(f"the stores of a mixture need distinct directory names (their statistics keys), got {names}")
    if not (len(stores) > 1 if mixture is None else mixture):
        features, stats = dict(stores[0].features), dict(stores[0].stats)
    else:
        first = stores[0].features
        features = {
            k: f for k, f in first.items() if all(k in s.features and s.features[k].shape == f.shape for s in stores)
        }
        stats = merge_stats([s.stats for s in stores])
    stats["datasets"] = {name: store.stats for name, store in zip(names, stores)}
    return features, stats


def check_env_matches_dataset(env_config: Any, store: EpisodeStore, check_task: bool = True) -> None:
    """The env used for evaluation must produce what the dataset recorded: same env, task (not checked for
    mixtures, whose stores hold different tasks), rate and image size."""
    recorded = store.metadata.get("env_config") or {}
    if env_config is None or not recorded:
        return
    ours = asdict(env_config)
    check_task = check_task and not env_config.suite_tasks()  # a suite's store holds each of its tasks
    for key in ("name", "task", "control_freq", "image_size") if check_task else ("name", "control_freq", "image_size"):
        if key == "name" and physics_of(recorded.get("name")) == physics_of(ours.get("name")):
            continue  # the same simulation in another look (franka and franka_shifted)
        if key in recorded and key in ours and recorded[key] != ours[key]:
            raise ValueError(
                f"env.{key}={ours[key]!r} but the dataset {store.path} was collected with {key}={recorded[key]!r}; "
                f"pass env.{key}={recorded[key]} so evaluation matches the data"
            )


def physics_of(env_name: str | None) -> str | None:
    """The env whose simulation ``env_name`` runs: itself, or the one it restyles (``EnvConfig.physics``)."""
    from embodied.envs import ENVS

    if env_name is None or env_name not in ENVS:
        return env_name
    schema = ENVS.config_class(env_name)
    return getattr(schema, "physics", None) or env_name
