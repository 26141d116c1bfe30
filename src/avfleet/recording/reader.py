"""A hardened MCAP reader on top of the `mcap` library's record parsers.

The library's StreamReader trusts the file: it raises bare `struct.error` on
many truncations, parses a record's fields past the record's own end, and
inflates chunks to whatever size they declare. Here every record is framed
first (opcode + length, checked against `ReaderLimits`), its body is read as
one bounded slice, and only then handed to the library's parser, which cannot
read past the slice. Chunks are inflated by us, with a cap. Any failure
surfaces as `RecordingError` naming the file and the byte offset.

Two ways in:
* `iter_records`: a full streamed read (what the conformance corpus checks);
  chunks are expanded into their records.
* `read_summary` and friends: metadata-only reads through the footer, summary
  section, message indexes and metadata index, never touching payloads.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from collections.abc import Iterator
from typing import TypeVar

from mcap import records as mr
from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode

from avfleet.core.errors import RecordingError
from avfleet.core.storage import ByteSource
from avfleet.recording.limits import ReaderLimits

MAGIC = b"\x89MCAP0\r\n"
RECORD_HEADER_BYTES = 9  # opcode u8 + length u64
FOOTER_BODY_BYTES = 20  # summary_start u64, summary_offset_start u64, summary_crc u32
MESSAGE_HEADER_BYTES = 22  # channel_id u16, sequence u32, log_time u64, publish_time u64
MESSAGE_PREFIX_BYTES = (
    RECORD_HEADER_BYTES + MESSAGE_HEADER_BYTES
)  # a Message record's data starts here
_READ_STEP = 1 << 20

_PARSERS = {
    Opcode.HEADER: mr.Header.read,
    Opcode.FOOTER: mr.Footer.read,
    Opcode.SCHEMA: mr.Schema.read,
    Opcode.CHANNEL: mr.Channel.read,
    Opcode.CHUNK: mr.Chunk.read,
    Opcode.MESSAGE_INDEX: mr.MessageIndex.read,
    Opcode.CHUNK_INDEX: mr.ChunkIndex.read,
    Opcode.ATTACHMENT: mr.Attachment.read,
    Opcode.ATTACHMENT_INDEX: mr.AttachmentIndex.read,
    Opcode.STATISTICS: mr.Statistics.read,
    Opcode.METADATA: mr.Metadata.read,
    Opcode.METADATA_INDEX: mr.MetadataIndex.read,
    Opcode.SUMMARY_OFFSET: mr.SummaryOffset.read,
    Opcode.DATA_END: mr.DataEnd.read,
}

R = TypeVar("R", bound=mr.McapRecord)


def parse_record(uri: str, offset: int, opcode: int, body: bytes) -> mr.McapRecord | None:
    """Parse one record body with the library's parser; None for unknown opcodes (skipped)."""
    if opcode == Opcode.MESSAGE:
        parser = lambda stream: mr.Message.read(stream, len(body))  # noqa: E731
    else:
        parser = _PARSERS.get(opcode)  # type: ignore[assignment]
        if parser is None:
            return None
    stream = ReadDataStream(io.BytesIO(body))
    try:
        record = parser(stream)
    except (
        Exception
    ) as e:  # the parser's failures are struct.error, EndOfFile, UnicodeDecodeError...
        name = _opcode_name(opcode)
        raise RecordingError(
            uri, offset, f"malformed {name} record ({type(e).__name__}: {e})"
        ) from e
    if stream.count > len(
        body
    ):  # pragma: no cover - BytesIO cannot over-read; kept as an invariant
        raise RecordingError(uri, offset, f"{_opcode_name(opcode)} fields overrun the record")
    return record


def _opcode_name(opcode: int) -> str:
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"opcode 0x{opcode:02x}"


def iter_framed(
    uri: str, data: bytes, base_offset: int, limits: ReaderLimits
) -> Iterator[tuple[int, int, bytes]]:
    """(absolute offset, opcode, body) for each record in an in-memory region."""
    pos = 0
    while pos < len(data):
        if len(data) - pos < RECORD_HEADER_BYTES:
            raise RecordingError(uri, base_offset + pos, "truncated record header")
        opcode, length = struct.unpack_from("<BQ", data, pos)
        if length > limits.max_record_bytes:
            raise RecordingError(
                uri,
                base_offset + pos,
                f"{_opcode_name(opcode)} record of {length} bytes exceeds the cap of {limits.max_record_bytes}",
            )
        end = pos + RECORD_HEADER_BYTES + length
        if end > len(data):
            raise RecordingError(
                uri,
                base_offset + pos,
                f"{_opcode_name(opcode)} record runs {end - len(data)} bytes past the end of its region",
            )
        yield base_offset + pos, opcode, data[pos + RECORD_HEADER_BYTES : end]
        pos = end


