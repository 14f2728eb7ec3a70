"""The preference table inside a store: append, read, crash safety, validation, several labellers."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr

from embodied.datasets.errors import StoreLockedError
from embodied.datasets.preferences import PreferenceWriter, ranks_from_costs, read_preferences
from embodied.datasets.store import EpisodeStore


@pytest.fixture()
def store(image_store, tmp_path):
    path = tmp_path / "store.zarr"
    shutil.copytree(image_store, path)
    return path


def test_answers_append_and_read_back(store):
    assert len(read_preferences(store)) == 0
    with PreferenceWriter(store) as writer:
        writer.append([0, 1, 2], [1, 0, 2], "alice")
        writer.append([2, 0], [0, 0], "bob")  # a pair, called equally good
        writer.append([0, 1, 2], [0, 1, 2], "bob")  # a second labeller of the first query: its own row
    prefs = read_preferences(store)
    assert len(prefs) == 3 and prefs.labellers == ["alice", "bob"]
    np.testing.assert_array_equal(prefs.episodes, [[0, 1, 2], [2, 0, -1], [0, 1, 2]])
    np.testing.assert_array_equal(prefs.ranking, [[1, 0, 2], [0, 0, -1], [0, 1, 2]])
    np.testing.assert_array_equal(prefs.labeller, [0, 1, 1])
    with PreferenceWriter(store) as writer:  # appending later continues the table
        assert writer.append([1, 2], [1, 0], "alice") == 3
    assert len(read_preferences(store)) == 4
    with EpisodeStore(store) as episodes:  # episode readers are unaffected by the table
        assert episodes.n_episodes == 3


def test_rows_past_the_commit_record_are_invisible(store):
    with PreferenceWriter(store) as writer:
        writer.append([0, 1, 2], [0, 1, 2], "alice")
        group = writer.group  # a writer killed after writing a row's arrays, before the commit
        for key, value in {"episodes": [2, 1, 0], "ranking": [0, 1, 2], "labeller": 0, "time": 1.0}.items():
            group[key].resize((2, *group[key].shape[1:]))
            group[key][1] = value
    assert len(read_preferences(store)) == 1
    with PreferenceWriter(store) as writer:  # the next writer overwrites the uncommitted row
        writer.append([1, 0], [0, 1], "bob")
    prefs = read_preferences(store)
    np.testing.assert_array_equal(prefs.episodes[1], [1, 0, -1])


def test_bad_answers_are_refused_and_writers_exclude_each_other(store):
    with PreferenceWriter(store) as writer:
        for episodes, ranking in [([0, 0, 1], [0, 1, 2]), ([0, 9], [0, 1]), ([0, 1], [1, 2]), ([0], [0]),
                                  ([0, 1, 2], [0, 1])]:  # fmt: skip
            with pytest.raises(ValueError):
                writer.append(episodes, ranking, "alice")
        with pytest.raises(StoreLockedError):
            PreferenceWriter(store)
        with pytest.raises(StoreLockedError):
            EpisodeStore(store, mode="a")
    assert len(read_preferences(store)) == 0


def test_a_truncated_table_is_reported(store):
    from embodied.datasets.errors import StoreCorruptError

    with PreferenceWriter(store) as writer:
        writer.append([0, 1, 2], [0, 1, 2], "alice")
    group = zarr.open_group(str(store / "preferences"), mode="r+")
    group.attrs.update({"commit": {"n": 5}, "labellers": ["alice"]})
    with pytest.raises(StoreCorruptError, match="truncated"):
        read_preferences(store)


def test_ranks_from_costs_share_ranks_within_the_tolerance():
    np.testing.assert_array_equal(ranks_from_costs([3.0, 1.0, 2.0]), [2, 0, 1])
    np.testing.assert_array_equal(ranks_from_costs([1.2, 1.0, 5.0], equal_tolerance=0.5), [0, 0, 2])
    np.testing.assert_array_equal(ranks_from_costs([1.0, 1.0, 1.0]), [0, 0, 0])


def test_a_table_whose_creation_was_interrupted_reads_empty_and_takes_answers(store):
    root = zarr.open_group(str(store), mode="r+")
    root.create_group("preferences")  # killed before its arrays and commit record were written
    assert len(read_preferences(store)) == 0
    with PreferenceWriter(store) as writer:
        writer.append([0, 1], [0, 1], "alice")
    assert len(read_preferences(store)) == 1
