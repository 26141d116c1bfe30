"""The dataset build on Spark: recordings spread over tasks, each fetching, labeling, writing a part.

Selected index rows are hash-partitioned by recording, so a recording's frames
are fetched by one task (frames of a compressed chunk share one read). Each
task runs `build_part` and returns only digests; the frame bytes stay on the
workers and in the part files. Only this module (and jobs/) import pyspark.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from avfleet.core.storage import StorageConfig
    from avfleet.dataset.labels import Labeler

DIGESTS_DDL = (
    "frame_id string, image_sha256 string, mask_sha256 string, part_uri string, "
    "bytes_read long, time_of_day string, weather string, road_type string, recording_uri string, "
    "label_version string, label_source string, rejected string"
)


class SparkEngine:
    """`build_parts` over Spark tasks (about 2 per core unless num_partitions is given)."""

    def __init__(self, spark: Any, num_partitions: int | None = None) -> None:
        self.spark = spark
        self.num_partitions = num_partitions

    def build_parts(
        self,
        selected: pd.DataFrame,
        labeler: Labeler,
        staging_uri: str,
        storage_config: StorageConfig,
    ) -> pd.DataFrame:
        import pandas as pd

        from avfleet.index.spark import collect

        recordings = selected["recording_uri"].nunique()
        parallelism = self.spark.sparkContext.defaultParallelism
        partitions = max(1, min(recordings, self.num_partitions or 2 * parallelism))

        def task(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            import pandas as pd
            from pyspark import TaskContext

            from avfleet.core import storage
            from avfleet.dataset.build import build_part

            frames = pd.concat(list(batches), ignore_index=True)
            if frames.empty:
                return
            ctx = TaskContext.get()
            name = f"part-{ctx.partitionId():05d}-a{ctx.attemptNumber()}-{uuid.uuid4().hex[:8]}"
            part_uri = storage.join(staging_uri, f"{name}.parquet")
            yield build_part(frames, labeler, part_uri, storage_config)

        rows = (
            self.spark.createDataFrame(selected)
            .repartition(partitions, "recording_uri")
            .mapInPandas(task, DIGESTS_DDL)
        )
        return pd.DataFrame([r.asDict() for r in collect(rows)], columns=_columns())


def _columns() -> list[str]:
    return [c.split()[0] for c in DIGESTS_DDL.split(", ")]