def decompress_chunk(uri: str, offset: int, chunk: mr.Chunk, limits: ReaderLimits) -> bytes:
    """Inflate a chunk's records, refusing to go past the declared size or the cap."""
    declared = chunk.uncompressed_size
    if declared > limits.max_chunk_decompressed_bytes:
        raise RecordingError(
            uri,
            offset,
            f"chunk declares {declared} decompressed bytes, over the cap of {limits.max_chunk_decompressed_bytes}",
        )
    if chunk.compression == "":
        data = chunk.data
    elif chunk.compression == "zstd":
        data = _inflate_zstd(uri, offset, chunk.data, declared)
    elif chunk.compression == "lz4":
        data = _inflate_lz4(uri, offset, chunk.data, declared)
    else:
        raise RecordingError(uri, offset, f"unsupported chunk compression {chunk.compression!r}")
    if len(data) != declared:
        raise RecordingError(
            uri, offset, f"chunk inflates to {len(data)} bytes but declares {declared}"
        )
    if chunk.uncompressed_crc != 0 and zlib.crc32(data) != chunk.uncompressed_crc:
        raise RecordingError(uri, offset, "chunk CRC mismatch (corrupt data)")
    return data


def _inflate_zstd(uri: str, offset: int, payload: bytes, declared: int) -> bytes:
    import zstandard

    out = bytearray()
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(payload))
        while True:
            piece = reader.read(_READ_STEP)
            if not piece:
                break
            out += piece
            if len(out) > declared:
                raise RecordingError(
                    uri,
                    offset,
                    f"chunk inflates past its declared {declared} bytes (decompression bomb?)",
                )
    except zstandard.ZstdError as e:
        raise RecordingError(uri, offset, f"zstd chunk is corrupt ({e})") from e
    return bytes(out)


def _inflate_lz4(uri: str, offset: int, payload: bytes, declared: int) -> bytes:
    import lz4.frame

    decompressor = lz4.frame.LZ4FrameDecompressor()
    try:
        data = decompressor.decompress(payload, max_length=declared + 1)
    except RuntimeError as e:
        raise RecordingError(uri, offset, f"lz4 chunk is corrupt ({e})") from e
    if len(data) > declared:
        raise RecordingError(
            uri, offset, f"chunk inflates past its declared {declared} bytes (decompression bomb?)"
        )
    return data


# --- full streamed read -------------------------------------------------------------------------


def iter_records(source: ByteSource, limits: ReaderLimits | None = None) -> Iterator[mr.McapRecord]:
    """Every record in file order, chunks expanded into their records, then the footer.

    Stops after the Footer and checks the closing magic; anything missing is a
    `RecordingError` with the offset where the file ran out.
    """
    limits = limits or ReaderLimits()
    uri = source.uri
    _check_magic(source, 0, "leading")
    pos = len(MAGIC)
    inflated_total = 0
    while True:
        header = source.read_at(pos, RECORD_HEADER_BYTES)
        if len(header) < RECORD_HEADER_BYTES:
            raise RecordingError(uri, pos, "truncated: file ends before the footer")
        opcode, length = struct.unpack("<BQ", header)
        if length > limits.max_record_bytes:
            raise RecordingError(
                uri,
                pos,
                f"{_opcode_name(opcode)} record of {length} bytes exceeds the cap of {limits.max_record_bytes}",
            )
        body = source.read_at(pos + RECORD_HEADER_BYTES, length)
        if len(body) < length:
            raise RecordingError(
                uri,
                pos,
                f"truncated {_opcode_name(opcode)} record: {len(body)} of {length} bytes present",
            )
        record = parse_record(uri, pos, opcode, body)
        if isinstance(record, mr.Chunk):
            inflated_total += record.uncompressed_size
            if inflated_total > limits.max_total_decompressed_bytes:
                raise RecordingError(
                    uri,
                    pos,
                    f"file inflates to more than {limits.max_total_decompressed_bytes} bytes",
                )
            yield from _chunk_records(uri, pos, record, limits)
        elif record is not None:
            yield record
        pos += RECORD_HEADER_BYTES + length
        if isinstance(record, mr.Footer):
            _check_magic(source, pos, "trailing")
            return


def _chunk_records(
    uri: str, offset: int, chunk: mr.Chunk, limits: ReaderLimits
) -> Iterator[mr.McapRecord]:
    data = decompress_chunk(uri, offset, chunk, limits)
    # Inner offsets are reported as chunk offset + position in the inflated records.
    for inner_offset, opcode, body in iter_framed(uri, data, offset, limits):
        if opcode not in (Opcode.SCHEMA, Opcode.CHANNEL, Opcode.MESSAGE):
            continue  # the spec allows only these inside chunks; others are skipped
        record = parse_record(uri, inner_offset, opcode, body)
        if record is not None:
            yield record


