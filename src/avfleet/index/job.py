"""The index job: list one day's recordings, scan them in parallel, commit the date atomically.

Runs the same under spark-submit (jobs/index_recordings.py), `avfleet index`
(a local SparkSession) and the local executor. The scan of a partition of
files is a plain function (`scan_partition`); Spark only spreads partitions
over tasks, so the single-process engine runs exactly the same code.

Each task writes its frame rows to one Parquet part file in the run's own
folder and returns one row per input file (status, reason, bytes, part file).
The driver writes the files and quarantine tables from those rows and commits.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import resource
import time
import uuid
from collections.abc import Iterable
from typing import Any, Protocol

from avfleet.core import config as config_lib
from avfleet.core import storage
from avfleet.core.errors import AvfleetError, RecordingError, TransientError
from avfleet.core.metrics import JobMetrics, MetricsConfig
from avfleet.index import schema
from avfleet.index.scan import ScanConfig, scan_recording
from avfleet.index.table import IndexTable, new_run_id
from avfleet.recording import layout

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class IndexConfig:
    recordings_uri: str
    """Fleet root holding raw/date=D/vehicle=V/*.mcap (local path, file:// or s3://)."""
    date: str
    """The day to index, YYYY-MM-DD."""
    out_uri: str
    """Index root (see avfleet.index.table for its layout)."""
    run_id: str = ""
    """This run's id; empty picks a new sortable one."""
    num_partitions: int = 0
    """Spark tasks to spread files over; 0 picks 2 per core."""
    worker_memory_cap_bytes: int = 768 * 1024 * 1024
    """Memory one file's scan may add to its worker (peak RSS over the RSS it started at); a file
    that needs more is quarantined. The run reports the workers' peak RSS."""
    scan: ScanConfig = dataclasses.field(default_factory=ScanConfig)
    """What to read and the reader's caps."""
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)
    """Where metrics go."""

    def __post_init__(self) -> None:
        import datetime as dt

        try:
            dt.date.fromisoformat(self.date)
        except ValueError as e:
            raise ValueError(f"IndexConfig.date: {self.date!r} is not YYYY-MM-DD") from e
        if self.worker_memory_cap_bytes <= self.scan.limits.peak_bytes():
            raise ValueError(
                "IndexConfig.worker_memory_cap_bytes must exceed the reader's peak buffers (scan.limits)"
            )


def _peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def _rss_bytes() -> int:
    """This process's resident set now (Linux /proc; 0 where there is none, which blames more)."""
    try:
        pages = int(pathlib.Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * resource.getpagesize()


def scan_one(uri: str, size_bytes: int, date: str, config: IndexConfig) -> tuple[Any, dict]:
    """(frames DataFrame or None, files row) for one input. Transient storage errors propagate."""
    started = time.perf_counter()
    row: dict[str, Any] = {
        "recording_uri": uri,
        "recording_id": None,
        "date": date,
        "status": schema.STATUS_INDEXED,
        "reason": None,
        "error_offset": None,
        "num_frames": 0,
        "bytes_stored": size_bytes,
        "bytes_read": 0,
        "part_uri": None,
        "domain_counts": "{}",
    }
    frames = None
    peak_before, rss_before = _peak_rss_bytes(), _rss_bytes()
    try:
        frames, row["bytes_read"] = scan_recording(uri, config.scan)
        row["num_frames"] = len(frames)
        row["recording_id"] = str(frames["recording_id"].iloc[0]) if len(frames) else None
        row["domain_counts"] = _domain_counts(frames)
    except TransientError:
        raise
    except RecordingError as e:
        row.update(status=schema.STATUS_QUARANTINED, reason=e.problem, error_offset=e.offset)
    except (AvfleetError, MemoryError, ValueError, KeyError, TypeError) as e:
        # Whatever else a hostile file provokes, it must not take the day's run down with it.
        row.update(status=schema.STATUS_QUARANTINED, reason=f"{type(e).__name__}: {e}")
    row["peak_rss_bytes"] = _peak_rss_bytes()
    # ru_maxrss is the worker's lifetime peak: blame this file only if the peak rose while
    # scanning it, and only for what the scan added: a worker that shares its process with
    # other work (the loop engine in a long-lived process) starts far above zero.
    grown = row["peak_rss_bytes"] - rss_before
    if (
        row["status"] == schema.STATUS_INDEXED
        and row["peak_rss_bytes"] > peak_before
        and grown > config.worker_memory_cap_bytes
    ):
        row.update(
            status=schema.STATUS_QUARANTINED,
            reason=f"scan raised peak RSS by {grown} bytes, over the cap {config.worker_memory_cap_bytes}",
        )
        frames = None
    row["scan_seconds"] = time.perf_counter() - started
    return (frames if row["status"] == schema.STATUS_INDEXED else None), row


def _domain_counts(frames: Any) -> str:
    if not len(frames):
        return "{}"
    counts = frames.groupby(["time_of_day", "weather", "road_type"]).size()
    return json.dumps({"/".join(k): int(v) for k, v in counts.items()}, sort_keys=True)


def scan_partition(
    files: Iterable[tuple[str, int]], config: IndexConfig, part_dir: str, part_name: str
) -> list[dict]:
    """Scan files, write their frames as one part file, return one files row per input."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, tables = [], []
    for uri, size in files:
        frames, row = scan_one(uri, size, config.date, config)
        rows.append(row)
        if frames is not None and len(frames):
            tables.append(frames)
    if tables:
        df = pd.concat(tables, ignore_index=True)
        table = pa.Table.from_pandas(
            df[schema.FRAMES.names], schema=schema.FRAMES, preserve_index=False
        )
        part_uri = storage.join(part_dir, f"{part_name}.parquet")
        with storage.translate_errors(part_uri):
            storage.filesystem(part_uri, config.scan.storage).makedirs(
                storage.strip_protocol(part_dir), exist_ok=True
            )
            pq.write_table(
                table,
                storage.strip_protocol(part_uri),
                filesystem=storage.filesystem(part_uri, config.scan.storage),
                compression="zstd",
                row_group_size=PART_ROW_GROUP_ROWS,
            )
        for row in rows:
            if row["num_frames"]:
                row["part_uri"] = part_uri
    return rows


PART_ROW_GROUP_ROWS = 65_536
"""Rows per row group of the index's part files: what the driver holds at once when it
rewrites a part without a duplicate's frames (a part holds every frame of a Spark task's files)."""


class ScanEngine(Protocol):
    def scan(
        self, files: list[tuple[str, int]], config: IndexConfig, part_dir: str
    ) -> list[dict]: ...


class LoopEngine:
    """One process, no Spark: the baseline, and a debugging aid."""

    def scan(self, files: list[tuple[str, int]], config: IndexConfig, part_dir: str) -> list[dict]:
        return scan_partition(files, config, part_dir, f"part-00000-{uuid.uuid4().hex[:8]}")


class SparkEngine:
    """Spreads files over Spark tasks; each task scans its files and writes one part file."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark

    def scan(self, files: list[tuple[str, int]], config: IndexConfig, part_dir: str) -> list[dict]:
        from avfleet.index.spark import collect, files_frame, scan_recordings

        if not files:
            return []
        parallelism = self.spark.sparkContext.defaultParallelism
        num_partitions = min(len(files), config.num_partitions or 2 * parallelism)
        results = scan_recordings(files_frame(self.spark, files, num_partitions), config, part_dir)
        return [r.asDict() for r in collect(results)]


@dataclasses.dataclass(frozen=True)
class IndexReport:
    run_id: str
    date: str
    num_files: int
    num_indexed: int
    num_quarantined: int
    num_frames: int
    bytes_read: int
    bytes_stored: int
    peak_worker_rss_bytes: int
    duration_s: float
    frames_per_domain: dict[str, int]
    quarantined: list[dict]

    @classmethod
    def from_json(cls, text: str) -> IndexReport:
        return cls(**json.loads(text))

    @property
    def read_fraction(self) -> float:
        return self.bytes_read / self.bytes_stored if self.bytes_stored else 0.0


def list_recordings(
    recordings_uri: str, date: str, storage_config: storage.StorageConfig
) -> list[tuple[str, int]]:
    return storage.list_files(
        storage.join(recordings_uri, layout.date_prefix(date)), ".mcap", storage_config
    )


def run_index(config: IndexConfig, engine: ScanEngine) -> IndexReport:
    """Index one date end to end and commit it. Returns the run's report."""
    started = time.time()
    run_id = config.run_id or new_run_id()
    table = IndexTable(config.out_uri, config.scan.storage)
    st = config.scan.storage
    storage.atomic_write_text(
        table.run_meta_uri(run_id, "config.json"), config_lib.dumps(config), st
    )

    files = list_recordings(config.recordings_uri, config.date, st)
    log.info("indexing %d recordings of %s (run %s)", len(files), config.date, run_id)
    rows = engine.scan(files, config, table.run_dir("frames", config.date, run_id))
    by_uri = {r["recording_uri"]: r for r in rows}
    if sorted(by_uri) != sorted(
        u for u, _ in files
    ):  # an invariant: never commit a day that lost inputs
        raise AvfleetError(f"scan accounted for {len(by_uri)} of {len(files)} inputs")

    rows = quarantine_duplicates(rows, table, config, table.run_dir("frames", config.date, run_id))
    files_uri, quarantine_uri = _write_file_tables(table, config, run_id, rows)
    frames_files = sorted({r["part_uri"] for r in rows if r["part_uri"]})
    counts = {
        "files": len(rows),
        "indexed": sum(r["status"] == schema.STATUS_INDEXED for r in rows),
        "quarantined": sum(r["status"] == schema.STATUS_QUARANTINED for r in rows),
        "frames": sum(int(r["num_frames"]) for r in rows),
    }
    table.commit(
        config.date,
        run_id,
        frames_files=frames_files,
        files_files=[files_uri],
        quarantine_files=[quarantine_uri],
        counts=counts,
    )
    removed = table.collect_garbage(config.date)
    if removed:
        log.info("removed %d superseded run folders", len(removed))

    per_domain: dict[str, int] = {}
    for row in rows:
        for domain, n in json.loads(row["domain_counts"] or "{}").items():
            per_domain[domain] = per_domain.get(domain, 0) + n
    report = IndexReport(
        run_id=run_id,
        date=config.date,
        num_files=counts["files"],
        num_indexed=counts["indexed"],
        num_quarantined=counts["quarantined"],
        num_frames=counts["frames"],
        bytes_read=sum(int(r["bytes_read"]) for r in rows),
        bytes_stored=sum(int(r["bytes_stored"]) for r in rows),
        peak_worker_rss_bytes=max((int(r["peak_rss_bytes"]) for r in rows), default=0),
        duration_s=time.time() - started,
        frames_per_domain=dict(sorted(per_domain.items())),
        quarantined=[
            {
                "recording_uri": r["recording_uri"],
                "reason": r["reason"],
                "error_offset": r["error_offset"],
            }
            for r in rows
            if r["status"] == schema.STATUS_QUARANTINED
        ],
    )
    _finish_metrics(config, table, report)
    storage.atomic_write_text(
        table.run_meta_uri(run_id, "report.json"),
        json.dumps(dataclasses.asdict(report), indent=2, default=str),
        st,
    )
    return report


def indexed_elsewhere(table: IndexTable, date: str) -> dict[str, str]:
    """recording_id -> the file it was indexed from, over every committed date but `date`."""
    other = [d for d in table.dates() if d != date]
    if not other:
        return {}
    files = table.read("files", other)
    if "recording_id" not in files:  # dates committed before files carried recording ids
        return {}
    files = files[(files["status"] == schema.STATUS_INDEXED) & files["recording_id"].notna()]
    files = files.sort_values(["date", "recording_uri"])
    return dict(
        files.drop_duplicates("recording_id")[["recording_id", "recording_uri"]].itertuples(
            index=False
        )
    )


def quarantine_duplicates(
    rows: list[dict], table: IndexTable, config: IndexConfig, part_dir: str
) -> list[dict]:
    """A second file carrying an already-indexed recording is quarantined: 'duplicate of <uri>'.

    A recording is what its metadata says it is (recording_id): a re-upload or a
    copy under another name carries the same id, so indexing both would repeat
    every frame id. The first holder wins: a file indexed on an earlier
    committed date, else the first by URI in this run. The duplicates' frames
    leave the run's part files (rewritten without them), so frame ids stay unique.
    """
    holders = indexed_elsewhere(table, config.date)
    dropped: dict[str, set[str]] = {}  # part file -> URIs whose frames leave it
    for row in sorted(rows, key=lambda r: r["recording_uri"]):
        rid = row.get("recording_id")
        if row["status"] != schema.STATUS_INDEXED or not rid:
            continue
        if rid in holders:
            dropped.setdefault(row["part_uri"], set()).add(row["recording_uri"])
            row.update(
                status=schema.STATUS_QUARANTINED,
                reason=f"duplicate of {holders[rid]} (recording {rid})",
                num_frames=0,
                domain_counts="{}",
                part_uri=None,
            )
        else:
            holders[rid] = row["recording_uri"]
    for part_uri, uris in dropped.items():
        if part_uri:
            kept = _rewrite_part_without(part_uri, uris, part_dir, config.scan.storage)
            for row in rows:
                if row["part_uri"] == part_uri:
                    row["part_uri"] = kept
    return rows


def _rewrite_part_without(
    part_uri: str, uris: set[str], part_dir: str, st: storage.StorageConfig
) -> str | None:
    """A new part file holding `part_uri`'s frames but those of `uris` (None when none are left).

    Streamed a row group at a time: a part holds every frame of its Spark task's files (millions
    of rows at fleet scale), and this runs in the driver."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    fs = storage.filesystem(part_uri, st)
    drop = pa.array(sorted(uris), pa.string())
    new_uri = storage.join(
        part_dir, f"{part_uri.rsplit('/', 1)[1].removesuffix('.parquet')}-d.parquet"
    )
    kept_rows = 0
    with storage.translate_errors(part_uri), fs.open(storage.strip_protocol(part_uri), "rb") as f:
        source = pq.ParquetFile(f)
        with (
            storage.translate_errors(new_uri),
            pq.ParquetWriter(
                storage.strip_protocol(new_uri),
                source.schema_arrow,
                filesystem=fs,
                compression="zstd",
            ) as writer,
        ):
            for i in range(source.num_row_groups):
                group = source.read_row_group(i)
                kept = group.filter(pc.invert(pc.is_in(group["recording_uri"], drop)))
                if kept.num_rows:
                    writer.write_table(kept, row_group_size=PART_ROW_GROUP_ROWS)
                    kept_rows += kept.num_rows
    if kept_rows == 0:
        fs.rm(storage.strip_protocol(new_uri))
        return None
    return new_uri


def _write_file_tables(
    table: IndexTable, config: IndexConfig, run_id: str, rows: list[dict]
) -> tuple[str, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = pa.Table.from_pylist(
        [{k: r.get(k) for k in schema.FILES.names} for r in rows], schema=schema.FILES
    )
    quarantined = files.filter(pa.compute.equal(files["status"], schema.STATUS_QUARANTINED))
    out = []
    for name, data in (("files", files), ("quarantine", quarantined)):
        uri = storage.join(table.run_dir(name, config.date, run_id), f"{name}.parquet")
        with storage.translate_errors(uri):
            fs = storage.filesystem(uri, config.scan.storage)
            fs.makedirs(storage.strip_protocol(uri).rsplit("/", 1)[0], exist_ok=True)
            pq.write_table(data, storage.strip_protocol(uri), filesystem=fs)
        out.append(uri)
    return out[0], out[1]


def _finish_metrics(config: IndexConfig, table: IndexTable, report: IndexReport) -> None:
    metrics = JobMetrics("index", {"date": report.date}, run_id=report.run_id)
    metrics.started_s -= report.duration_s  # count the whole run, not just this function
    metrics.set(
        "files",
        report.num_indexed,
        "Input recordings by outcome",
        {"status": schema.STATUS_INDEXED},
    )
    metrics.set(
        "files",
        report.num_quarantined,
        "Input recordings by outcome",
        {"status": schema.STATUS_QUARANTINED},
    )
    metrics.set("quarantined_files", report.num_quarantined, "Recordings quarantined in this run")
    metrics.set("frames", report.num_frames, "Frames indexed")
    metrics.set("bytes_read", report.bytes_read, "Bytes read from recordings")
    metrics.set("bytes_stored", report.bytes_stored, "Bytes stored in the recordings indexed")
    metrics.set("read_fraction", report.read_fraction, "Bytes read / bytes stored")
    metrics.set("peak_worker_rss_bytes", report.peak_worker_rss_bytes, "Peak RSS of a scan worker")
    for domain, n in report.frames_per_domain.items():
        tod, weather, road = domain.split("/")
        metrics.set(
            "domain_frames",
            n,
            "Frames per domain",
            {"time_of_day": tod, "weather": weather, "road_type": road},
        )
    metrics.finish(
        config.metrics, table.run_meta_uri(report.run_id, "metrics.prom"), config.scan.storage
    )
