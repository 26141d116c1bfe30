"""Writes MCAP files with a chunking policy per channel group.

mcap's own Writer puts every channel into the same chunks with one
compression. avfleet needs camera frames in uncompressed chunks (ranged
reads of single frames) and signals in separate compressed chunks (cheap
metadata scans), so this writer keeps one open chunk per group. It uses the
library's record classes for every byte it writes, and the files read back
with the library's own readers (see tests/unit/test_recording_writer.py).
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from typing import BinaryIO

from mcap import records as mr
from mcap.data_stream import RecordBuilder
from mcap.opcode import Opcode

from avfleet.recording.reader import MAGIC


@dataclasses.dataclass
class _OpenChunk:
    compression: str
    target_bytes: int
    builder: RecordBuilder = dataclasses.field(default_factory=RecordBuilder)
    indexes: dict[int, list[tuple[int, int]]] = dataclasses.field(default_factory=dict)
    start_time: int = 0
    end_time: int = 0
    num_messages: int = 0


class ChunkedWriter:
    """Chunk groups: name -> (compression "", "zstd" or "lz4", target chunk size in bytes).

    `zstd_level` is the level of every zstd chunk (zstd's own default is 3).
    """

    def __init__(
        self,
        stream: BinaryIO,
        groups: dict[str, tuple[str, int]],
        *,
        profile: str = "",
        library: str = "avfleet",
        zstd_level: int = 3,
    ) -> None:
        self._out = stream
        self._zstd_level = zstd_level
        self._pos = 0
        self._data_crc = 0
        self._groups = {
            name: _OpenChunk(compression=c, target_bytes=n) for name, (c, n) in groups.items()
        }
        self._channel_group: dict[int, str] = {}
        self._schemas: dict[int, mr.Schema] = {}
        self._channels: dict[int, mr.Channel] = {}
        self._chunk_indexes: list[mr.ChunkIndex] = []
        self._metadata_indexes: list[mr.MetadataIndex] = []
        self._message_counts: dict[int, int] = {}
        self._start_time: int | None = None
        self._end_time = 0
        self._emit(MAGIC)
        self._emit_record(mr.Header(profile=profile, library=library))

    def _emit(self, data: bytes) -> None:
        self._out.write(data)
        self._data_crc = zlib.crc32(data, self._data_crc)
        self._pos += len(data)

    def _emit_record(self, record: mr.McapRecord) -> int:
        builder = RecordBuilder()
        record.write(builder)
        offset = self._pos
        self._emit(builder.end())
        return offset

    def register_schema(self, name: str, encoding: str, data: bytes) -> int:
        schema_id = len(self._schemas) + 1
        schema = mr.Schema(id=schema_id, name=name, encoding=encoding, data=data)
        self._schemas[schema_id] = schema
        self._emit_record(schema)
        return schema_id

    def register_channel(
        self,
        topic: str,
        message_encoding: str,
        schema_id: int,
        group: str,
        metadata: dict[str, str] | None = None,
    ) -> int:
        if group not in self._groups:
            raise ValueError(f"unknown chunk group {group!r}")
        channel_id = len(self._channels) + 1
        channel = mr.Channel(
            id=channel_id,
            topic=topic,
            message_encoding=message_encoding,
            metadata=dict(metadata or {}),
            schema_id=schema_id,
        )
        self._channels[channel_id] = channel
        self._channel_group[channel_id] = group
        self._message_counts[channel_id] = 0
        self._emit_record(channel)
        return channel_id

    def add_metadata(self, name: str, metadata: dict[str, str]) -> None:
        builder = RecordBuilder()
        mr.Metadata(name=name, metadata=metadata).write(builder)
        data = builder.end()
        offset = self._pos
        self._emit(data)
        self._metadata_indexes.append(mr.MetadataIndex(offset=offset, length=len(data), name=name))

    def add_message(
        self,
        channel_id: int,
        log_time: int,
        data: bytes,
        *,
        publish_time: int | None = None,
        sequence: int = 0,
    ) -> None:
        chunk = self._groups[self._channel_group[channel_id]]
        if chunk.num_messages == 0:
            chunk.start_time = chunk.end_time = log_time
        chunk.start_time = min(chunk.start_time, log_time)
        chunk.end_time = max(chunk.end_time, log_time)
        chunk.indexes.setdefault(channel_id, []).append((log_time, chunk.builder.count))
        message = mr.Message(
            channel_id=channel_id,
            sequence=sequence,
            log_time=log_time,
            publish_time=log_time if publish_time is None else publish_time,
            data=data,
        )
        message.write(chunk.builder)
        chunk.num_messages += 1
        self._message_counts[channel_id] += 1
        self._start_time = log_time if self._start_time is None else min(self._start_time, log_time)
        self._end_time = max(self._end_time, log_time)
        if chunk.builder.count >= chunk.target_bytes:
            self._close_chunk(chunk)

    def _close_chunk(self, chunk: _OpenChunk) -> None:
        if chunk.num_messages == 0:
            return
        records = chunk.builder.end()
        payload, uncompressed_size = self._compress(chunk.compression, records)
        chunk_offset = self._emit_record(
            mr.Chunk(
                message_start_time=chunk.start_time,
                message_end_time=chunk.end_time,
                uncompressed_size=uncompressed_size,
                uncompressed_crc=zlib.crc32(records),
                compression=chunk.compression,
                data=payload,
            )
        )
        chunk_length = self._pos - chunk_offset
        index_offsets: dict[int, int] = {}
        for channel_id, entries in sorted(chunk.indexes.items()):
            index_offsets[channel_id] = self._emit_record(
                mr.MessageIndex(channel_id=channel_id, records=entries)
            )
        self._chunk_indexes.append(
            mr.ChunkIndex(
                message_start_time=chunk.start_time,
                message_end_time=chunk.end_time,
                chunk_start_offset=chunk_offset,
                chunk_length=chunk_length,
                message_index_offsets=index_offsets,
                message_index_length=self._pos - chunk_offset - chunk_length,
                compression=chunk.compression,
                compressed_size=len(payload),
                uncompressed_size=uncompressed_size,
            )
        )
        chunk.builder = RecordBuilder()
        chunk.indexes = {}
        chunk.num_messages = 0

    def _compress(self, compression: str, records: bytes) -> tuple[bytes, int]:
        """(chunk payload, declared uncompressed size) of a chunk's records."""
        if compression == "zstd":
            import zstandard

            return zstandard.ZstdCompressor(level=self._zstd_level).compress(records), len(records)
        if compression == "lz4":
            import lz4.frame

            return lz4.frame.compress(records), len(records)
        return records, len(records)

    def finish(self) -> None:
        for chunk in self._groups.values():
            self._close_chunk(chunk)
        self._emit_record(mr.DataEnd(data_section_crc=self._data_crc))
        summary_start = self._pos
        summary = io.BytesIO()
        offsets: list[mr.SummaryOffset] = []

        def group(opcode: Opcode, records: list[mr.McapRecord]) -> None:
            if not records:
                return
            start = summary_start + summary.tell()
            builder = RecordBuilder()
            for record in records:
                record.write(builder)
            summary.write(builder.end())
            offsets.append(
                mr.SummaryOffset(
                    group_opcode=opcode,
                    group_start=start,
                    group_length=summary_start + summary.tell() - start,
                )
            )

        group(Opcode.SCHEMA, list(self._schemas.values()))
        group(Opcode.CHANNEL, list(self._channels.values()))
        stats = mr.Statistics(
            message_count=sum(self._message_counts.values()),
            schema_count=len(self._schemas),
            channel_count=len(self._channels),
            attachment_count=0,
            metadata_count=len(self._metadata_indexes),
            chunk_count=len(self._chunk_indexes),
            message_start_time=self._start_time or 0,
            message_end_time=self._end_time,
            channel_message_counts=dict(self._message_counts),
        )
        group(Opcode.STATISTICS, [stats])
        group(Opcode.CHUNK_INDEX, list(self._chunk_indexes))
        group(Opcode.METADATA_INDEX, list(self._metadata_indexes))
        summary_offset_start = summary_start + summary.tell()
        builder = RecordBuilder()
        for offset in offsets:
            offset.write(builder)
        summary.write(builder.end())
        summary_bytes = summary.getvalue()
        footer_prefix = struct.pack("<BQQQ", Opcode.FOOTER, 20, summary_start, summary_offset_start)
        summary_crc = zlib.crc32(footer_prefix, zlib.crc32(summary_bytes))
        self._out.write(summary_bytes + footer_prefix + struct.pack("<I", summary_crc) + MAGIC)
        self._out.flush()