def _check_magic(source: ByteSource, offset: int, which: str) -> None:
    magic = source.read_at(offset, len(MAGIC))
    if magic != MAGIC:
        problem = (
            "truncated: file ends before the closing magic"
            if len(magic) < len(MAGIC)
            else f"bad {which} magic"
        )
        raise RecordingError(source.uri, offset, problem)


# --- metadata-only reads ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RecordingSummary:
    """What the summary section says about a file, read without touching the data section."""

    size_bytes: int
    schemas: dict[int, mr.Schema]
    channels: dict[int, mr.Channel]
    statistics: mr.Statistics | None
    chunk_indexes: list[mr.ChunkIndex]
    metadata_indexes: list[mr.MetadataIndex]
    attachment_indexes: list[mr.AttachmentIndex]

    def channel_ids(self, topic: str) -> list[int]:
        return sorted(cid for cid, ch in self.channels.items() if ch.topic == topic)


def read_summary(source: ByteSource, limits: ReaderLimits | None = None) -> RecordingSummary:
    """Read the footer and summary section, checking magic, bounds and the summary CRC."""
    limits = limits or ReaderLimits()
    uri, size = source.uri, source.size
    tail_len = RECORD_HEADER_BYTES + FOOTER_BODY_BYTES + len(MAGIC)
    if size < len(MAGIC) + tail_len:
        raise RecordingError(uri, 0, f"truncated: {size} bytes is too short for an MCAP file")
    _check_magic(source, 0, "leading")
    footer_offset = size - tail_len
    tail = source.read_at(footer_offset, tail_len)
    if tail[-len(MAGIC) :] != MAGIC:
        raise RecordingError(uri, size - len(MAGIC), "truncated or corrupt: no closing magic")
    opcode, length = struct.unpack_from("<BQ", tail, 0)
    if opcode != Opcode.FOOTER or length != FOOTER_BODY_BYTES:
        raise RecordingError(uri, footer_offset, "no footer record before the closing magic")
    footer = parse_record(
        uri,
        footer_offset,
        opcode,
        tail[RECORD_HEADER_BYTES : RECORD_HEADER_BYTES + FOOTER_BODY_BYTES],
    )
    assert isinstance(footer, mr.Footer)
    if footer.summary_start == 0:
        raise RecordingError(
            uri, footer_offset, "no summary section: a metadata-only read needs one"
        )
    if not len(MAGIC) <= footer.summary_start <= footer_offset:
        raise RecordingError(
            uri,
            footer_offset,
            f"footer points the summary at {footer.summary_start}, outside the file",
        )
    summary_len = footer_offset - footer.summary_start
    if summary_len > limits.max_summary_bytes:
        raise RecordingError(
            uri,
            footer.summary_start,
            f"summary of {summary_len} bytes exceeds the cap of {limits.max_summary_bytes}",
        )
    summary = source.read_at(footer.summary_start, summary_len)
    if footer.summary_crc != 0:
        # The CRC covers the summary and the footer up to (not including) the CRC field.
        crc = zlib.crc32(tail[: RECORD_HEADER_BYTES + 16], zlib.crc32(summary))
        if crc != footer.summary_crc:
            raise RecordingError(
                uri, footer.summary_start, "summary CRC mismatch (corrupt summary)"
            )

    schemas: dict[int, mr.Schema] = {}
    channels: dict[int, mr.Channel] = {}
    statistics = None
    chunk_indexes: list[mr.ChunkIndex] = []
    metadata_indexes: list[mr.MetadataIndex] = []
    attachment_indexes: list[mr.AttachmentIndex] = []
    for offset, opcode, body in iter_framed(uri, summary, footer.summary_start, limits):
        record = parse_record(uri, offset, opcode, body)
        if isinstance(record, mr.Schema):
            schemas[record.id] = record
        elif isinstance(record, mr.Channel):
            channels[record.id] = record
        elif isinstance(record, mr.Statistics):
            statistics = record
        elif isinstance(record, mr.ChunkIndex):
            _check_chunk_index(uri, offset, record, footer.summary_start)
            chunk_indexes.append(record)
        elif isinstance(record, mr.MetadataIndex):
            metadata_indexes.append(record)
        elif isinstance(record, mr.AttachmentIndex):
            attachment_indexes.append(record)
    return RecordingSummary(
        size, schemas, channels, statistics, chunk_indexes, metadata_indexes, attachment_indexes
    )


def _check_chunk_index(uri: str, offset: int, index: mr.ChunkIndex, data_end: int) -> None:
    chunk_end = index.chunk_start_offset + index.chunk_length
    if index.chunk_start_offset < len(MAGIC) or chunk_end + index.message_index_length > data_end:
        raise RecordingError(
            uri,
            offset,
            f"chunk index points outside the data section (chunk at {index.chunk_start_offset})",
        )


