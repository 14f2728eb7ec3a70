"""A policy's rollouts written to an episode store, through the one rollout engine, and scored by a reward.

Alignment rounds and the before/after evaluation both roll out here: episodes are committed to the store as they
finish (each with its seed), so an interrupted round resumes with the seeds it lacks, and the store is what the
reward, the pairs and the labelling page (`embodied label`) read. The env renders the policy's cameras and the
reward's, and reports the hidden ``preference_cost`` where the task has one.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from embodied.datasets.store import EpisodeStore
from embodied.features import PREFERENCE_COST

TRUE_COST = "true_cost"  # reward=true_cost: the hidden preference cost itself (an oracle, for comparison)


def rollout_env_config(env, policy, reward_info: dict | None, max_episode_steps: int | None = None):
    """The env config for rollouts: the policy's cameras plus the reward's, at the policy's image size."""
    from embodied.evaluation.evaluate import eval_env_config
    from embodied.features import camera_name

    config = eval_env_config(env, policy, max_episode_steps)
    if reward_info is None:
        return config
    camera = reward_info["camera"]
    shape = tuple(reward_info["image_shape"])
    cameras = [camera_name(k) for k in policy.image_keys]
    if policy.image_keys and tuple(policy.features[policy.image_keys[0]].shape) != shape:
        raise ValueError(
            f"the reward reads {camera} at {shape}, the policy {policy.image_keys[0]} at "
            f"{tuple(policy.features[policy.image_keys[0]].shape)}; learn the reward on rollouts of the same image size"
        )
    if camera not in policy.image_keys:
        config = config.adapt_to([*cameras, camera_name(camera)], shape[0])
    return config


def rollout_into_store(policy, env_config, seeds: list[int], path: Path, num_envs: int = 2, videos: int = 0,
                       videos_dir: Path | None = None, progress: str | None = None) -> EpisodeStore:  # fmt: skip
    """Rolls ``policy`` out once per seed into the store at ``path`` (created, or resumed: seeds it holds are
    skipped); the videos of the first ``videos`` seeds go to ``videos_dir/seed_<seed>.mp4``. Returns the store,
    open to read."""
    from tqdm.auto import tqdm

    from embodied.envs import make_vector_env
    from embodied.evaluation.rollout import rollout
    from embodied.evaluation.video import FrameRecorder, write_video
    from embodied.policies.runner import PolicyRunner

    path = Path(path)
    done: set[int] = set()
    if (path / "zarr.json").exists():
        with EpisodeStore(path) as existing:
            done = {int(s) for s in existing.episode_info()["seed"]}
    # the first ``videos`` seeds keep their videos whatever a resumed store already holds: they roll out first
    filmed = [s for s in seeds[:videos] if s not in done]
    todo = filmed + [s for s in seeds if s not in done and s not in filmed]
    if todo:
        n = max(1, min(num_envs, len(todo)))
        envs = make_vector_env(env_config, n, wrappers=[FrameRecorder], autoreset=False)
        bar = tqdm(total=len(seeds), initial=len(seeds) - len(todo), desc=progress, disable=progress is None,
                   unit="ep", dynamic_ncols=True)  # fmt: skip
        try:
            features = envs.get_attr("features")[0]
            metadata = envs.get_attr("metadata_for_store")[0]
            store = EpisodeStore.open_or_create(path, features, metadata)
            fps = getattr(env_config, "control_freq", 20)

            def keep(episode) -> None:
                store.append_episode(episode.steps, language_instruction=episode.instruction,
                                     terminated=episode.terminated, success=episode.success, seed=episode.seed,
                                     task=getattr(env_config, "task", None) or env_config.name,
                                     env_config=asdict(env_config))  # fmt: skip
                if episode.frames and videos_dir is not None:
                    write_video(Path(videos_dir) / f"seed_{episode.seed}.mp4", episode.frames, fps)
                bar.update(1)

            try:
                rollout(envs, PolicyRunner(policy, n), iter(todo), keep, record=True, videos=len(filmed))
            finally:
                store.close()
        finally:
            bar.close()
            envs.close(terminate=True)
    return EpisodeStore(path)


def episode_costs_or_none(store: EpisodeStore) -> np.ndarray | None:
    """Each episode's total hidden preference cost, or None when the env reports none."""
    if PREFERENCE_COST not in store.features:
        return None
    from embodied.rewards.person import episode_costs

    return episode_costs(store)


def score_episodes(reward, store: EpisodeStore, camera: str | None = None, batch_size: int = 32):
    """(returns (E,), per-step rewards of each episode at every step) of every episode of ``store`` under
    ``reward``: a loaded reward model reading ``camera`` (its matched frames interpolated to every step) or
    :data:`TRUE_COST` (minus the hidden cost)."""
    ends = store.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    if isinstance(reward, str):
        if reward != TRUE_COST:
            raise ValueError(f"reward={reward!r}: a reward checkpoint directory or {TRUE_COST!r}")
        if PREFERENCE_COST not in store.features:
            raise ValueError(f"reward={TRUE_COST} needs an env that reports {PREFERENCE_COST} (env.task=lift_zone)")
        cost = store.read(PREFERENCE_COST, 0, store.n_steps).astype(np.float64).reshape(-1)
        per_step = [-cost[s:e] for s, e in zip(starts, ends)]
    else:
        from embodied.rewards.queries import store_step_rewards

        per_step, _, _ = store_step_rewards(reward, store, camera, batch_size)
    return np.array([float(r.sum()) for r in per_step]), per_step
