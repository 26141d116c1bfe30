"""Fetch frame bytes through the index: one ranged read per frame, verified.

Verified twice: the bytes must be the message the index points at (channel
and log time), and, where the recording carries a digest of each frame
(layout.DIGEST_TOPIC, indexed as payload_sha256), they must be the bytes that
were recorded. A JPEG whose pixels changed after recording still parses; only
the digest catches it.
"""

from __future__ import annotations

import hashlib
import io

import pandas as pd

from avfleet.core.errors import RecordingError
from avfleet.core.storage import ByteSource, StorageConfig
from avfleet.recording import messages
from avfleet.recording import reader as rd
from avfleet.recording.limits import ReaderLimits


def _check_jpeg(uri: str, offset: int, data: bytes) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        Image.open(io.BytesIO(data)).verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise RecordingError(uri, offset, f"frame payload is not a valid JPEG ({e})") from e


def _check_digest(uri: str, offset: int, data: bytes, recorded: object) -> None:
    if isinstance(recorded, str) and hashlib.sha256(data).hexdigest() != recorded:
        raise RecordingError(
            uri, offset, "frame payload changed since recording (sha256 differs from its digest)"
        )


def fetch_frames(
    frames: pd.DataFrame,
    storage_config: StorageConfig,
    limits: ReaderLimits | None = None,
    rejected: list[dict] | None = None,
) -> tuple[dict[str, bytes], int]:
    """frame_id -> JPEG bytes for index rows of one or more recordings; and bytes read.

    Frames in uncompressed chunks cost one ranged read of their message record;
    frames in compressed chunks (foreign layouts) cost a read of their chunk,
    shared by the frames in it. A frame that fails a check raises RecordingError;
    with `rejected`, it is appended there instead ({frame_id, recording_uri,
    offset, reason}) and left out, and the other frames proceed.
    """
    limits = limits or ReaderLimits()
    out: dict[str, bytes] = {}
    bytes_read = 0
    for uri, group in frames.groupby("recording_uri", sort=True):
        with ByteSource(str(uri), storage_config) as source:
            chunks: dict[int, bytes] = {}
            for row in group.itertuples():
                try:
                    out[row.frame_id] = _fetch_one(source, str(uri), row, chunks, limits)
                except RecordingError as e:
                    if rejected is None:
                        raise
                    rejected.append(
                        {
                            "frame_id": row.frame_id,
                            "recording_uri": str(uri),
                            "offset": e.offset,
                            "reason": e.problem,
                        }
                    )
            bytes_read += source.bytes_read
    return out, bytes_read


def _fetch_one(
    source: ByteSource,
    uri: str,
    row,  # noqa: ANN001 - an index row (itertuples)
    chunks: dict[int, bytes],
    limits: ReaderLimits,
) -> bytes:
    """One frame's bytes, checked: the indexed message, a JPEG, and the recorded bytes."""
    if pd.notna(row.record_offset):
        offset = int(row.record_offset)
        data = rd.fetch_message(
            source,
            offset,
            int(row.record_length),
            channel_id=int(row.channel_id),
            log_time=int(row.log_time_ns),
            limits=limits,
        )
    else:
        offset = int(row.chunk_offset)
        data = _from_compressed_chunk(source, row, chunks, limits)
    data = _jpeg(source, row, offset, data)
    _check_jpeg(uri, offset, data)
    _check_digest(uri, offset, data, getattr(row, "payload_sha256", None))
    return data


def _jpeg(source: ByteSource, row, offset: int, data: bytes) -> bytes:  # noqa: ANN001
    """The JPEG inside a fetched camera message: its indexed range, or decoded by its schema.

    Indexes written before the camera had a schema have no camera_schema
    column: their messages are the JPEG.
    """
    payload_offset = getattr(row, "payload_offset", None)
    if pd.notna(payload_offset) and pd.notna(row.record_offset):
        start = int(payload_offset) - int(row.record_offset) - rd.MESSAGE_PREFIX_BYTES
        end = start + int(row.payload_length)
        if start < 0 or end > len(data):
            raise RecordingError(
                source.uri, offset, "indexed JPEG range lies outside its camera message"
            )
        return data[start:end]
    schema = getattr(row, "camera_schema", None)
    return messages.decode_image(
        source.uri, offset, schema if isinstance(schema, str) else "", data
    )


def _from_compressed_chunk(
    source: ByteSource, row, chunks: dict[int, bytes], limits: ReaderLimits
) -> bytes:
    from mcap import records as mr

    key = int(row.chunk_offset)
    if key not in chunks:
        chunk = rd.read_typed(source, key, int(row.chunk_length), mr.Chunk, limits)
        chunks[key] = rd.decompress_chunk(source.uri, key, chunk, limits)
    records = chunks[key]
    for message in rd.iter_chunk_messages(
        source.uri, key, records[int(row.message_offset) :], limits
    ):
        if message.channel_id != int(row.channel_id) or message.log_time != int(row.log_time_ns):
            raise RecordingError(
                source.uri,
                key,
                f"chunk has no message for frame {row.frame_id} at its indexed offset",
            )
        return message.data
    raise RecordingError(source.uri, key, f"chunk ends before frame {row.frame_id}")
