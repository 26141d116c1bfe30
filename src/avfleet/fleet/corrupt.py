"""Hostile recordings for tests and drills: truncated, bit-flipped, decompression bombs.

`avfleet fleet corrupt` applies these to files of a generated fleet in place
and writes `corruptions.json` saying which file got what, so a test can check
that each one was quarantined and why.

Bit flips land where a metadata-only read must notice them: in the summary
section (caught by the summary CRC) or in a signal chunk (caught by the chunk
CRC or zstd itself). A flip inside a camera payload is invisible to an index
that never reads payloads; it is caught when the frame is fetched.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import struct

import numpy as np

from avfleet.core import storage
from avfleet.fleet.generate import read_world, recording_bytes
from avfleet.fleet.world import FleetSpec, SegmentPlan, stable_seed
from avfleet.recording.reader import FOOTER_BODY_BYTES, MAGIC, RECORD_HEADER_BYTES
from avfleet.recording.writer import ChunkedWriter

log = logging.getLogger(__name__)

KINDS = ("truncated", "bitflip-summary", "bitflip-signals", "bomb", "bomb-lying")
BOMB_INFLATED_BYTES = 1 << 30  # 1 GiB of zeros compresses to ~40 KB with zstd


def truncate(data: bytes, rng: np.random.Generator) -> bytes:
    """Cut the file somewhere in its second half: the footer and summary are lost."""
    return data[: int(rng.integers(len(data) // 2, len(data) - 16))]


def _summary_span(data: bytes) -> tuple[int, int]:
    footer_at = len(data) - len(MAGIC) - RECORD_HEADER_BYTES - FOOTER_BODY_BYTES
    summary_start = struct.unpack_from("<Q", data, footer_at + RECORD_HEADER_BYTES)[0]
    return summary_start, footer_at


def flip_bits(data: bytes, start: int, end: int, rng: np.random.Generator, count: int = 3) -> bytes:
    out = bytearray(data)
    for pos in rng.integers(start, end, count):
        out[int(pos)] ^= 1 << int(rng.integers(8))
    return bytes(out)


def bitflip_summary(data: bytes, rng: np.random.Generator) -> bytes:
    start, end = _summary_span(data)
    return flip_bits(data, start, end, rng)


def bitflip_signals(data: bytes, rng: np.random.Generator) -> bytes:
    """Flip bits inside the first zstd chunk's compressed payload."""
    from avfleet.recording.reader import read_summary

    from_bytes = _InMemorySource(data)
    summary = read_summary(from_bytes)  # type: ignore[arg-type]
    chunk = next(c for c in summary.chunk_indexes if c.compression == "zstd")
    payload_end = chunk.chunk_start_offset + chunk.chunk_length
    return flip_bits(data, payload_end - chunk.compressed_size + 8, payload_end, rng)


class _InMemorySource:
    def __init__(self, data: bytes) -> None:
        self.uri = "<memory>"
        self.size = len(data)
        self._data = data

    def read_at(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


def _bomb_writer(lying: bool) -> type[ChunkedWriter]:
    class BombWriter(ChunkedWriter):
        """Writes its signal chunks as zstd bombs: a few KB that inflate to 1 GiB."""

        def _compress(self, compression: str, records: bytes) -> tuple[bytes, int]:
            if compression != "zstd":
                return super()._compress(compression, records)
            import io

            import zstandard

            buf = io.BytesIO()
            with zstandard.ZstdCompressor(level=1).stream_writer(
                buf, closefd=False, size=BOMB_INFLATED_BYTES
            ) as w:
                zeros = bytes(1 << 22)
                for _ in range(BOMB_INFLATED_BYTES // len(zeros)):
                    w.write(zeros)
            declared = len(records) if lying else BOMB_INFLATED_BYTES
            return buf.getvalue(), declared

    return BombWriter


def bomb(spec: FleetSpec, plan: SegmentPlan, *, lying: bool) -> bytes:
    """The same recording, with its signal chunks replaced by decompression bombs.

    `lying=False` declares the true 1 GiB (a reader that trusts it allocates
    1 GiB); `lying=True` declares the original small size (a reader must stop
    inflating at the declared size).
    """
    return recording_bytes(spec, plan, writer_cls=_bomb_writer(lying))


@dataclasses.dataclass(frozen=True)
class Corruption:
    uri: str
    kind: str


def corrupt_fleet(
    fleet_uri: str,
    date: str,
    counts: dict[str, int],
    seed: int = 0,
    storage_config: storage.StorageConfig | None = None,
) -> list[Corruption]:
    """Corrupt `counts[kind]` distinct recordings of `date` in place; returns what was done."""
    unknown = set(counts) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown corruption kind {sorted(unknown)[0]!r}; choose from {KINDS}")
    spec, plans = read_world(fleet_uri, storage_config)
    by_id = {p.recording_id: p for p in plans}
    files = [
        u
        for u, _ in storage.list_files(
            storage.join(fleet_uri, f"raw/date={date}"), ".mcap", storage_config
        )
    ]
    needed = sum(counts.values())
    if needed > len(files):
        raise ValueError(f"asked to corrupt {needed} recordings but {date} has only {len(files)}")
    rng = np.random.default_rng(stable_seed(seed, date, "corrupt"))
    chosen = [files[i] for i in rng.permutation(len(files))[:needed]]
    done: list[Corruption] = []
    for kind, n in sorted(counts.items()):
        for _ in range(n):
            uri = chosen.pop()
            if kind.startswith("bomb"):
                recording_id = uri.rsplit("/", 1)[-1].removesuffix(".mcap")
                data = bomb(spec, by_id[recording_id], lying=kind == "bomb-lying")
            else:
                original = storage.read_bytes(uri, storage_config)
                fn = {
                    "truncated": truncate,
                    "bitflip-summary": bitflip_summary,
                    "bitflip-signals": bitflip_signals,
                }[kind]
                data = fn(original, rng)
            storage.atomic_write_bytes(uri, data, storage_config)
            done.append(Corruption(uri=uri, kind=kind))
            log.debug("corrupted %s: %s", uri, kind)
    report_uri = storage.join(fleet_uri, f"corruptions-{date}.json")
    storage.atomic_write_text(
        report_uri, json.dumps([dataclasses.asdict(c) for c in done], indent=2), storage_config
    )
    return done
