"""A simulated person who answers preference queries by a task's hidden cost, the stand-in for a human labeller.

A query shows 2 or 3 episodes of a store; the person ranks them by each episode's total ``preference_cost`` (the
privileged per-step cost the env recorded, :data:`embodied.features.PREFERENCE_COST`), perceived with Gaussian
``noise`` (in cost units), and calls two episodes equally good when their perceived costs differ by at most
``equal_tolerance``. Answers go to the store's preference table (:mod:`embodied.datasets.preferences`) under a
labeller name that records these settings, so simulated and human answers can be told apart and mixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from embodied.configs.checks import at_least, one_of
from embodied.datasets.preferences import ranks_from_costs
from embodied.features import PREFERENCE_COST


@dataclass
class PersonConfig:
    """How the simulated person perceives and answers."""

    noise: float = 0.0  # std of Gaussian noise on each episode's perceived total cost
    equal_tolerance: float = 0.5  # perceived costs this close are "equally good" (0: only exact ties)
    seed: int = 0  # seeds the perception noise

    CHECKS: ClassVar = {"noise": at_least(0), "equal_tolerance": at_least(0)}

    @property
    def name(self) -> str:
        """The labeller name recorded with each answer."""
        return f"simulated(noise={self.noise:g}, equal_tolerance={self.equal_tolerance:g}, seed={self.seed})"


def episode_costs(store) -> np.ndarray:
    """Each episode's total hidden preference cost (the sum of its per-step ``preference_cost``)."""
    if PREFERENCE_COST not in store.features:
        raise ValueError(
            f"{store.path} records no {PREFERENCE_COST!r}: collect it from a task with a hidden preference "
            "(e.g. env=franka env.task=lift_zone)"
        )
    ends = store.episode_ends
    costs = store.read(PREFERENCE_COST, 0, store.n_steps).astype(np.float64)
    return np.add.reduceat(costs, np.concatenate([[0], ends[:-1]])) if len(ends) else np.zeros(0)


class SimulatedPerson:
    """Ranks queries by hidden cost (see the module docstring)."""

    def __init__(self, config: PersonConfig, costs: np.ndarray):
        self.config, self.costs = config, np.asarray(costs, dtype=np.float64)
        self.rng = np.random.default_rng(config.seed)

    def rank(self, episodes) -> np.ndarray:
        """The ranks (0 best) this person gives the ``episodes`` of one query."""
        perceived = self.costs[list(episodes)] + self.rng.normal(0.0, self.config.noise, len(episodes))
        return ranks_from_costs(perceived, self.config.equal_tolerance)


def sample_queries(episodes: np.ndarray, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` queries of ``size`` distinct episodes drawn from ``episodes`` (indices), (n, size); no query twice."""
    episodes = np.asarray(episodes)
    if len(episodes) < size:
        raise ValueError(f"a query shows {size} episodes but only {len(episodes)} are available")
    seen, rows = set(), []
    for _ in range(n * 20):
        if len(rows) == n:
            break
        row = rng.choice(episodes, size, replace=False)
        key = tuple(sorted(row.tolist()))
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return np.asarray(rows, dtype=np.int64).reshape(-1, size)


@dataclass
class SimulateConfig:
    """What `embodied reward simulate` does: sample queries over a store's episodes and answer them."""

    dataset: str | None = None  # the store of rollouts (recorded with a preference_cost)
    queries: int = 100  # new answers to add
    query_size: int = 3  # episodes per query: 3 (RAPL's triplets) or 2 (pairs)
    episodes: list[int] = field(default_factory=list)  # [start, stop): draw from these episodes only; []: all
    person: PersonConfig = field(default_factory=PersonConfig)
    seed: int = 0  # seeds which queries are drawn
    plugins: list[str] = field(default_factory=list)

    CHECKS: ClassVar = {"queries": at_least(1), "query_size": one_of(2, 3)}


def simulate_preferences(job: SimulateConfig) -> tuple[int, int]:
    """Draws ``job.queries`` queries, has the simulated person answer them into the store's preference table;
    returns (answers added, answers now in the table)."""
    from tqdm.auto import tqdm

    from embodied.datasets.preferences import PreferenceWriter, query_key, read_preferences
    from embodied.datasets.store import EpisodeStore

    if not job.dataset:
        raise ValueError("embodied reward simulate needs dataset=STORE (rollouts with a preference_cost)")
    with EpisodeStore(job.dataset) as store:
        costs = episode_costs(store)
        n_episodes = store.n_episodes
    if job.episodes and (len(job.episodes) != 2 or not 0 <= job.episodes[0] < job.episodes[1] <= n_episodes):
        raise ValueError(f"episodes={job.episodes}: give [start, stop) within the store's {n_episodes} episodes")
    pool = np.arange(*job.episodes) if job.episodes else np.arange(n_episodes)
    prefs = read_preferences(job.dataset)
    mine = [row for row, who in zip(prefs.episodes, prefs.labeller) if prefs.labellers[who] == job.person.name]
    asked = {query_key(row) for row in mine}
    # a rerun with the same seed adds new queries, never a second copy of an answer this person gave
    drawn = sample_queries(pool, job.queries + len(asked), job.query_size, np.random.default_rng(job.seed))
    queries = [q for q in drawn if query_key(q) not in asked][: job.queries]
    person = SimulatedPerson(job.person, costs)
    with PreferenceWriter(job.dataset) as writer:
        for query in tqdm(queries, desc="simulated person", unit="query"):
            writer.append(query, person.rank(query), job.person.name)
        return len(queries), writer.n
