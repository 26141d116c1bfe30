"""The dataset build on Spark: recordings spread over tasks, each fetching, labeling, writing a part.

The driver packs the selected recordings into tasks of about `frames_per_task` frames
(a recording's frames go to one task, so frames of a compressed chunk share one read) and
writes each task's index rows to staging; Spark gets only those files' names. A task reads
its rows, runs `build_part`, and writes the part and its digests to staging; the driver reads
the digests back. Neither the frames nor their digests pass through the JVM, so the Spark
driver's memory does not grow with the selection, and a task's memory is bounded by
`frames_per_task`. Only this module (and jobs/) import pyspark.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from avfleet.core.storage import StorageConfig
    from avfleet.dataset.labels import Labeler


class SparkEngine:
    """`build_parts` over Spark tasks: at least 2 per core, and about `frames_per_task` frames
    each (a task holds its part in memory until it writes it), unless num_partitions is given;
    never more tasks than recordings."""

    def __init__(
        self, spark: Any, num_partitions: int | None = None, frames_per_task: int = 5_000
    ) -> None:
        self.spark = spark
        self.num_partitions = num_partitions
        self.frames_per_task = frames_per_task

    def build_parts(
        self,
        selected: pd.DataFrame,
        labeler: Labeler,
        staging_uri: str,
        storage_config: StorageConfig,
    ) -> pd.DataFrame:
        import pandas as pd

        from avfleet.core import storage
        from avfleet.index.spark import collect

        recordings = selected["recording_uri"].value_counts()
        tasks = (
            max(1, min(len(recordings), self.num_partitions))
            if self.num_partitions
            else task_count(
                len(selected),
                len(recordings),
                self.spark.sparkContext.defaultParallelism,
                self.frames_per_task,
            )
        )
        task_of = pack(recordings, tasks)
        inputs = []
        for i, rows in selected.groupby(selected["recording_uri"].map(task_of), sort=True):
            inputs.append(storage.join(staging_uri, "_tasks", f"task-{i:05d}.parquet"))
            storage.write_parquet(rows.reset_index(drop=True), inputs[-1], storage_config)

        def task(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            import pandas as pd
            from pyspark import TaskContext

            from avfleet.core import storage
            from avfleet.dataset.build import build_part

            ctx = TaskContext.get()
            for batch in batches:
                for input_uri in batch["input_uri"]:
                    frames = storage.read_parquet(input_uri, storage_config)
                    name = f"part-{ctx.partitionId():05d}-a{ctx.attemptNumber()}-{uuid.uuid4().hex[:8]}"
                    digests = build_part(
                        frames,
                        labeler,
                        storage.join(staging_uri, f"{name}.parquet"),
                        storage_config,
                    )
                    digests_uri = storage.join(staging_uri, "_digests", f"{name}.parquet")
                    storage.write_parquet(digests, digests_uri, storage_config)
                    yield pd.DataFrame({"digests_uri": [digests_uri]})

        names = self.spark.sparkContext.parallelize([(u,) for u in inputs], len(inputs))
        done = self.spark.createDataFrame(names, "input_uri string").mapInPandas(
            task, "digests_uri string"
        )
        parts = [storage.read_parquet(r["digests_uri"], storage_config) for r in collect(done)]
        return pd.concat(parts, ignore_index=True)


def task_count(frames: int, recordings: int, parallelism: int, frames_per_task: int) -> int:
    """Tasks for a build: at least 2 per core, about `frames_per_task` frames each, at most one
    per recording (a recording's frames go to one task)."""
    return max(1, min(recordings, max(2 * parallelism, -(-frames // frames_per_task))))


def pack(frames_per_recording: pd.Series, tasks: int) -> dict[str, int]:
    """recording -> task, largest recordings first onto the task with the fewest frames so far,
    so tasks get about equal frames (ties: the lower task)."""
    import heapq

    load = [(0, t) for t in range(tasks)]
    out = {}
    for uri, n in sorted(frames_per_recording.items(), key=lambda kv: (-kv[1], kv[0])):
        frames, t = heapq.heappop(load)
        out[uri] = t
        heapq.heappush(load, (frames + int(n), t))
    return out
