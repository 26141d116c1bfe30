"""The reader against hostile files: every failure is a RecordingError with file and offset."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from avfleet.core.errors import RecordingError
from avfleet.core.storage import ByteSource
from avfleet.fleet import corrupt
from avfleet.recording import messages
from avfleet.recording import reader as rd
from avfleet.recording.limits import ReaderLimits
from tests.fleet_helpers import TINY, tiny_recording


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def metadata_read(path, limits=None):
    limits = limits or ReaderLimits()
    with ByteSource(path) as source:
        summary = rd.read_summary(source, limits)
        for index in summary.chunk_indexes:
            rd.read_message_indexes(source, index, limits)
            if index.compression:
                rd.read_chunk(source, index, limits)
        return summary


def full_read(path, limits=None):
    with ByteSource(path) as source:
        return list(rd.iter_records(source, limits))


def test_intact_recording_reads_both_ways(tmp_path):
    _, data = tiny_recording()
    path = write(tmp_path, "ok.mcap", data)
    summary = metadata_read(path)
    assert summary.statistics.message_count == len(
        [r for r in full_read(path) if type(r).__name__ == "Message"]
    )


@pytest.mark.parametrize("reader", [metadata_read, full_read], ids=["metadata", "full"])
def test_every_truncation_is_a_recording_error(tmp_path, reader):
    _, data = tiny_recording()
    # Every cut in the first and last KiB, and a stride through the middle.
    cuts = sorted(
        set(range(0, 1024))
        | set(range(len(data) - 1024, len(data)))
        | set(range(1024, len(data), 997))
    )
    for cut in cuts:
        path = write(tmp_path, "cut.mcap", data[:cut])
        with pytest.raises(RecordingError) as info:
            reader(path)
        assert path in str(info.value)
        assert info.value.offset is None or 0 <= info.value.offset <= cut


def test_bit_flips_in_summary_are_caught_by_crc(tmp_path):
    _, data = tiny_recording()
    rng = np.random.default_rng(0)
    for _trial in range(20):
        path = write(tmp_path, "flip.mcap", corrupt.bitflip_summary(data, rng))
        with pytest.raises(RecordingError, match="summary CRC mismatch"):
            metadata_read(path)


def test_bit_flips_in_signal_chunk_are_caught(tmp_path):
    _, data = tiny_recording()
    rng = np.random.default_rng(1)
    for _ in range(10):
        path = write(tmp_path, "flip.mcap", corrupt.bitflip_signals(data, rng))
        with pytest.raises(RecordingError, match="zstd|CRC|inflates"):
            metadata_read(path)


@pytest.mark.parametrize("lying", [False, True], ids=["declared-1GiB", "declares-small"])
def test_decompression_bomb_is_refused_without_inflating(tmp_path, lying):
    plan, _ = tiny_recording()
    path = write(tmp_path, "bomb.mcap", corrupt.bomb(TINY, plan, lying=lying))
    tracemalloc.start()
    try:
        with pytest.raises(
            RecordingError, match="over the cap" if not lying else "past its declared"
        ):
            metadata_read(path)
        with pytest.raises(RecordingError):
            full_read(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"reader allocated {peak} bytes on a bomb"


def test_record_length_cap(tmp_path):
    _, data = tiny_recording()
    path = write(tmp_path, "ok.mcap", data)
    tight = ReaderLimits(max_record_bytes=4096)  # camera chunks are ~256 KiB
    with pytest.raises(RecordingError, match="exceeds the cap of 4096"):
        full_read(path, tight)


def test_summary_cap(tmp_path):
    _, data = tiny_recording()
    path = write(tmp_path, "ok.mcap", data)
    with pytest.raises(RecordingError, match="summary of .* exceeds the cap"):
        metadata_read(path, ReaderLimits(max_summary_bytes=64))


def test_not_an_mcap_file(tmp_path):
    path = write(tmp_path, "junk.mcap", b"PK\x03\x04" + bytes(200))
    with pytest.raises(RecordingError, match="bad leading magic"):
        metadata_read(path)
    with pytest.raises(RecordingError, match="bad leading magic"):
        full_read(path)


def test_fetch_message_verifies_what_it_fetched(tmp_path):
    _, data = tiny_recording()
    path = write(tmp_path, "ok.mcap", data)
    with ByteSource(path) as source:
        summary = rd.read_summary(source)
        camera = summary.channel_ids("/camera/front/image_jpeg")[0]
        index = next(c for c in summary.chunk_indexes if camera in c.message_index_offsets)
        (t0, o0), (t1, o1) = rd.read_message_indexes(source, index, ReaderLimits())[camera][:2]
        start = rd.chunk_records_offset(index)
        image = rd.fetch_message(source, start + o0, o1 - o0, channel_id=camera, log_time=t0)
        jpeg = messages.decode_image(path, None, messages.COMPRESSED_IMAGE, image)
        assert jpeg[:2] == b"\xff\xd8"  # JPEG start-of-image
        with pytest.raises(RecordingError, match="expected message on channel"):
            rd.fetch_message(source, start + o0, o1 - o0, channel_id=camera, log_time=t1)
        with pytest.raises(RecordingError):
            rd.fetch_message(source, start + o0 + 3, o1 - o0, channel_id=camera, log_time=t0)
