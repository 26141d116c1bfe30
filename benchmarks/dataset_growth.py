"""The dataset build's cost as the selection grows, loop vs Spark, in one run.

1. On disk, 1,000 -> 100,000 selected frames (smoke: 50 -> 200) of a generated fleet of
   102,000 frames, oracle labels: each size and engine runs `build_dataset` in a fresh process,
   the loop (one process: the baseline, and what small selections use) and Spark local[2]
   (`dataset.spark.SparkEngine`). Wall time, frames/s, and the peak resident memory of the
   processes that hold data: the Python driver (the loop's only process; under Spark it
   collects one digest row per frame and writes the manifest), the JVM driver, and the
   largest Spark Python worker (a task holds its part's images and masks until it writes
   them), read from the kernel's high-water marks.
2. On S3 (moto's server in this process), 180 -> 1,800 frames (smoke: 20 -> 60) of a short
   fleet indexed on S3, built on Spark local[2]: the requests the server answers, counted on
   its side (werkzeug's request log), by method, per frame.

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

from avfleet.fleet.world import FleetSpec  # noqa: E402

SPEC = FleetSpec(seed=61, vehicles=17, minutes_per_day=10.0)  # 17 x 600 s x 10 fps = 102,000
SIZES = (50, 200) if SMOKE else (1_000, 10_000, 100_000)
ENGINES = ("loop", "spark")
S3_SPEC = FleetSpec(seed=63, vehicles=3, minutes_per_day=1.0, segment_s=6.0)
S3_SIZES = (20, 60) if SMOKE else (180, 600, 1_800)  # of 1,800 frames


def _indexed(fleet: str, date: str, engine: object) -> str:
    from avfleet.index.job import IndexConfig, run_index
    from avfleet.index.table import IndexTable

    index = fleet + "-index"
    if not IndexTable(index).dates():
        run_index(IndexConfig(recordings_uri=fleet, date=date, out_uri=index), engine)
    return index


def _peak_of_descendants(pid: int) -> int:
    """The largest high-water mark among `pid`'s descendants still running (0 if none)."""
    import psutil

    peaks = [0]
    for child in psutil.Process(pid).children(recursive=True):
        try:
            peaks.append(proc_memory_bytes("VmHWM", child.pid))
        except (FileNotFoundError, ProcessLookupError, KeyError):
            pass  # exited (or a zombie) between the listing and the read
    return max(peaks)


def build_in_process(fleet: str, index: str, frames: int, engine_name: str) -> dict:
    """One build_dataset of `frames` random frames: seconds and the peak memory of each process."""
    from avfleet.dataset.build import DatasetConfig, LoopEngine, build_dataset
    from avfleet.dataset.labels import OracleLabels

    spark = engine = None
    if engine_name == "spark":
        from avfleet.dataset.spark import SparkEngine
        from avfleet.index.spark import spark_session

        spark = spark_session("avfleet-dataset-growth", "local[2]")
        engine = SparkEngine(spark)
    else:
        engine = LoopEngine(show_progress=False)
    with scratch_dir("avfleet-dataset-growth-") as out:
        config = DatasetConfig(index_uri=index, selection=f"random:{frames}", out_uri=out, seed=3)
        started = time.perf_counter()
        version = build_dataset(config, OracleLabels(fleet), engine=engine)
        seconds = time.perf_counter() - started
        result = {
            "engine": engine_name,
            "frames": version.num_frames,
            "seconds": seconds,
            "frames_per_s": version.num_frames / seconds,
            "python_driver_peak_bytes": proc_memory_bytes("VmHWM"),
        }
        if spark is not None:
            jvm = spark.sparkContext._gateway.proc.pid  # spark-submit execs the driver JVM
            result["jvm_driver_peak_bytes"] = proc_memory_bytes("VmHWM", jvm)
            # The Python workers are reused across tasks (spark.python.worker.reuse), so their
            # high-water marks cover every task they ran.
            result["worker_peak_bytes"] = _peak_of_descendants(jvm)
            result["tasks"] = len(list(pathlib.Path(version.uri, "data").glob("*.parquet")))
            spark.stop()
    return result


