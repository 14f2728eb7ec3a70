"""The zarr episode store: round trips, statistics, crash safety, locking and corruption errors (real zarr)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

from embodied.datasets import EpisodeStore, StorageConfig, StoreCorruptError, StoreError, StoreLockedError
from embodied.features import Feature

FEATURES = [
    Feature("images/cam", (6, 5, 3), "uint8", "image"),
    Feature("proprio", (4,), "float32", "proprio"),
    Feature("action", (3,), "float32", "action"),
]


def make_episode(rng, length):
    return {
        "images/cam": rng.integers(0, 256, (length, 6, 5, 3), dtype=np.uint8),
        "proprio": rng.normal(size=(length, 4)).astype(np.float32),
        "action": rng.uniform(-1, 1, (length, 3)).astype(np.float32),
        "reward": (np.arange(length) == length - 1).astype(np.float32),
    }


def write_store(path, lengths=(7, 12, 5), chunk_steps=4, seed=0):
    rng = np.random.default_rng(seed)
    episodes = []
    with EpisodeStore.create(path, FEATURES, {"robot": "test"}, StorageConfig(chunk_steps=chunk_steps)) as store:
        for i, length in enumerate(lengths):
            episode = make_episode(rng, length)
            store.append_episode(
                episode, language_instruction=f"task {i % 2}", terminated=i != 1, success=i != 1,
                seed=100 + i, task="toy", env_config={"i": i},
            )  # fmt: skip
            episodes.append(episode)
    return episodes


def test_round_trip_of_every_field(tmp_path):
    episodes = write_store(tmp_path / "s.zarr")
    store = EpisodeStore(tmp_path / "s.zarr")
    assert store.n_episodes == 3 and store.n_steps == 24
    np.testing.assert_array_equal(store.episode_ends, [7, 19, 24])
    info = store.episode_info()
    np.testing.assert_array_equal(info["length"], [7, 12, 5])
    np.testing.assert_array_equal(info["success"], [True, False, True])
    np.testing.assert_array_equal(info["seed"], [100, 101, 102])
    assert info["task"] == ["toy"] * 3 and info["env_config"] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert store.metadata == {"robot": "test"}
    for i, written in enumerate(episodes):
        read = store.episode(i)
        for key, value in written.items():
            np.testing.assert_array_equal(read[key], value, err_msg=key)
        length = len(written["action"])
        assert read["language_instruction"] == [f"task {i % 2}"] * length
        assert read["is_first"].tolist() == [True] + [False] * (length - 1)
        assert read["is_last"].tolist() == [False] * (length - 1) + [True]
        terminal = i != 1  # episode 1 ended on a time limit
        assert read["is_terminal"].tolist() == [False] * (length - 1) + [terminal]
        assert read["discount"][-1] == (0.0 if terminal else 1.0) and np.all(read["discount"][:-1] == 1)
    store.verify()


def test_statistics_match_numpy(tmp_path):
    write_store(tmp_path / "s.zarr", lengths=(30, 41, 17))
    store = EpisodeStore(tmp_path / "s.zarr")
    for key in ("images/cam", "proprio", "action", "reward"):
        data = store.read(key, 0, store.n_steps).astype(np.float64)
        flat = data.reshape(-1, data.shape[-1] if data.ndim > 1 else 1)
        stats = store.stats[key]
        assert stats["count"] == len(flat)
        np.testing.assert_allclose(stats["mean"], flat.mean(0), rtol=1e-9, atol=1e-9, err_msg=key)
        np.testing.assert_allclose(stats["std"], flat.std(0), rtol=1e-9, atol=1e-9, err_msg=key)
        np.testing.assert_allclose(stats["min"], flat.min(0), err_msg=key)
        np.testing.assert_allclose(stats["max"], flat.max(0), err_msg=key)
        np.testing.assert_allclose(stats["q01"], np.quantile(flat, 0.01, axis=0), rtol=1e-9, atol=1e-9, err_msg=key)
        np.testing.assert_allclose(stats["q99"], np.quantile(flat, 0.99, axis=0), rtol=1e-9, atol=1e-9, err_msg=key)


def test_statistics_continue_exactly_after_reopening(tmp_path):
    path = tmp_path / "s.zarr"
    write_store(path, lengths=(9, 6))
    rng = np.random.default_rng(5)
    with EpisodeStore(path, mode="a") as store:
        store.append_episode(
            make_episode(rng, 11), language_instruction="x", terminated=True, success=True, seed=9, task="toy"
        )
    store = EpisodeStore(path)
    proprio = store.read("proprio", 0, store.n_steps).astype(np.float64)
    np.testing.assert_allclose(store.stats["proprio"]["std"], proprio.std(0), rtol=1e-9)
    np.testing.assert_allclose(store.stats["proprio"]["q99"], np.quantile(proprio, 0.99, axis=0), rtol=1e-9)


def test_second_writer_is_refused(tmp_path):
    write_store(tmp_path / "s.zarr")
    with EpisodeStore(tmp_path / "s.zarr", mode="a"):
        with pytest.raises(StoreLockedError, match="being written by pid"):
            EpisodeStore(tmp_path / "s.zarr", mode="a")
        code = f"from embodied.datasets import EpisodeStore; EpisodeStore({str(tmp_path / 's.zarr')!r}, mode='a')"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.returncode != 0 and "StoreLockedError" in result.stderr
        EpisodeStore(tmp_path / "s.zarr").episode(0)  # readers are never blocked
    EpisodeStore(tmp_path / "s.zarr", mode="a").close()  # the lock is released on close


def test_uncommitted_rows_are_invisible_and_cut_off(tmp_path):
    path = tmp_path / "s.zarr"
    write_store(path)
    # What a writer killed between writing data and committing leaves behind.
    group = zarr.open_group(str(path), mode="r+")
    action = group["data/action"]
    action.resize((30, 3))
    action[24:30] = 9.0
    assert EpisodeStore(path).n_steps == 24
    with EpisodeStore(path, mode="a") as store:
        assert store._array("action").shape[0] == 24
        store.append_episode(make_episode(np.random.default_rng(1), 4), language_instruction="x",
                             terminated=True, success=True, seed=1, task="toy")  # fmt: skip
    assert not np.any(EpisodeStore(path).read("action", 0, 28) == 9.0)


def test_missing_chunk_names_the_array(tmp_path):
    path = tmp_path / "s.zarr"
    write_store(path)
    (path / "data" / "proprio" / "c" / "1" / "0").unlink()
    with pytest.raises(StoreCorruptError, match=r"data/proprio is missing chunk 1"):
        EpisodeStore(path)


def test_damaged_chunk_fails_on_read(tmp_path):
    path = tmp_path / "s.zarr"
    write_store(path)
    chunk = path / "data" / "images" / "cam" / "c" / "2" / "0" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    store = EpisodeStore(path)
    store.read("proprio", 0, 24)  # other arrays still read
    with pytest.raises(StoreCorruptError, match=r"data/images/cam chunk 2 cannot be read"):
        store.read("images/cam", 0, 24)
    with pytest.raises(StoreCorruptError, match="images/cam"):
        EpisodeStore(path).verify()


def test_truncated_array_is_reported(tmp_path):
    path = tmp_path / "s.zarr"
    write_store(path)
    meta = path / "data" / "action" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["shape"][0] = 10
    meta.write_text(json.dumps(doc))
    with pytest.raises(StoreCorruptError, match=r"data/action holds 10 rows but 24 are committed"):
        EpisodeStore(path)


def test_garbled_root_metadata_and_missing_store(tmp_path):
    path = tmp_path / "s.zarr"
    write_store(path)
    (path / "zarr.json").write_text('{"zarr_format": 3, "node_type": "gro')
    with pytest.raises(StoreCorruptError, match="root metadata unreadable"):
        EpisodeStore(path)
    with pytest.raises(StoreError, match="no episode store"):
        EpisodeStore(tmp_path / "nothing.zarr")


def test_wrong_episode_shapes_are_refused(tmp_path):
    with EpisodeStore.create(tmp_path / "s.zarr", FEATURES) as store:
        episode = make_episode(np.random.default_rng(0), 5)
        episode["proprio"] = episode["proprio"][:, :3]
        with pytest.raises(ValueError, match=r"proprio: expected shape \(5, 4\)"):
            store.append_episode(episode, language_instruction="x", terminated=True, success=True, seed=0, task="t")
        del episode["proprio"]
        with pytest.raises(ValueError, match="missing \\['proprio'\\]"):
            store.append_episode(episode, language_instruction="x", terminated=True, success=True, seed=0, task="t")
        assert store.n_episodes == 0


@pytest.mark.slow
def committed_episodes(store_path) -> int:
    try:
        return json.loads((store_path / "zarr.json").read_text())["attributes"]["embodied"]["commit"]["n_episodes"]
    except (OSError, ValueError, KeyError):
        return 0


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, grandchildren: the fork server's workers)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def running(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("mode, workers", [("state", 0), ("image", 2)], ids=["state-in-process", "image-2-workers"])
def test_sigkill_during_collection_then_resume(tmp_path, mode, workers):
    """A real `embodied collect` killed with SIGKILL keeps every committed episode, leaves no worker process
    alive, and the same command resumes. The collector pauses itself after two commits (a test hook), so the kill
    lands at the same point on any machine, while the workers are in the middle of their next episodes."""
    out = tmp_path / "kill.zarr"
    args = [sys.executable, "-m", "embodied.cli", "collect", f"env.obs_mode={mode}", "env.image_size=32",
            "episodes=5", f"out={out}", f"run_dir={tmp_path / 'run'}", f"num_workers={workers}"]  # fmt: skip
    env = {**os.environ, "EMBODIED_COLLECT_PAUSE_AFTER": "2"}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    for line in process.stdout:  # the collector announces the pause once two episodes are committed
        if "paused after 2 committed episodes" in line:
            break
    assert process.poll() is None, "collection ended before pausing"
    workers_seen = descendants(process.pid)
    assert len(workers_seen) >= workers  # the fork server and the env workers
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while any(running(p) for p in workers_seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [p for p in workers_seen if running(p)]
    for pid in survivors:  # do not leak them into the rest of the suite either
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"worker processes {survivors} outlived the killed collector by 10 s"

    survived = EpisodeStore(out)
    assert survived.n_episodes == committed_episodes(out) == 2
    kept_seeds = survived.episode_info()["seed"].tolist()
    survived.verify()
    assert len(survived.episode(1)["action"]) == survived.episode_info()["length"][-1]

    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 episodes present" in result.stdout
    final = EpisodeStore(out)
    assert final.n_episodes == 5
    seeds = final.episode_info()["seed"].tolist()
    # the kept episodes stay first; the rest are new seeds (a seed the noisy expert failed is replaced by a later one)
    assert seeds[:2] == kept_seeds and len(set(seeds)) == 5
    final.verify()


def test_plain_zarr_reads_our_store_without_warnings(tmp_path):
    import warnings

    write_store(tmp_path / "s.zarr")
    with EpisodeStore(tmp_path / "s.zarr", mode="a"), warnings.catch_warnings():
        warnings.simplefilter("error")  # zarr warns about objects it does not recognise: none may be there
        group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
        members = {name for name, _ in group.members(max_depth=None)}
        assert {f"data/{k}" for k in EpisodeStore(tmp_path / "s.zarr").features} <= members
        assert {f"meta/{k}" for k in ("episode_ends", "length", "success", "seed", "task", "env_config")} <= members


def test_damaged_statistics_are_refused_and_can_be_rebuilt(tmp_path):
    path = tmp_path / "s.zarr"
    write_store(path)
    expected = EpisodeStore(path).stats
    root = path / "zarr.json"
    metadata = json.loads(root.read_text())
    metadata["attributes"]["embodied"]["stats"]["action"]["mean"][1] = float("nan")
    root.write_text(json.dumps(metadata))
    with pytest.raises(StoreCorruptError, match=r"statistics of 'action': mean\[1\] is nan.*recompute-stats"):
        EpisodeStore(path)
    from embodied.cli import main

    assert main(["data", "info", str(path), "--verify"]) == 1
    metadata["attributes"]["embodied"]["stats"]["proprio"]["std"] = [1.0, 2.0]  # the wrong width
    root.write_text(json.dumps(metadata))
    with pytest.raises(StoreCorruptError, match="std has shape"):
        EpisodeStore(path)
    assert main(["data", "recompute-stats", str(path)]) == 0
    rebuilt = EpisodeStore(path).stats
    for key in expected:
        for name in ("mean", "std", "min", "max", "q01", "q99"):
            np.testing.assert_allclose(rebuilt[key][name], expected[key][name], rtol=1e-9)


def test_create_refuses_a_folder_that_is_not_a_store(tmp_path):
    folder = tmp_path / "my_files"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not an episode store; refusing"):
        EpisodeStore.create(folder, FEATURES)
    assert (folder / "notes.txt").read_text() == "keep me"
    write_store(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="already holds a store"):
        EpisodeStore.create(tmp_path / "s.zarr", FEATURES)
