"""The queries a labelling session asks, and which of them a labeller has answered.

Queries are drawn once from a seed over the store's episodes (the same seed gives the same queries, so a session
stopped and restarted asks what is left); a query counts as answered by a labeller when the preference table holds
a row by that labeller showing the same episodes in the same order. Each answer is committed to the table as it is
given (:class:`~embodied.datasets.preferences.PreferenceWriter`), so a killed server loses none.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from embodied.configs.checks import at_least, between, one_of


@dataclass
class LabelConfig:
    """What `embodied label` serves."""

    dataset: str | None = None  # the store whose episodes are compared; answers go to its preference table
    queries: int = 50  # queries in this session (drawn with seed over the episodes)
    query_size: int = 2  # 2: side by side (left/right/equal); 3: a triplet ranked with 1, 2, 3
    episodes: list[int] = field(default_factory=list)  # [start, stop): compare only these; []: all
    seed: int = 0  # which queries are drawn
    labeller: str = "person"  # the default name answers are recorded under (the page can change it)
    camera: str | None = None  # image key; null: the store's first camera
    fps: float = 10.0  # playback speed, frames per second (every frame is shown)
    host: str = "127.0.0.1"  # loopback only unless allow_remote=true
    port: int = 8000
    allow_remote: bool = False  # serve on a non-loopback host (anyone who can reach it can answer)
    plugins: list[str] = field(default_factory=list)

    CHECKS: ClassVar = {"queries": at_least(1), "query_size": one_of(2, 3), "fps": between(0.5, 120),
                        "port": between(0, 65535)}  # fmt: skip


class AlreadyAnswered(ValueError):
    """This labeller has answered this query already (one answer per person and query)."""


class LabellingSession:
    """The queries, the open preference writer and who answered what; thread-safe (the server's handlers run in a
    thread pool)."""

    def __init__(self, config: LabelConfig):
        from embodied.datasets.preferences import PreferenceWriter, read_preferences
        from embodied.datasets.store import EpisodeStore
        from embodied.rewards.person import sample_queries

        if not config.dataset:
            raise ValueError("embodied label needs dataset=STORE (the episodes to compare)")
        self.config = config
        self.store = EpisodeStore(config.dataset)
        n = self.store.n_episodes
        if config.episodes and (len(config.episodes) != 2 or not 0 <= config.episodes[0] < config.episodes[1] <= n):
            raise ValueError(f"episodes={config.episodes}: give [start, stop) within the store's {n} episodes")
        pool = np.arange(*config.episodes) if config.episodes else np.arange(n)
        self.queries = sample_queries(pool, config.queries, config.query_size, np.random.default_rng(config.seed))
        self.camera = config.camera or next((k for k, f in self.store.features.items() if f.kind == "image"), None)
        if self.camera not in self.store.features:
            raise ValueError(f"{config.dataset}: no camera {config.camera or ''} to show")
        self.writer = PreferenceWriter(config.dataset)  # held for the session: answers commit one by one
        self.lock = threading.Lock()
        self.lengths = [int(n) for n in self.store.episode_info()["length"]]
        self.read_lock = threading.Lock()  # store reads (the chunk cache) from the server's worker threads
        prefs = read_preferences(config.dataset)
        self.answered: list[tuple[str, tuple[int, ...]]] = [
            (prefs.labellers[int(who)], tuple(int(e) for e in row if e >= 0))
            for row, who in zip(prefs.episodes, prefs.labeller)
        ]
        self._strips: dict[int, bytes] = {}

    def next_query(self, labeller: str) -> dict:
        """The first query ``labeller`` has not answered, with progress; ``done`` when none is left."""
        with self.lock:
            done = {shown for who, shown in self.answered if who == labeller}
        remaining = [k for k, q in enumerate(self.queries) if tuple(int(e) for e in q) not in done]
        progress = {"answered": len(self.queries) - len(remaining), "total": len(self.queries)}
        if not remaining:
            return {"done": True, "progress": progress}
        k = remaining[0]
        episodes = [int(e) for e in self.queries[k]]
        lengths = [self.lengths[e] for e in episodes]
        return {"done": False, "query": k, "episodes": episodes, "lengths": lengths, "progress": progress}

    def answer(self, query: int, ranking: list[int], labeller: str) -> dict:
        """Records ``labeller``'s ranking of query ``query`` (committed before this returns)."""
        if not 0 <= query < len(self.queries):
            raise ValueError(f"no query {query}: this session has {len(self.queries)}")
        if not labeller.strip() or len(labeller) > 100:
            raise ValueError("a labeller name is 1-100 characters")
        episodes = [int(e) for e in self.queries[query]]
        with self.lock:
            if (labeller, tuple(episodes)) in self.answered:  # a repeated key press, a second tab
                raise AlreadyAnswered(f"{labeller} already answered query {query}")
            row = self.writer.append(episodes, ranking, labeller)
            self.answered.append((labeller, tuple(episodes)))
        return {"row": row, **self.next_query(labeller)}

    def undo(self, labeller: str) -> dict:
        """Takes back ``labeller``'s newest answer if it is the table's newest."""
        with self.lock:
            row = self.writer.retract_last(labeller)
            if row is not None:
                index = max(i for i, (who, _) in enumerate(self.answered) if who == labeller)
                self.answered.pop(index)
        return {"undone": row is not None, **self.next_query(labeller)}

    def strip(self, episode: int) -> bytes:
        """Every frame of an episode side by side in one PNG (the page plays it by drawing one frame at a time)."""
        if not 0 <= episode < self.store.n_episodes:
            raise KeyError(f"no episode {episode}")
        with self.read_lock:
            return self._strip(episode)

    def _strip(self, episode: int) -> bytes:
        import imageio.v3 as iio

        if episode not in self._strips:
            frames = self.store.episode(episode, [self.camera])[self.camera]
            self._strips[episode] = iio.imwrite("<bytes>", np.concatenate(list(frames), axis=1), extension=".png")
        return self._strips[episode]

    def close(self) -> None:
        """Releases the store."""
        self.writer.close()
        self.store.close()
