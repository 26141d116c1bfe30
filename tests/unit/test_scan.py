"""The metadata-only scan: few bytes, stable ids, tags that match the hidden truth."""

from __future__ import annotations

import numpy as np
import pytest

from avfleet.core.errors import RecordingError
from avfleet.fleet.generate import recording_bytes
from avfleet.fleet.oracle import OracleLabeler
from avfleet.fleet.world import FleetSpec, plan_heldout
from avfleet.index.scan import ScanConfig, scan_recording


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """One short recording per (time of day, weather, road) combination."""
    spec = FleetSpec(seed=11, segment_s=4.0)
    plans = plan_heldout(spec)
    root = tmp_path_factory.mktemp("heldout")
    paths = {}
    for p in plans:
        path = root / f"{p.recording_id}.mcap"
        path.write_bytes(recording_bytes(spec, p))
        paths[p.recording_id] = str(path)
    return spec, plans, paths


def test_tags_from_signals_match_the_truth(heldout):
    spec, plans, paths = heldout
    oracle = OracleLabeler(spec, plans)
    for plan in plans:
        frames, _ = scan_recording(paths[plan.recording_id], ScanConfig())
        label = oracle.label(plan.recording_id, 0)
        assert set(frames["weather"]) == {plan.weather}, plan.recording_id
        assert set(frames["road_type"]) == {plan.road_type}, plan.recording_id
        assert frames["time_of_day"].iloc[0] == label.time_of_day, plan.recording_id


def test_scan_reads_little_and_ids_are_stable(heldout):
    _, plans, paths = heldout
    path = paths[plans[0].recording_id]
    frames, bytes_read = scan_recording(path, ScanConfig())
    again, _ = scan_recording(path, ScanConfig())
    assert frames["frame_id"].is_unique
    assert list(frames["frame_id"]) == list(again["frame_id"])
    assert list(frames["frame_index"]) == list(range(len(frames)))
    assert np.all(np.diff(frames["log_time_ns"]) > 0)
    import os

    # 4-second files: the summary weighs more, Foxglove's protobuf descriptors (~1.7 KB) included.
    assert bytes_read < 0.05 * os.path.getsize(path) + 2048


def test_recording_without_camera_is_an_error(tmp_path):
    from avfleet.recording.writer import ChunkedWriter

    with open(tmp_path / "nocam.mcap", "wb") as f:
        w = ChunkedWriter(f, {"signals": ("zstd", 1024)})
        ch = w.register_channel("/gps/fix", "json", 0, "signals")
        w.add_message(ch, 1, b"{}")
        w.finish()
    with pytest.raises(RecordingError, match="no channel on camera topic"):
        scan_recording(str(tmp_path / "nocam.mcap"), ScanConfig())
