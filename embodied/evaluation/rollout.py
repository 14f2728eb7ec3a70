"""The rollout engine: any actor, one episode per seed, optionally recorded step by step, handed to ``on_episode``.

Collection (a scripted expert), evaluation (a policy through a :class:`~embodied.policies.runner.PolicyRunner`)
and, later, reward scoring and policy alignment all roll out here, with the same seeds, :class:`Episode` records and
stopping rule. Two drivers, by where the actor lives:

- :func:`rollout`: the actor runs in this process (a policy: one batched call for all envs that need a new chunk)
  and the envs in ``gymnasium.vector`` workers, stepped together, resets left to the engine, so each env starts
  its next episode with that episode's own seed as soon as it finishes one.
- :func:`rollout_in_workers`: the actor lives inside the env (a scripted expert reading privileged simulator
  state, :class:`ExpertDriven`), so whole episodes run in worker processes and only finished episodes cross to
  this process: no per-step round trip (it made expert collection ~60% slower on 2 cores).

A worker that dies (a simulator crash, the OOM killer) raises :class:`EnvWorkerDied`; work already handed to
``on_episode`` (e.g. committed to a store) is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from embodied.features import CAPTION, INSTRUCTION, Feature

EXECUTED_ACTION = "executed_action"  # info key under which an in-worker actor reports the action it took


class EnvWorkerDied(RuntimeError):
    """An env worker process died during a rollout."""


class Actor(Protocol):
    """Chooses actions for the envs of a vector env, one stream per env."""

    def reset(self, stream: int, obs: dict) -> None:
        """An episode starts in env ``stream`` with observation ``obs``."""

    def observe(self, stream: int, obs: dict) -> None:
        """The observation after a step of env ``stream``."""

    def act(self, streams: Sequence[int]) -> np.ndarray:
        """Actions for ``streams``: (len(streams), action_dim)."""


class ExpertDriven(gym.Wrapper):
    """Runs the env's registered scripted expert inside the env's process (:func:`rollout_in_workers`): ``step``
    ignores the action it is given and executes the expert's, reported as ``info["executed_action"]``.
    ``reset(seed=s)`` also re-plans the expert with noise seeded by ``s``, so an episode is reproducible from its
    seed."""

    def __init__(self, env: gym.Env, noise: float = 0.1, style: float = 1.0, random_style: bool = False):
        super().__init__(env)
        self.noise, self.style, self.random_style = noise, style, random_style
        self.expert = None
        self._obs = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Resets the env, then builds and plans a fresh expert seeded with the episode's seed (``random_style``:
        its preference style drawn uniformly in [-1, 1] from the seed too)."""
        from embodied.envs import ExpertConfig, make_expert

        obs, info = self.env.reset(seed=seed, options=options)
        style = self.style
        if self.random_style:
            style = float(np.random.default_rng([seed or 0, 7]).uniform(-1.0, 1.0))
        config = ExpertConfig(noise=self.noise, seed=seed or 0, style=style)
        self.expert = make_expert(self.env.unwrapped, config)
        self.expert.reset()
        self._obs = obs
        return obs, info

    def step(self, action):
        """Executes the expert's action (``action`` is ignored) and reports it in the info."""
        chosen = self.expert.act(self._obs)
        caption = self.expert.caption() if hasattr(self.expert, "caption") else None  # the stage it acted in
        obs, reward, terminated, truncated, info = self.env.step(chosen)
        self._obs = obs
        info = {**info, EXECUTED_ACTION: chosen}
        if caption is not None:
            info[CAPTION] = caption
        return obs, reward, terminated, truncated, info

    @property
    def extra_features(self) -> list[Feature]:
        """What this wrapper adds to recorded steps: the expert's stage caption, when its experts write one."""
        from embodied.envs import ExpertConfig, make_expert

        if self.expert is None:
            self.expert = make_expert(self.env.unwrapped, ExpertConfig())
        return [Feature(CAPTION, (), "int32", "language")] if hasattr(self.expert, "caption") else []


@dataclass
class Episode:
    """One finished episode: its facts and, when recorded, its steps (``steps[key]``: (T, ...), the observation
    before each step, the action executed and the reward received) and video frames."""

    index: int  # the order in which the engine started it (evaluation: episode k <-> seeds[k])
    seed: int  # the seed its scene was reset with
    success: bool  # info["is_success"] at any step
    terminated: bool  # ended in a terminal state (vs. a time limit)
    total_reward: float  # the sum of its rewards
    length: int  # steps taken
    instruction: str  # its language instruction
    steps: dict[str, np.ndarray] | None = None  # recorded steps (record=True), else None
    frames: list[np.ndarray] = field(default_factory=list)  # video frames (the first ``videos`` episodes)


