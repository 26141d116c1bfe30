"""How a Spark dataset build splits its selection into tasks (a task holds its part in memory)."""

from __future__ import annotations

import pytest

from avfleet.core.errors import ConfigError
from avfleet.dataset.build import DatasetConfig
from avfleet.dataset.spark import task_count


def test_small_selections_get_two_tasks_per_core():
    assert task_count(frames=1_000, recordings=100, parallelism=2, frames_per_task=5_000) == 4


def test_large_selections_get_about_frames_per_task_each():
    # 100,000 frames: 20 tasks of ~5,000, not 4 of 25,000 (a worker's peak grew with the selection)
    assert task_count(frames=100_000, recordings=170, parallelism=2, frames_per_task=5_000) == 20
    assert task_count(frames=100_001, recordings=170, parallelism=2, frames_per_task=5_000) == 21


def test_never_more_tasks_than_recordings():
    assert task_count(frames=100_000, recordings=7, parallelism=2, frames_per_task=5_000) == 7
    assert task_count(frames=3, recordings=1, parallelism=8, frames_per_task=5_000) == 1


def test_frames_per_task_must_be_positive():
    with pytest.raises(ConfigError, match="frames_per_task"):
        DatasetConfig(index_uri="i", selection="random:1", out_uri="o", frames_per_task=0)


def test_recordings_are_packed_into_tasks_of_about_equal_frames():
    import pandas as pd

    from avfleet.dataset.spark import pack

    frames = pd.Series({"a": 600, "b": 600, "c": 300, "d": 300, "e": 200, "f": 100})
    task_of = pack(frames, 3)
    assert set(task_of) == set(frames.index)  # every recording, each in one task
    load = pd.Series(frames.values, index=[task_of[r] for r in frames.index]).groupby(level=0).sum()
    # greedy, largest first: no task exceeds another by more than one recording's frames
    assert sorted(load) == [600, 700, 800] and max(load) - min(load) <= frames.max()
    assert pack(frames, 3) == task_of  # the same plan every time
