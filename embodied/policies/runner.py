"""Running a policy step by step: one object shared by evaluation, the policy server and the ROS bridge.

A policy sees ``n_obs_steps`` observations and predicts a chunk of ``n_action_steps`` actions; a robot (or an env)
wants one action per step. :class:`PolicyRunner` keeps, for each of ``num_streams`` independent streams (vector-env
workers, server clients), the last ``n_obs_steps`` observations and the queue of actions still to execute, and
calls the policy once for every stream whose queue is empty. With ``temporal_ensemble`` (ACT, Zhao et al. 2023)
it queries the policy at every step instead and executes a weighted average of every chunk's prediction for the
current step, oldest first, with weights ``exp(-m * i)``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from embodied.features import INSTRUCTION


class PolicyRunner:
    """Observation history and action queues around a :class:`~embodied.policies.base.Policy`.

    Args:
        policy: the policy (any registered one).
        num_streams: independent streams (one per env or client).
        temporal_ensemble: ``m`` of ACT's temporal ensembling (None: execute chunks from a queue).
    """

    def __init__(self, policy, num_streams: int = 1, temporal_ensemble: float | None = None):
        if temporal_ensemble is not None and temporal_ensemble < 0:
            raise ValueError(f"temporal_ensemble must be >= 0 (ACT's m), got {temporal_ensemble}")
        self.policy = policy
        self.num_streams = num_streams
        self.temporal_ensemble = temporal_ensemble
        self.n_obs = policy.config.n_obs_steps
        self._history: list[deque] = [deque(maxlen=self.n_obs) for _ in range(num_streams)]
        self._queue: list[deque] = [deque() for _ in range(num_streams)]
        self._chunks: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(num_streams)]  # (start step, chunk)
        self._t = np.zeros(num_streams, dtype=np.int64)
        policy.reset()  # policies that keep state between calls start clean

    def reset(self, stream: int, obs: Mapping[str, Any]) -> None:
        """A new episode starts in ``stream`` with observation ``obs``: the history holds it ``n_obs_steps``
        times (as in training, where windows at an episode's start repeat its first step) and queued actions are
        dropped."""
        self._history[stream] = deque([dict(obs)] * self.n_obs, maxlen=self.n_obs)
        self._queue[stream].clear()
        self._chunks[stream] = []
        self._t[stream] = 0

    def observe(self, stream: int, obs: Mapping[str, Any]) -> None:
        """The observation after a step of ``stream``."""
        self._history[stream].append(dict(obs))

    def needs_policy(self, stream: int) -> bool:
        """Whether the next :meth:`act` for ``stream`` calls the policy."""
        return self.temporal_ensemble is not None or not self._queue[stream]

    def act(self, streams: Sequence[int]) -> np.ndarray:
        """The next action of each of ``streams``: (len(streams), action_dim), calling the policy once for all
        streams that need a new chunk."""
        need = [s for s in streams if self.needs_policy(s)]
        if need:
            chunks = self.chunks(need)
            for s, chunk in zip(need, chunks):
                if self.temporal_ensemble is None:
                    self._queue[s].extend(chunk)
                else:
                    self._chunks[s].append((int(self._t[s]), chunk))
        out = np.zeros((len(streams), self.policy.action_dim), dtype=np.float32)
        for j, s in enumerate(streams):
            out[j] = self._queue[s].popleft() if self.temporal_ensemble is None else self._ensembled(s)
            self._t[s] += 1
        return out

    def chunks(self, streams: Sequence[int]) -> np.ndarray:
        """One policy call on the current histories of ``streams``: raw actions (len, n_action_steps, action_dim).
        Raises ValueError when the policy returns NaN or inf."""
        batch = {
            key: np.stack([np.stack([row[key] for row in self._history[s]]) for s in streams])
            for key in self.policy.obs_keys
        }
        latest = self._history[streams[0]][-1]
        for key in self.policy.optional_obs_keys:  # e.g. a goal image given with each observation
            if key in latest:
                batch[key] = np.stack([self._history[s][-1][key] for s in streams])
        if INSTRUCTION in latest:  # language-conditioned policies read it
            batch[INSTRUCTION] = [str(self._history[s][-1][INSTRUCTION]) for s in streams]
        chunk = self.policy.predict_action(batch).float().cpu().numpy()
        if not np.isfinite(chunk).all():
            raise ValueError(
                f"policy {self.policy.config.name} produced NaN or inf actions; its weights or normalisation "
                "statistics are not finite (check the checkpoint, and its store with `embodied data info PATH "
                "--verify`)"
            )
        return chunk

    def _ensembled(self, stream: int) -> np.ndarray:
        """ACT's temporal ensemble for the current step: every live chunk's prediction for it, oldest first,
        weighted ``exp(-m * i)``."""
        t = int(self._t[stream])
        live = [(start, chunk) for start, chunk in self._chunks[stream] if start <= t < start + len(chunk)]
        self._chunks[stream] = live
        predictions = np.stack([chunk[t - start] for start, chunk in live])  # oldest first
        weights = np.exp(-self.temporal_ensemble * np.arange(len(predictions)))
        return (weights[:, None] * predictions).sum(0) / weights.sum()
