"""The index job's cost as a day's files grow, in one run.

1. On disk, 100 -> 10,000 files (smoke: 2 -> 8): a generated day of 100 recordings
   replicated through hard links (`index_throughput.replicated`; a replica costs what its
   original costs to scan). Each size runs `run_index` on Spark local[2] in a fresh process, so
   its peak memory is its own: wall time, files/s, and the peak resident memory of the
   driver's two processes (PySpark's Python driver, which collects the scan rows and writes
   the commit, and the JVM), read from the kernel's high-water marks. Replicas share their
   original's recording id, so the job scans each in full and then quarantines it as a
   duplicate: the scan work grows with the files, the frames indexed do not.
2. On S3 (moto's server in this process), 30 -> 300 short recordings (smoke: 20 -> 40): the
   requests the server answers, counted on its side (werkzeug's request log), by method,
   and the bytes the scan read, per file.

Fitted exponents (benchmarks/_growth.py): time and requests k <= 1.05; driver memory flat.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    SMOKE,
    cached_fleet,
    counted_s3,
    in_fresh_process,
    proc_memory_bytes,
    save,
    scratch_dir,
)
from _growth import exponent, plot, replot  # noqa: E402
from index_throughput import replicated  # noqa: E402

from avfleet.fleet.world import FleetSpec  # noqa: E402

LOCAL_SPEC = FleetSpec(seed=41, vehicles=10, minutes_per_day=10.0)
LOCAL_TIMES = (1, 2, 4) if SMOKE else (1, 10, 100)
S3_SPEC = FleetSpec(seed=43, vehicles=3, minutes_per_day=1.0, segment_s=6.0)
S3_TIMES = (1, 2) if SMOKE else (1, 3, 10)


def index_in_process(root: str, date: str) -> dict:
    """One run_index on Spark local[2]: seconds, frames, and the driver's peak memory."""
    from avfleet.index.job import IndexConfig, SparkEngine, run_index
    from avfleet.index.spark import spark_session

    spark = spark_session("avfleet-growth", "local[2]")
    jvm = spark.sparkContext._gateway.proc.pid  # spark-submit execs the driver JVM
    with scratch_dir("avfleet-growth-") as out:
        started = time.perf_counter()
        report = run_index(
            IndexConfig(recordings_uri=root, date=date, out_uri=out), SparkEngine(spark)
        )
        seconds = time.perf_counter() - started
        result = {
            "files": report.num_files,
            "frames": report.num_frames,
            "seconds": seconds,
            "files_per_s": report.num_files / seconds,
            "python_driver_peak_bytes": proc_memory_bytes("VmHWM"),
            "jvm_driver_peak_bytes": proc_memory_bytes("VmHWM", jvm),
        }
    spark.stop()
    return result


def local_growth() -> list[dict]:
    fleet = cached_fleet(LOCAL_SPEC)
    date = LOCAL_SPEC.start_date
    runs = []
    for times in LOCAL_TIMES:
        root = replicated(fleet, date, times)
        runs.append(in_fresh_process(__file__, "--index", root, date))
        print(f"{runs[-1]['files']:>6} files: {runs[-1]['seconds']:.1f} s", flush=True)
    return runs


def s3_growth() -> list[dict]:
    from avfleet.index.spark import spark_session

    fleet = cached_fleet(S3_SPEC)
    date = S3_SPEC.start_date
    with counted_s3("growth") as (st, counts):
        spark = spark_session("avfleet-growth-s3", "local[2]")
        try:
            return [_s3_run(spark, st, counts, fleet, date, times) for times in S3_TIMES]
        finally:
            spark.stop()


def _s3_run(spark, st, counts, fleet: str, date: str, times: int) -> dict:  # noqa: ANN001
    """Upload `times` replicas of the day, clear the count, index them: requests and bytes."""
    from avfleet.core import storage
    from avfleet.index.job import IndexConfig, SparkEngine, run_index
    from avfleet.index.scan import ScanConfig

    fs = storage.filesystem("s3://growth", st)
    root = pathlib.Path(replicated(fleet, date, times))
    prefix = f"growth/x{times}"
    for path in sorted(root.glob(f"raw/date={date}/*/*.mcap")):
        fs.put_file(str(path), f"{prefix}/{path.relative_to(root)}")
    counts.clear()
    config = IndexConfig(
        recordings_uri=f"s3://{prefix}",
        date=date,
        out_uri=f"s3://{prefix}-index",
        scan=ScanConfig(storage=st),
    )
    report = run_index(config, SparkEngine(spark))
    requests = sum(counts.values())
    print(f"{report.num_files:>4} files on S3: {requests} requests", flush=True)
    return {
        "files": report.num_files,
        "frames": report.num_frames,
        "requests": requests,
        "requests_by_method": dict(counts),
        "requests_per_file": requests / report.num_files,
        "bytes_read": report.bytes_read,
        "bytes_read_per_file": report.bytes_read / report.num_files,
        "read_fraction": report.read_fraction,
    }


def main() -> None:
    local = local_growth()
    s3 = s3_growth()
    fits = {
        "local_seconds": exponent([r["files"] for r in local], [r["seconds"] for r in local]),
        "python_driver_peak": exponent(
            [r["files"] for r in local], [r["python_driver_peak_bytes"] for r in local]
        ),
        "jvm_driver_peak": exponent(
            [r["files"] for r in local], [r["jvm_driver_peak_bytes"] for r in local]
        ),
        "s3_requests": exponent([r["files"] for r in s3], [r["requests"] for r in s3]),
        "s3_bytes_read": exponent([r["files"] for r in s3], [r["bytes_read"] for r in s3]),
    }
    save(
        "index_growth",
        {
            "goal": "time and requests k <= 1.05; driver memory flat (k near 0)",
            "local": local,
            "s3": s3,
            "exponents": fits,
        },
    )
    figure({"local": local, "s3": s3})


def figure(result: dict) -> None:
    local, s3 = result["local"], result["s3"]
    files = [r["files"] for r in local]
    plot(
        "index_growth",
        "index job: cost vs files in a day",
        "files",
        {
            "seconds (disk, Spark local[2])": (files, [r["seconds"] for r in local]),
            "S3 requests (moto)": ([r["files"] for r in s3], [r["requests"] for r in s3]),
            "Python driver peak MiB": (
                files,
                [r["python_driver_peak_bytes"] / 2**20 for r in local],
            ),
            "JVM driver peak MiB": (files, [r["jvm_driver_peak_bytes"] / 2**20 for r in local]),
        },
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--index"]:
        print(json.dumps(index_in_process(sys.argv[2], sys.argv[3])))
    elif not replot("index_growth", figure):
        main()
