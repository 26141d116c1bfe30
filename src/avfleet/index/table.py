"""The frame index table and its commit protocol.

Layout under the index root:

    frames/date=D/run=R/part-*.parquet        frame rows written by run R
    files/date=D/run=R/files.parquet          one row per input file (status, reason, bytes)
    quarantine/date=D/run=R/quarantine.parquet   the files rows that were quarantined
    _commits/date=D.json                      the commit: which run is current, and its files
    _runs/R/config.json, report.json, metrics.prom

Why not Spark's dynamic partition overwrite: on S3 it deletes the old
partition and then renames/copies the new files in, object by object. A reader
in between sees a partition that is half gone or half there, and a crash
leaves it that way. Instead every run writes into its own new folder that no
reader looks at, and a run becomes visible only when `_commits/date=D.json`
is replaced in one atomic step (a single PUT on S3, a rename locally). The
commit lists its files explicitly, so stray files from failed or speculative
task attempts are never read. The previous run's files stay until the commit
after next, so a reader that resolved the old commit can finish; older runs
are deleted by `collect_garbage`. This is the manifest-commit idea of table
formats like Iceberg and Delta, at the granularity of one date. One writer
per date at a time: the nightly CronWorkflow runs with concurrencyPolicy Forbid.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

from avfleet.core import storage
from avfleet.core.errors import NotFoundError, PermanentError

log = logging.getLogger(__name__)

COMMIT_FORMAT = 1


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a random suffix."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Commit:
    date: str
    run_id: str
    frames_files: list[str]
    files_files: list[str]
    quarantine_files: list[str]
    counts: dict[str, int]
    previous_run_id: str | None
    committed_at: str
    format: int = COMMIT_FORMAT


class IndexTable:
    def __init__(self, root_uri: str, storage_config: storage.StorageConfig | None = None) -> None:
        self.root_uri = root_uri.rstrip("/")
        self.storage = storage_config or storage.StorageConfig()

    # layout
    def run_dir(self, table: str, date: str, run_id: str) -> str:
        return storage.join(self.root_uri, table, f"date={date}", f"run={run_id}")

    def commit_uri(self, date: str) -> str:
        return storage.join(self.root_uri, "_commits", f"date={date}.json")

    def run_meta_uri(self, run_id: str, name: str) -> str:
        return storage.join(self.root_uri, "_runs", run_id, name)

    # commits
    def current(self, date: str) -> Commit | None:
        uri = self.commit_uri(date)
        if not storage.exists(uri, self.storage):
            return None
        doc = json.loads(storage.read_bytes(uri, self.storage))
        if doc.get("format") != COMMIT_FORMAT:
            raise PermanentError(f"{uri}: commit format {doc.get('format')} is not {COMMIT_FORMAT}")
        return Commit(**doc)

    def dates(self) -> list[str]:
        commits = storage.list_files(storage.join(self.root_uri, "_commits"), ".json", self.storage)
        return sorted(u.rsplit("date=", 1)[1].removesuffix(".json") for u, _ in commits)

    def commit(
        self,
        date: str,
        run_id: str,
        *,
        frames_files: list[str],
        files_files: list[str],
        quarantine_files: list[str],
        counts: dict[str, int],
    ) -> Commit:
        """Make run `run_id` the visible version of `date` in one atomic write."""
        for uri in frames_files + files_files + quarantine_files:
            if f"/run={run_id}/" not in uri:
                raise PermanentError(f"refusing to commit {uri}: not written by run {run_id}")
        previous = self.current(date)
        commit = Commit(
            date=date,
            run_id=run_id,
            frames_files=sorted(frames_files),
            files_files=sorted(files_files),
            quarantine_files=sorted(quarantine_files),
            counts=dict(counts),
            previous_run_id=previous.run_id if previous else None,
            committed_at=dt.datetime.now(dt.UTC).isoformat(),
        )
        storage.atomic_write_text(
            self.commit_uri(date), json.dumps(dataclasses.asdict(commit), indent=2), self.storage
        )
        log.info("committed %s run %s (previous %s)", date, run_id, commit.previous_run_id)
        return commit

    def collect_garbage(self, date: str) -> list[str]:
        """Delete run folders of `date` that are neither the current nor the previous commit."""
        commit = self.current(date)
        keep = {commit.run_id, commit.previous_run_id} if commit else set()
        removed = []
        for table in ("frames", "files", "quarantine"):
            root = storage.join(self.root_uri, table, f"date={date}")
            fs = storage.filesystem(root, self.storage)
            path = storage.strip_protocol(root)
            if not fs.exists(path):
                continue
            for entry in fs.ls(path, detail=False):
                name = entry.rstrip("/").rsplit("/", 1)[-1]
                if name.startswith("run=") and name[4:] not in keep:
                    prefix = "" if storage.is_local(root) else f"{storage.protocol_of(root)}://"
                    storage.remove(prefix + entry, self.storage, recursive=True)
                    removed.append(prefix + entry)
        return removed

    def report(self, date: str) -> Any:
        """The IndexReport of the run committed for `date`."""
        from avfleet.index.job import IndexReport

        commit = self._require(date)
        return IndexReport.from_json(
            storage.read_bytes(
                self.run_meta_uri(commit.run_id, "report.json"), self.storage
            ).decode()
        )

    # reads
    def _require(self, date: str) -> Commit:
        commit = self.current(date)
        if commit is None:
            raise NotFoundError(f"{self.root_uri}: no committed index for date {date}")
        return commit

    def iter_batches(self, table: str, date: str, rows: int = 65_536) -> Iterator[Any]:
        """`table` of one committed date as pandas DataFrames of at most `rows` rows, in the
        order the parts hold them (a recording's rows are contiguous in its part), so a reader
        never holds the whole day; columns as `read` gives them."""
        import pyarrow.dataset as ds

        from avfleet.index import schema

        arrow_schema = {"frames": schema.FRAMES, "files": schema.FILES, "quarantine": schema.FILES}[
            table
        ]
        for uri in getattr(self._require(date), f"{table}_files"):
            fs = storage.filesystem(uri, self.storage)
            with storage.translate_errors(uri):
                part = ds.dataset(
                    storage.strip_protocol(uri),
                    filesystem=fs,
                    schema=arrow_schema,
                    format="parquet",
                )
                for batch in part.to_batches(batch_size=rows):
                    if batch.num_rows:
                        yield batch.to_pandas()

    def read(self, table: str, dates: list[str] | None = None) -> Any:
        """A pandas DataFrame of `table` ("frames", "files" or "quarantine") over committed dates."""
        import pandas as pd
        import pyarrow.parquet as pq

        from avfleet.index import schema

        arrow_schema = {"frames": schema.FRAMES, "files": schema.FILES, "quarantine": schema.FILES}[
            table
        ]
        parts = []
        for date in dates or self.dates():
            commit = self._require(date)
            for uri in getattr(commit, f"{table}_files"):
                fs = storage.filesystem(uri, self.storage)
                with storage.translate_errors(uri):
                    parts.append(
                        pq.read_table(
                            storage.strip_protocol(uri), filesystem=fs, schema=arrow_schema
                        )
                    )
        if not parts:
            return arrow_schema.empty_table().to_pandas()
        import pyarrow as pa

        df = pa.concat_tables(parts).to_pandas()
        order = (
            ["vehicle", "recording_id", "frame_index"] if table == "frames" else ["recording_uri"]
        )
        return (
            df.sort_values(order, kind="stable").reset_index(drop=True)
            if len(df)
            else pd.DataFrame(df)
        )
