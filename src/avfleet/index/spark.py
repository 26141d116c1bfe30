"""Spark pieces of the index job: the session and DataFrame -> DataFrame transforms.

Only this module (and jobs/) import pyspark, so the CLI starts fast and the
core never needs a JVM.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from avfleet.index import schema

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from avfleet.index.job import IndexConfig

FILES_INPUT_DDL = "recording_uri string, bytes_stored long"


def spark_session(app_name: str, master: str | None = None) -> SparkSession:
    """A session for this process. `master=None` keeps what spark-submit chose."""
    # Workers must run this interpreter (the venv's), or they lack pyarrow and avfleet.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # one machine: no need to resolve the host
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    builder = (
        builder.config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.python.worker.reuse", "true")
        .config("spark.ui.showConsoleProgress", "false")
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def files_frame(
    spark: SparkSession, files: list[tuple[str, int]], num_partitions: int
) -> DataFrame:
    """The input files as a DataFrame, spread round-robin over `num_partitions` partitions."""
    rdd = spark.sparkContext.parallelize([(u, int(s)) for u, s in files], num_partitions)
    return spark.createDataFrame(rdd, FILES_INPUT_DDL)


# Exceptions raised in Python workers reach the driver as Spark's own exception types, with the
# worker's traceback as text. These avfleet error classes there mean the failure may pass.
_TRANSIENT_IN_WORKER = ("avfleet.core.errors.StorageError", "avfleet.core.errors.TransientError")


def collect(df: DataFrame) -> list:
    """`df.collect()`, turning a task's transient failure into TransientError (exit 75, retried)."""
    from avfleet.core.errors import TransientError

    try:
        return df.collect()
    except Exception as e:  # Py4JJavaError / PythonException: the worker's error is in the text
        text = str(e)
        if any(name in text for name in _TRANSIENT_IN_WORKER):
            raise TransientError(
                "a Spark task failed with a transient error; retry the step"
            ) from e
        raise


def _files_result_ddl() -> str:
    import pyarrow as pa

    names = {pa.string(): "string", pa.int64(): "long", pa.float64(): "double"}
    return ", ".join(f"{f.name} {names[f.type]}" for f in schema.FILES)


def scan_recordings(files_df: DataFrame, config: IndexConfig, part_dir: str) -> DataFrame:
    """files (recording_uri, bytes_stored) -> one result row per file, frames written per task."""

    def scan_task(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd
        from pyspark import TaskContext

        from avfleet.index.job import scan_partition

        ctx = TaskContext.get()
        files = [
            (u, int(s))
            for b in batches
            for u, s in zip(b["recording_uri"], b["bytes_stored"], strict=True)
        ]
        name = f"part-{ctx.partitionId():05d}-a{ctx.attemptNumber()}-{uuid.uuid4().hex[:8]}"
        rows = scan_partition(files, config, part_dir, name)
        yield pd.DataFrame(rows, columns=schema.FILES.names)

    return files_df.mapInPandas(scan_task, _files_result_ddl())
