"""Recordings speak Foxglove's schemas (format 2), and format-1 recordings still index and fetch."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory
from PIL import Image

from avfleet.core.errors import RecordingError
from avfleet.core.storage import StorageConfig
from avfleet.dataset.fetch import fetch_frames
from avfleet.fleet.generate import generate_fleet, recording_bytes
from avfleet.fleet.world import plan_fleet
from avfleet.index.scan import ScanConfig, scan_recording
from avfleet.recording import layout, messages
from tests.fleet_helpers import TINY


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """One recording as `avfleet fleet generate` writes it."""
    root = tmp_path_factory.mktemp("fleet")
    uris = generate_fleet(TINY, str(root), workers=1, show_progress=False)
    return uris[0]


def test_mcap_and_protobuf_decode_an_image_and_a_fix(generated):
    with open(generated, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        first = {}
        for schema, channel, _message, decoded in reader.iter_decoded_messages(
            topics=[layout.CAMERA_TOPIC, layout.GPS_TOPIC]
        ):
            first.setdefault(channel.topic, (schema.name, decoded))
        metadata = {m.name: m.metadata for m in reader.iter_metadata()}
    name, image = first[layout.CAMERA_TOPIC]
    assert name == "foxglove.CompressedImage" and type(image).__name__ == "CompressedImage"
    assert image.format == "jpeg"
    assert Image.open(io.BytesIO(image.data)).size == (TINY.width, TINY.height)
    name, fix = first[layout.GPS_TOPIC]
    assert name == "foxglove.LocationFix" and type(fix).__name__ == "LocationFix"
    assert -90 <= fix.latitude <= 90 and -180 <= fix.longitude <= 180
    assert fix.HasField("velocity")
    assert metadata[layout.RECORDING_METADATA]["format_version"] == str(layout.FORMAT_VERSION)


def test_index_knows_each_jpegs_file_range(generated):
    frames, _ = scan_recording(generated, ScanConfig())
    assert set(frames["camera_schema"]) == {messages.COMPRESSED_IMAGE}
    with open(generated, "rb") as f:
        data = f.read()
    decoded = {
        m.log_time: d.data
        for _, _, m, d in make_reader(
            io.BytesIO(data), decoder_factories=[DecoderFactory()]
        ).iter_decoded_messages(topics=[layout.CAMERA_TOPIC])
    }
    for row in frames.itertuples():
        jpeg = data[row.payload_offset : row.payload_offset + row.payload_length]
        assert jpeg == decoded[row.log_time_ns]
        assert hashlib.sha256(jpeg).hexdigest() == row.payload_sha256
        # The JPEG lies inside the one message record a fetch reads.
        assert row.record_offset < row.payload_offset
        assert row.payload_offset + row.payload_length <= row.record_offset + row.record_length


def test_gps_speed_comes_back_from_the_enu_velocity(generated):
    frames, _ = scan_recording(generated, ScanConfig())
    assert frames["gps_speed_mps"].notna().all()
    assert (frames["gps_speed_mps"] >= 0).all()
    assert abs(frames["gps_speed_mps"].mean() - frames["can_speed_mps"].mean()) < 1.0


def test_format_1_recordings_index_and_fetch_the_same_frames(tmp_path):
    plan = plan_fleet(TINY)[0]
    paths = {}
    for version in layout.FORMATS:
        path = tmp_path / f"v{version}.mcap"
        path.write_bytes(recording_bytes(TINY, plan, format_version=version))
        paths[version] = str(path)
    old, _ = scan_recording(paths[1], ScanConfig())
    new, _ = scan_recording(paths[2], ScanConfig())
    assert set(old["camera_schema"]) == {""}
    assert list(old["frame_id"]) == list(new["frame_id"])
    for column in ("time_of_day", "weather", "road_type", "payload_sha256", "payload_length"):
        assert list(old[column]) == list(new[column]), column
    assert (old["lat_deg"] - new["lat_deg"]).abs().max() < 1e-6
    assert (old["gps_speed_mps"] - new["gps_speed_mps"]).abs().max() < 1e-6
    got_old, _ = fetch_frames(old, StorageConfig())
    got_new, _ = fetch_frames(new, StorageConfig())
    assert got_old == got_new and len(got_new) == len(new)


def test_an_index_from_before_the_payload_columns_still_fetches(generated):
    frames, _ = scan_recording(generated, ScanConfig())
    older = frames.drop(columns=["payload_offset", "payload_length"])
    assert fetch_frames(older, StorageConfig())[0] == fetch_frames(frames, StorageConfig())[0]


def test_a_lying_digest_offset_is_caught(tmp_path, generated):
    frames, _ = scan_recording(generated, ScanConfig())
    shifted = frames.head(3).copy()
    shifted["payload_offset"] += 1
    rejected: list[dict] = []
    got, _ = fetch_frames(shifted, StorageConfig(), rejected=rejected)
    assert not got and len(rejected) == 3
    outside = frames.head(1).copy()
    outside["payload_length"] = outside["record_length"] + 1
    with pytest.raises(RecordingError, match="outside its camera message"):
        fetch_frames(outside, StorageConfig())


def test_an_unknown_camera_schema_is_refused_by_name(tmp_path):
    from avfleet.recording.writer import ChunkedWriter

    out = io.BytesIO()
    writer = ChunkedWriter(out, {"camera": ("", 1 << 16)})
    schema = writer.register_schema("sensor_msgs/msg/CompressedImage", "ros2msg", b"uint8[] data")
    camera = writer.register_channel(layout.CAMERA_TOPIC, "cdr", schema, "camera")
    writer.add_message(camera, 1, b"\x00\x01")
    writer.finish()
    path = tmp_path / "ros.mcap"
    path.write_bytes(out.getvalue())
    with pytest.raises(RecordingError, match="sensor_msgs/msg/CompressedImage"):
        scan_recording(str(path), ScanConfig())


def test_a_digest_with_bad_offsets_is_a_recording_error():
    bad = json.dumps({"sha256": "0" * 64, "data_offset": -1, "data_suffix": 5}).encode()
    with pytest.raises(RecordingError, match="byte counts"):
        messages.decode_digest("r.mcap", 0, bad)
    assert messages.decode_digest("r.mcap", 0, json.dumps({"sha256": "a" * 64}).encode()) == (
        "a" * 64,
        None,
        None,
    )


def test_every_json_schema_field_is_documented():
    for schema in (layout.CAN_SCHEMA, layout.DIGEST_SCHEMA):
        assert schema["title"].startswith("avfleet.")
        for name, field in schema["properties"].items():
            assert field.get("description"), name
