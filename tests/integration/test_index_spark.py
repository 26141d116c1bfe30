"""The index job on real Spark (local[2]) over a fleet with hostile recordings mixed in."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from avfleet.index.job import IndexConfig, LoopEngine, SparkEngine, run_index
from avfleet.index.table import IndexTable
from avfleet.index.verify import verify_date
from tests.integration.conftest import CORRUPTIONS, DATE, SMALL

EXPECTED_REASON = {
    "truncated": "truncated",
    "bitflip-summary": "summary CRC mismatch",
    "bitflip-signals": "zstd chunk is corrupt|chunk CRC mismatch|inflates",
    "bomb": "over the cap",
    "bomb-lying": "past its declared",
}
FRAMES_PER_RECORDING = int(SMALL.segment_s * SMALL.camera_hz)


def frames_sorted(index_uri: str):
    return (
        IndexTable(index_uri).read("frames", [DATE]).sort_values("frame_id").reset_index(drop=True)
    )


@pytest.fixture(scope="module")
def first_run(spark, corrupt_fleet_uri, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("index"))
    config = IndexConfig(recordings_uri=corrupt_fleet_uri, date=DATE, out_uri=out)
    return config, run_index(config, SparkEngine(spark))


def test_hostile_recordings_are_quarantined_with_reasons(first_run, corrupt_fleet_uri):
    config, report = first_run
    total = len(list(pathlib.Path(corrupt_fleet_uri, f"raw/date={DATE}").glob("*/*.mcap")))
    assert report.num_files == total == 18
    assert report.num_indexed + report.num_quarantined == total
    assert report.num_quarantined == sum(CORRUPTIONS.values())
    corruptions = json.loads(
        pathlib.Path(corrupt_fleet_uri, f"corruptions-{DATE}.json").read_text()
    )
    reasons = {q["recording_uri"]: q["reason"] for q in report.quarantined}
    import re

    for c in corruptions:
        assert re.search(EXPECTED_REASON[c["kind"]], reasons[c["uri"]]), (c, reasons[c["uri"]])
    assert report.num_frames == report.num_indexed * FRAMES_PER_RECORDING
    assert verify_date(config.out_uri, DATE, expect_files=total)["quarantined"] == 5
    quarantine = IndexTable(config.out_uri).read("quarantine", [DATE])
    assert set(quarantine["recording_uri"]) == {c["uri"] for c in corruptions}


def test_memory_stays_under_the_cap(first_run):
    config, report = first_run
    # A bomb inflated would take 1 GiB; the cap is 768 MiB and the workers stay far below.
    assert 0 < report.peak_worker_rss_bytes < config.worker_memory_cap_bytes


def test_reads_a_small_fraction_of_the_bytes(first_run):
    _, report = first_run
    # Signals plus each frame's recorded sha256 (~35 incompressible bytes per frame: ~1% of
    # these 3 KB test frames, ~0.03% of a real 100 KB+ camera frame); never a camera byte.
    assert report.read_fraction < 0.03


def test_rerun_gives_the_same_rows_without_duplicates(spark, first_run):
    config, report = first_run
    before = frames_sorted(config.out_uri)
    again = run_index(config, SparkEngine(spark))
    after = frames_sorted(config.out_uri)
    assert again.run_id != report.run_id
    assert after["frame_id"].is_unique
    assert before.equals(after)
    assert IndexTable(config.out_uri).current(DATE).previous_run_id == report.run_id


def test_spark_and_single_process_engines_agree(first_run, tmp_path):
    config, _ = first_run
    loop_out = str(tmp_path / "loop")
    run_index(
        IndexConfig(recordings_uri=config.recordings_uri, date=DATE, out_uri=loop_out), LoopEngine()
    )
    assert frames_sorted(loop_out).equals(frames_sorted(config.out_uri))


def test_crash_before_commit_leaves_previous_version(clean_fleet, tmp_path, monkeypatch):
    out = str(tmp_path / "index")
    config = IndexConfig(recordings_uri=clean_fleet, date=DATE, out_uri=out)
    run_index(config, LoopEngine())
    before = frames_sorted(out)

    def crash(*args, **kwargs):
        raise SystemExit("killed before commit")

    monkeypatch.setattr(IndexTable, "commit", crash)
    with pytest.raises(SystemExit):
        run_index(config, LoopEngine())
    monkeypatch.undo()
    assert frames_sorted(out).equals(before)
    runs = list(pathlib.Path(out, f"frames/date={DATE}").iterdir())
    assert len(runs) == 2  # the crashed run's parts are on disk, invisible
    run_index(config, LoopEngine())
    assert frames_sorted(out).equals(before)
    assert (
        len(list(pathlib.Path(out, f"frames/date={DATE}").iterdir())) == 2
    )  # crashed run collected


def test_killed_rerun_never_shows_half_a_version(clean_fleet, tmp_path):
    """SIGKILL a rerun at several moments: readers see the old or the new version, whole."""
    fleet = tmp_path / "fleet"
    shutil.copytree(clean_fleet, fleet)
    out = str(tmp_path / "index")
    cmd = [
        sys.executable,
        "-m",
        "avfleet",
        "index",
        "--engine",
        "loop",
        "--recordings",
        str(fleet),
        "--date",
        DATE,
        "--index",
        out,
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    old = frames_sorted(out)
    # The new version differs: one vehicle's recordings are gone.
    shutil.rmtree(fleet / f"raw/date={DATE}/vehicle=veh-002")
    for delay_s in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0):
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        time.sleep(delay_s)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        seen = frames_sorted(out)
        counts = verify_date(out, DATE)
        assert counts["frames"] == len(seen)
        assert seen.equals(old) or set(seen["vehicle"]) == {"veh-000", "veh-001"}, (
            f"half a version after {delay_s}s"
        )
    subprocess.run(cmd, check=True, capture_output=True)
    new = frames_sorted(out)
    assert set(new["vehicle"]) == {"veh-000", "veh-001"} and new["frame_id"].is_unique
    assert len(new) == len(old) * 2 // 3


def test_report_domain_counts_match_the_table(first_run):
    config, report = first_run
    frames = IndexTable(config.out_uri).read("frames", [DATE])
    from_table = frames.groupby(["time_of_day", "weather", "road_type"]).size()
    assert report.frames_per_domain == {"/".join(k): int(v) for k, v in from_table.items()}


def _raise_in_worker(error_class_name: str):
    def task(batches):
        from avfleet.core import errors

        for _ in batches:
            raise getattr(errors, error_class_name)("s3://bucket/key: storage error (ReadTimeout)")
        yield from ()

    return task


def test_transient_task_failure_maps_to_the_retried_exit_code(spark):
    from avfleet.core.errors import ExitCode, TransientError, exit_code_for
    from avfleet.index.spark import collect

    df = spark.createDataFrame([(1,)], "x long")
    with pytest.raises(TransientError) as info:
        collect(df.mapInPandas(_raise_in_worker("StorageError"), "x long"))
    assert exit_code_for(info.value) == ExitCode.TRANSIENT
    with pytest.raises(Exception) as info:  # a permanent failure stays what it was
        collect(df.mapInPandas(_raise_in_worker("PermanentError"), "x long"))
    assert not isinstance(info.value, TransientError)
