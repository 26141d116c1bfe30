"""Files from avfleet's writer read back with the mcap library's own readers."""

from __future__ import annotations

import io

from mcap.reader import make_reader

from avfleet.core.storage import ByteSource
from avfleet.recording import layout
from avfleet.recording import reader as rd
from tests.fleet_helpers import TINY, tiny_recording


def test_library_reads_what_we_write():
    plan, data = tiny_recording()
    reader = make_reader(io.BytesIO(data))
    summary = reader.get_summary()
    topics = {c.topic for c in summary.channels.values()}
    assert topics == {layout.CAMERA_TOPIC, layout.GPS_TOPIC, layout.CAN_TOPIC, layout.DIGEST_TOPIC}
    counts = {}
    for _, channel, _message in reader.iter_messages(log_time_order=True):
        counts[channel.topic] = counts.get(channel.topic, 0) + 1
    frames = int(TINY.segment_s * TINY.camera_hz)
    assert counts == {
        layout.CAMERA_TOPIC: frames,
        layout.GPS_TOPIC: int(TINY.segment_s * TINY.gps_hz),
        layout.CAN_TOPIC: int(TINY.segment_s * TINY.can_hz),
        layout.DIGEST_TOPIC: frames,  # one sha256 per camera frame
    }
    metadata = {m.name: m.metadata for m in reader.iter_metadata()}
    assert metadata[layout.RECORDING_METADATA]["recording_id"] == plan.recording_id
    # Ground truth is not in the recording.
    assert "weather" not in str(metadata) and "road_type" not in str(metadata)


def test_camera_and_signals_never_share_a_chunk(tmp_path):
    _, data = tiny_recording()
    path = tmp_path / "r.mcap"
    path.write_bytes(data)
    with ByteSource(str(path)) as source:
        summary = rd.read_summary(source)
    camera = set(summary.channel_ids(layout.CAMERA_TOPIC))
    for index in summary.chunk_indexes:
        channels = set(index.message_index_offsets)
        assert channels <= camera or not channels & camera
        assert index.compression == ("" if channels <= camera else "zstd")


def test_ranged_frame_reads_match_full_read(tmp_path):
    _, data = tiny_recording()
    path = tmp_path / "r.mcap"
    path.write_bytes(data)
    full = {
        m.log_time: m.data
        for _, c, m in make_reader(io.BytesIO(data)).iter_messages(topics=[layout.CAMERA_TOPIC])
    }
    from avfleet.index.scan import ScanConfig, scan_recording

    frames, _ = scan_recording(str(path), ScanConfig())
    with ByteSource(str(path)) as source:
        for row in frames.itertuples():
            payload = rd.fetch_message(
                source,
                row.record_offset,
                row.record_length,
                channel_id=row.channel_id,
                log_time=row.log_time_ns,
            )
            assert payload == full[row.log_time_ns]