def local_growth() -> list[dict]:
    from avfleet.index.job import LoopEngine

    fleet = cached_fleet(SPEC)
    index = _indexed(fleet, SPEC.start_date, LoopEngine())
    runs = []
    for frames in SIZES:
        for engine in ENGINES:
            runs.append(in_fresh_process(__file__, "--build", fleet, index, str(frames), engine))
            print(json.dumps(runs[-1]), flush=True)  # kept in the log if a later step fails
    return runs


def s3_growth() -> list[dict]:
    from avfleet.core import storage
    from avfleet.dataset.build import DatasetConfig, build_dataset
    from avfleet.dataset.labels import OracleLabels
    from avfleet.dataset.spark import SparkEngine
    from avfleet.index.job import IndexConfig, run_index
    from avfleet.index.job import SparkEngine as IndexEngine
    from avfleet.index.scan import ScanConfig
    from avfleet.index.spark import spark_session

    fleet = cached_fleet(S3_SPEC)
    date = S3_SPEC.start_date
    runs = []
    with counted_s3("growth") as (st, counts):
        spark = spark_session("avfleet-dataset-growth-s3", "local[2]")
        try:
            fs = storage.filesystem("s3://growth", st)
            for path in sorted(pathlib.Path(fleet).glob(f"raw/date={date}/*/*.mcap")):
                fs.put_file(str(path), f"growth/fleet/{path.relative_to(fleet)}")
            index = "s3://growth/index"
            run_index(
                IndexConfig(
                    recordings_uri="s3://growth/fleet",
                    date=date,
                    out_uri=index,
                    scan=ScanConfig(storage=st),
                ),
                IndexEngine(spark),
            )
            for frames in S3_SIZES:
                counts.clear()
                config = DatasetConfig(
                    index_uri=index,
                    selection=f"random:{frames}",
                    out_uri=f"s3://growth/datasets-{frames}",
                    seed=3,
                    storage=st,
                )
                version = build_dataset(config, OracleLabels(fleet), engine=SparkEngine(spark))
                requests = sum(counts.values())
                print(f"{version.num_frames:>5} frames on S3: {requests} requests", flush=True)
                runs.append(
                    {
                        "frames": version.num_frames,
                        "requests": requests,
                        "requests_by_method": dict(counts),
                        "requests_per_frame": requests / version.num_frames,
                    }
                )
        finally:
            spark.stop()
    return runs


def _series(runs: list[dict], engine: str, key: str) -> tuple[list, list]:
    mine = [r for r in runs if r["engine"] == engine]
    return [r["frames"] for r in mine], [r[key] for r in mine]


def main() -> None:
    local = local_growth()
    s3 = s3_growth()
    fits = {
        f"{engine}_{key}": exponent(*_series(local, engine, key))
        for engine in ENGINES
        for key in ("seconds", "python_driver_peak_bytes")
    }
    fits["spark_jvm_driver_peak_bytes"] = exponent(
        *_series(local, "spark", "jvm_driver_peak_bytes")
    )
    fits["spark_worker_peak_bytes"] = exponent(*_series(local, "spark", "worker_peak_bytes"))
    fits["s3_requests"] = exponent([r["frames"] for r in s3], [r["requests"] for r in s3])
    save(
        "dataset_growth",
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

    def mib(engine: str, key: str) -> tuple[list, list]:
        sizes, values = _series(local, engine, key)
        return sizes, [v / 2**20 for v in values]

    plot(
        "dataset_growth",
        "dataset build: cost vs frames selected",
        "frames",
        {
            "seconds, loop": _series(local, "loop", "seconds"),
            "seconds, Spark local[2]": _series(local, "spark", "seconds"),
            "S3 requests (moto, Spark)": ([r["frames"] for r in s3], [r["requests"] for r in s3]),
            "loop process peak MiB": mib("loop", "python_driver_peak_bytes"),
            "Spark Python driver peak MiB": mib("spark", "python_driver_peak_bytes"),
            "Spark JVM driver peak MiB": mib("spark", "jvm_driver_peak_bytes"),
            "Spark largest worker peak MiB": mib("spark", "worker_peak_bytes"),
        },
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--build"]:
        print(json.dumps(build_in_process(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])))
    elif not replot("dataset_growth", figure):
        main()
