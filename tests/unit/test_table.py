"""The index commit protocol on a local folder: atomic visibility, explicit file lists, GC."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from avfleet.core.errors import NotFoundError, PermanentError
from avfleet.index import schema
from avfleet.index.table import IndexTable


def write_frames(
    table: IndexTable, date: str, run_id: str, ids: list[str], name: str = "part-0"
) -> str:
    rows = [
        {f.name: None for f in schema.FRAMES}
        | {"frame_id": i, "vehicle": "v", "recording_id": "r", "frame_index": k}
        for k, i in enumerate(ids)
    ]
    folder = table.run_dir("frames", date, run_id)
    import os

    os.makedirs(folder, exist_ok=True)
    uri = f"{folder}/{name}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema.FRAMES), uri)
    return uri


def test_readers_see_only_committed_files(tmp_path):
    table = IndexTable(str(tmp_path))
    with pytest.raises(NotFoundError):
        table.read("frames", ["2026-11-20"])
    part = write_frames(table, "2026-11-20", "r1", ["a", "b"])
    write_frames(table, "2026-11-20", "r1", ["stray"], name="part-from-a-failed-attempt")
    table.commit(
        "2026-11-20", "r1", frames_files=[part], files_files=[], quarantine_files=[], counts={}
    )
    assert list(table.read("frames", ["2026-11-20"])["frame_id"]) == ["a", "b"]


def test_uncommitted_run_leaves_previous_version_visible(tmp_path):
    table = IndexTable(str(tmp_path))
    old = write_frames(table, "2026-11-20", "r1", ["a"])
    table.commit(
        "2026-11-20", "r1", frames_files=[old], files_files=[], quarantine_files=[], counts={}
    )
    write_frames(table, "2026-11-20", "r2", ["x", "y"])  # a rerun that died before its commit
    assert list(table.read("frames")["frame_id"]) == ["a"]
    assert table.current("2026-11-20").run_id == "r1"


def test_commit_keeps_previous_and_gc_removes_older(tmp_path):
    table = IndexTable(str(tmp_path))
    for run in ("r1", "r2", "r3"):
        part = write_frames(table, "2026-11-20", run, [run])
        table.commit(
            "2026-11-20", run, frames_files=[part], files_files=[], quarantine_files=[], counts={}
        )
    write_frames(table, "2026-11-20", "r4-crashed", ["z"])
    removed = table.collect_garbage("2026-11-20")
    assert sorted(r.rsplit("/", 1)[-1] for r in removed) == ["run=r1", "run=r4-crashed"]
    commit = table.current("2026-11-20")
    assert (commit.run_id, commit.previous_run_id) == ("r3", "r2")
    assert (tmp_path / "frames/date=2026-11-20/run=r2").exists()


def test_commit_refuses_files_of_another_run(tmp_path):
    table = IndexTable(str(tmp_path))
    other = write_frames(table, "2026-11-20", "r1", ["a"])
    with pytest.raises(PermanentError, match="not written by run r2"):
        table.commit(
            "2026-11-20", "r2", frames_files=[other], files_files=[], quarantine_files=[], counts={}
        )