def read_typed(
    source: ByteSource, offset: int, length: int, kind: type[R], limits: ReaderLimits
) -> R:
    """Read exactly one record of `kind` at [offset, offset + length) with a ranged read."""
    if length > limits.max_record_bytes + RECORD_HEADER_BYTES:
        raise RecordingError(source.uri, offset, f"record of {length} bytes exceeds the cap")
    data = source.read_at(offset, length)
    if len(data) < length:
        raise RecordingError(source.uri, offset, "truncated record")
    framed = list(iter_framed(source.uri, data, offset, limits))
    if len(framed) != 1:
        raise RecordingError(
            source.uri, offset, f"expected one {kind.__name__} record, found {len(framed)}"
        )
    record = parse_record(source.uri, offset, framed[0][1], framed[0][2])
    if not isinstance(record, kind):
        raise RecordingError(
            source.uri, offset, f"expected a {kind.__name__} record, found {type(record).__name__}"
        )
    return record


def read_message_indexes(
    source: ByteSource, index: mr.ChunkIndex, limits: ReaderLimits
) -> dict[int, list[tuple[int, int]]]:
    """Per channel, (log_time, offset in the inflated chunk) of every message in one chunk.

    Offsets are checked against the chunk's size and times against its span, so a
    corrupt index fails here rather than sending a later ranged read astray.
    """
    start = index.chunk_start_offset + index.chunk_length
    if index.message_index_length > limits.max_record_bytes:
        raise RecordingError(source.uri, start, "message index region exceeds the record cap")
    data = source.read_at(start, index.message_index_length)
    if len(data) < index.message_index_length:
        raise RecordingError(source.uri, start, "truncated message index")
    out: dict[int, list[tuple[int, int]]] = {}
    for offset, opcode, body in iter_framed(source.uri, data, start, limits):
        record = parse_record(source.uri, offset, opcode, body)
        if not isinstance(record, mr.MessageIndex):
            continue
        for log_time, msg_offset in record.records:
            if (
                msg_offset >= index.uncompressed_size
                or not index.message_start_time <= log_time <= index.message_end_time
            ):
                raise RecordingError(
                    source.uri,
                    offset,
                    f"message index entry ({log_time}, {msg_offset}) lies outside its chunk",
                )
        out[record.channel_id] = record.records
    return out


def read_chunk(source: ByteSource, index: mr.ChunkIndex, limits: ReaderLimits) -> bytes:
    """The inflated records of one chunk (ranged read of the chunk, capped inflate)."""
    chunk = read_typed(source, index.chunk_start_offset, index.chunk_length, mr.Chunk, limits)
    return decompress_chunk(source.uri, index.chunk_start_offset, chunk, limits)


def iter_chunk_messages(
    uri: str, chunk_offset: int, records: bytes, limits: ReaderLimits
) -> Iterator[mr.Message]:
    for offset, opcode, body in iter_framed(uri, records, chunk_offset, limits):
        if opcode == Opcode.MESSAGE:
            record = parse_record(uri, offset, opcode, body)
            assert isinstance(record, mr.Message)
            yield record


def read_metadata(
    source: ByteSource, summary: RecordingSummary, name: str, limits: ReaderLimits | None = None
) -> dict[str, str] | None:
    """The Metadata record called `name`, found through the metadata index."""
    limits = limits or ReaderLimits()
    for entry in summary.metadata_indexes:
        if entry.name == name:
            record = read_typed(source, entry.offset, entry.length, mr.Metadata, limits)
            return dict(record.metadata)
    return None


def chunk_records_offset(index: mr.ChunkIndex) -> int:
    """Absolute file offset where an uncompressed chunk's records start."""
    # opcode+length (9), start/end time (16), uncompressed size (8), crc (4),
    # compression string (4 + len), records length (8)
    return (
        index.chunk_start_offset
        + RECORD_HEADER_BYTES
        + 16
        + 8
        + 4
        + 4
        + len(index.compression.encode())
        + 8
    )


def fetch_message(
    source: ByteSource,
    record_offset: int,
    record_length: int,
    *,
    channel_id: int,
    log_time: int,
    limits: ReaderLimits | None = None,
) -> bytes:
    """One message's payload by a single ranged read, verified against what the index expects."""
    limits = limits or ReaderLimits()
    record = read_typed(source, record_offset, record_length, mr.Message, limits)
    if record.channel_id != channel_id or record.log_time != log_time:
        raise RecordingError(
            source.uri,
            record_offset,
            f"expected message on channel {channel_id} at {log_time}, found channel {record.channel_id} at {record.log_time}",
        )
    return record.data
