"""Per-file accounting of the index job, without Spark."""

from __future__ import annotations

from avfleet.index import job, schema
from avfleet.index.job import IndexConfig, scan_one
from tests.fleet_helpers import tiny_recording


def one_recording(tmp_path):
    """A tiny recording on disk, its bytes, and an index config over its folder."""
    _, data = tiny_recording()
    path = tmp_path / "r.mcap"
    path.write_bytes(data)
    config = IndexConfig(
        recordings_uri=str(tmp_path), date="2026-11-20", out_uri=str(tmp_path / "i")
    )
    return path, data, config


def test_memory_cap_blames_only_the_file_that_raised_the_peak(tmp_path, monkeypatch):
    path, data, config = one_recording(tmp_path)
    cap = config.worker_memory_cap_bytes
    peaks = iter([cap - 1, cap + 10, cap + 10, cap + 10])  # (before, after) for two files
    monkeypatch.setattr(job, "_peak_rss_bytes", lambda: next(peaks))
    monkeypatch.setattr(job, "_rss_bytes", lambda: 5)
    frames, first = scan_one(str(path), len(data), "2026-11-20", config)
    assert first["status"] == schema.STATUS_QUARANTINED and "over the cap" in first["reason"]
    assert frames is None
    frames, second = scan_one(str(path), len(data), "2026-11-20", config)
    assert second["status"] == schema.STATUS_INDEXED and len(frames) == second["num_frames"] > 0


def test_a_worker_that_started_big_blames_only_what_the_scan_added(tmp_path, monkeypatch):
    """The loop engine in a long-lived process (2 GB of other work) indexes a small file."""
    path, data, config = one_recording(tmp_path)
    base = 2 * 1024**3
    peaks = iter([base, base + 1000])  # the peak rose, by a kilobyte
    monkeypatch.setattr(job, "_peak_rss_bytes", lambda: next(peaks))
    monkeypatch.setattr(job, "_rss_bytes", lambda: base)
    frames, row = scan_one(str(path), len(data), "2026-11-20", config)
    assert row["status"] == schema.STATUS_INDEXED and frames is not None
    assert row["peak_rss_bytes"] == base + 1000


def test_rss_is_read_from_the_process():
    assert job._rss_bytes() > 10 * 1024**2


def test_unexpected_failures_of_a_file_are_quarantined_not_fatal(tmp_path, monkeypatch):
    path = tmp_path / "r.mcap"
    path.write_bytes(tiny_recording()[1])
    config = IndexConfig(
        recordings_uri=str(tmp_path), date="2026-11-20", out_uri=str(tmp_path / "i")
    )

    def broken(*args, **kwargs):
        raise KeyError("speed_mps")

    monkeypatch.setattr(job, "scan_recording", broken)
    frames, row = scan_one(str(path), 10, "2026-11-20", config)
    assert frames is None and row["status"] == schema.STATUS_QUARANTINED
    assert row["reason"] == "KeyError: 'speed_mps'"