def rollout(
    envs,
    actor: Actor,
    seeds: Iterator[int],
    on_episode: Callable[[Episode], bool | None],
    max_episodes: int | None = None,
    record: bool = False,
    videos: int = 0,
) -> int:
    """Runs episodes until ``seeds`` or ``max_episodes`` run out, or ``on_episode`` returns True (then running
    episodes are abandoned). ``record``: keep every step for :attr:`Episode.steps`; ``videos``: episodes with index
    below it keep their frames (the envs need a :class:`~embodied.evaluation.video.FrameRecorder`). Returns the
    number of episodes started."""
    num_envs = envs.num_envs
    started = 0
    episode_of = np.full(num_envs, -1)  # which episode each env runs (-1: idle)
    seed_of = np.zeros(num_envs, dtype=np.int64)

    def next_seed() -> int | None:
        nonlocal started
        if max_episodes is not None and started >= max_episodes:
            return None
        seed = next(seeds, None)
        if seed is not None:
            started += 1
        return seed

    first = [next_seed() for _ in range(num_envs)]
    active = [i for i, s in enumerate(first) if s is not None]
    if not active:
        return 0
    for j, i in enumerate(active):
        episode_of[i], seed_of[i] = j, first[i]
    recording = [bool(0 <= episode_of[i] < videos) for i in range(num_envs)]
    if videos:
        envs.set_attr("recording", recording)
    # every env resets once (vector envs need a first observation from each); ones without a seed stay idle
    obs, _ = _guard(envs.reset, seed=[int(s) if s is not None else 0 for s in first])
    current = [_row(obs, i) for i in range(num_envs)]
    for i in active:
        actor.reset(i, current[i])
    buffers: list[dict[str, list] | None] = [_new_buffer() if record else None for _ in range(num_envs)]
    returns, lengths = np.zeros(num_envs), np.zeros(num_envs, dtype=np.int64)
    succeeded = np.zeros(num_envs, dtype=bool)

    while np.any(episode_of >= 0):
        running = [i for i in range(num_envs) if episode_of[i] >= 0]
        actions = np.zeros((num_envs, *envs.single_action_space.shape), dtype=np.float32)
        actions[running] = actor.act(running)
        obs, reward, terminated, truncated, info = _guard(envs.step, actions)
        executed = info.get(EXECUTED_ACTION)
        success_now = np.asarray(info.get("is_success", np.zeros(num_envs, dtype=bool)), dtype=bool)
        finished = (np.asarray(terminated) | np.asarray(truncated)) & (episode_of >= 0)
        frames_of = envs.call("pop_frames") if any(recording[i] for i in np.flatnonzero(finished)) else None
        reset_mask = np.zeros(num_envs, dtype=bool)
        reset_seeds = [None] * num_envs
        stop = False
        for i in running:
            if record:
                _append(buffers[i], current[i], executed[i] if executed is not None else actions[i], reward[i])
            returns[i] += reward[i]
            lengths[i] += 1
            succeeded[i] |= success_now[i]
            current[i] = _row(obs, i)
            actor.observe(i, current[i])
            if not finished[i] or stop:
                continue
            episode = Episode(
                index=int(episode_of[i]), seed=int(seed_of[i]), success=bool(succeeded[i]),
                terminated=bool(terminated[i]), total_reward=float(returns[i]), length=int(lengths[i]),
                instruction=str(current[i].get(INSTRUCTION, "")),
                steps=_stack(buffers[i]) if record else None,
                frames=list(frames_of[i]) if frames_of is not None and recording[i] else [],
            )  # fmt: skip
            stop = bool(on_episode(episode))
            returns[i], lengths[i], succeeded[i] = 0.0, 0, False
            buffers[i] = _new_buffer() if record else None
            seed = None if stop else next_seed()
            if seed is None:
                episode_of[i] = -1
                recording[i] = False
                continue
            episode_of[i], seed_of[i] = started - 1, seed
            reset_mask[i], reset_seeds[i] = True, int(seed)
            recording[i] = episode_of[i] < videos
        if stop:
            break
        if reset_mask.any():
            if videos:
                envs.set_attr("recording", recording)
            obs, _ = _guard(envs.reset, seed=reset_seeds, options={"reset_mask": reset_mask})
            for i in np.flatnonzero(reset_mask):
                current[i] = _row(obs, i)
                actor.reset(int(i), current[i])
    return started


def _guard(call: Callable[..., Any], *args, **kwargs) -> Any:
    try:
        return call(*args, **kwargs)
    except (EOFError, BrokenPipeError, ConnectionError) as error:
        raise EnvWorkerDied(
            f"an env worker process died ({type(error).__name__}: {error}); finished episodes are kept, run the "
            "same command again to continue"
        ) from None


def _row(obs: dict, i: int) -> dict:
    return {key: value[i] for key, value in obs.items()}


def _new_buffer() -> dict[str, list]:
    return {}


