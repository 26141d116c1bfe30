"""Fetch frame bytes through the index: one ranged read per frame, verified."""

from __future__ import annotations

import io

import pandas as pd

from avfleet.core.errors import RecordingError
from avfleet.core.storage import ByteSource, StorageConfig
from avfleet.recording import reader as rd
from avfleet.recording.limits import ReaderLimits


def _check_jpeg(uri: str, offset: int, data: bytes) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        Image.open(io.BytesIO(data)).verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise RecordingError(uri, offset, f"frame payload is not a valid JPEG ({e})") from e


def fetch_frames(
    frames: pd.DataFrame, storage_config: StorageConfig, limits: ReaderLimits | None = None
) -> tuple[dict[str, bytes], int]:
    """frame_id -> JPEG bytes for index rows of one or more recordings; and bytes read.

    Frames in uncompressed chunks cost one ranged read of their message record;
    frames in compressed chunks (foreign layouts) cost a read of their chunk,
    shared by the frames in it.
    """
    limits = limits or ReaderLimits()
    out: dict[str, bytes] = {}
    bytes_read = 0
    for uri, group in frames.groupby("recording_uri", sort=True):
        with ByteSource(str(uri), storage_config) as source:
            chunks: dict[int, bytes] = {}
            for row in group.itertuples():
                if pd.notna(row.record_offset):
                    data = rd.fetch_message(
                        source,
                        int(row.record_offset),
                        int(row.record_length),
                        channel_id=int(row.channel_id),
                        log_time=int(row.log_time_ns),
                        limits=limits,
                    )
                    offset = int(row.record_offset)
                else:
                    data, offset = (
                        _from_compressed_chunk(source, row, chunks, limits),
                        int(row.chunk_offset),
                    )
                _check_jpeg(str(uri), offset, data)
                out[row.frame_id] = data
            bytes_read += source.bytes_read
    return out, bytes_read


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