def _append(buffer: dict[str, list], obs: dict, action: np.ndarray, reward: float) -> None:
    for key, value in obs.items():
        if key != INSTRUCTION:
            buffer.setdefault(key, []).append(value)
    buffer.setdefault("action", []).append(np.asarray(action, dtype=np.float32))
    buffer.setdefault("reward", []).append(reward)


def _stack(buffer: dict[str, list]) -> dict[str, np.ndarray]:
    return {key: np.stack(values) for key, values in buffer.items()}


# ---------------------------------------------------------------------- episodes inside the workers
_worker: dict = {}


def _init_worker(env_config, wrappers: tuple, owner_pid: int | None) -> None:
    from embodied.envs import make_env

    if owner_pid is not None:  # a worker process: exit with the command that started it
        from embodied.processes import die_with_parent

        die_with_parent(owner_pid)
    env = make_env(env_config)
    for wrapper in wrappers:
        env = wrapper(env)
    _worker["env"] = env


def _worker_episode(seed: int, record: bool) -> tuple[Episode, list, dict]:
    """One whole episode in this process's env, its actor choosing (``info["executed_action"]``); also the env's
    features and store metadata, for whoever writes the episode down."""
    env = _worker["env"]
    obs, _ = env.reset(seed=seed)
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    buffer = _new_buffer()
    total, length, success = 0.0, 0, False
    terminated = truncated = False
    while not (terminated or truncated):
        before = obs
        obs, reward, terminated, truncated, info = env.step(zero)
        if record:
            _append(buffer, before, info.get(EXECUTED_ACTION, zero), reward)
            if CAPTION in info:
                buffer.setdefault(CAPTION, []).append(str(info[CAPTION]))
        total += float(reward)
        length += 1
        success |= bool(info.get("is_success", False))
    episode = Episode(index=-1, seed=seed, success=success, terminated=bool(terminated), total_reward=total,
                      length=length, instruction=str(obs.get(INSTRUCTION, "")),
                      steps=_stack(buffer) if record else None)  # fmt: skip
    base = env.unwrapped
    return episode, base.features + list(getattr(env, "extra_features", [])), base.metadata_for_store


def rollout_in_workers(
    env_config,
    seeds: Iterator[int],
    on_episode: Callable[[Episode], bool | None],
    workers: int = 2,
    wrappers: Sequence[Callable] = (),
    max_episodes: int | None = None,
    record: bool = False,
    on_env: Callable[[list, dict], None] | None = None,
) -> int:
    """Runs episodes whole inside ``workers`` env processes (0: in this process), each env wrapped by
    ``wrappers`` (one of which acts, e.g. :class:`ExpertDriven`), in completion order. ``on_env(features,
    metadata)`` is called once, before the first episode is handed over. Stops as :func:`rollout` does; returns the
    number of episodes started."""
    import multiprocessing as mp
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    limit = max_episodes if max_episodes is not None else float("inf")
    started = 0
    described = False

    def handle(result, index: int) -> bool:
        nonlocal described
        episode, features, metadata = result
        if not described and on_env is not None:
            on_env(features, metadata)
        described = True
        episode.index = index
        return bool(on_episode(episode))

    if workers <= 0:
        _init_worker(env_config, tuple(wrappers), None)
        try:
            while started < limit:
                seed = next(seeds, None)
                if seed is None:
                    break
                started += 1
                if handle(_worker_episode(seed, record), started - 1):
                    break
        finally:
            _worker.pop("env").close()
        return started

    context = mp.get_context("forkserver")  # fork hangs once an OpenGL context exists
    # concurrent.futures rather than multiprocessing.Pool: a worker that dies (a crash in the simulator or renderer,
    # the OOM killer) raises BrokenProcessPool here instead of leaving its episode pending forever.
    pool = ProcessPoolExecutor(workers, context, _init_worker, (env_config, tuple(wrappers), os.getpid()))
    index_of = {}
    try:
        pending = set()
        for _ in range(2 * workers):  # two queued per worker: none idles while this process writes an episode
            seed = next(seeds, None) if started < limit else None
            if seed is None:
                break
            future = pool.submit(_worker_episode, seed, record)
            index_of[future], started = started, started + 1
            pending.add(future)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=index_of.get):
                try:
                    result = future.result()
                except BrokenProcessPool as error:
                    raise EnvWorkerDied(
                        f"an env worker process died ({error}); finished episodes are kept, run the same command "
                        "again to continue"
                    ) from None
                if handle(result, index_of.pop(future)):
                    return started
                seed = next(seeds, None) if started < limit else None
                if seed is not None:
                    new = pool.submit(_worker_episode, seed, record)
                    index_of[new], started = started, started + 1
                    pending.add(new)
    finally:  # stopping early (enough episodes): drop queued seeds, let the running episodes end
        pool.shutdown(wait=True, cancel_futures=True)
    return started
