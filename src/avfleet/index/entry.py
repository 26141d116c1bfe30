"""Arguments and main of the index job, shared by `avfleet index` and jobs/index_recordings.py."""

from __future__ import annotations

import argparse
import json

from avfleet.core.cliopts import add_field
from avfleet.core.metrics import MetricsConfig
from avfleet.core.storage import add_storage_arguments, storage_from_args
from avfleet.index.job import IndexConfig, IndexReport, LoopEngine, SparkEngine, run_index
from avfleet.index.scan import ScanConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_field(parser, IndexConfig, "recordings_uri", "--recordings")
    add_field(parser, IndexConfig, "date")
    add_field(parser, IndexConfig, "out_uri", "--index")
    add_field(parser, IndexConfig, "run_id")
    add_field(parser, IndexConfig, "num_partitions")
    add_field(parser, IndexConfig, "worker_memory_cap_bytes")
    add_field(parser, MetricsConfig, "pushgateway_url", "--pushgateway")
    parser.add_argument(
        "--summary-json",
        default=None,
        help="also write the run's report to this local path (Argo output parameter)",
    )
    add_storage_arguments(parser)


def config_from_args(args: argparse.Namespace) -> IndexConfig:
    return IndexConfig(
        recordings_uri=args.recordings,
        date=args.date,
        out_uri=args.index,
        run_id=args.run_id,
        num_partitions=args.num_partitions,
        worker_memory_cap_bytes=args.worker_memory_cap_bytes,
        scan=ScanConfig(storage=storage_from_args(args)),
        metrics=MetricsConfig(pushgateway_url=args.pushgateway),
    )


def run(args: argparse.Namespace, *, master: str | None, engine: str = "spark") -> IndexReport:
    """Build the config, run the job on the chosen engine, write the optional summary file."""
    config = config_from_args(args)
    if engine == "loop":
        report = run_index(config, LoopEngine())
    else:
        from avfleet.index.spark import spark_session

        spark = spark_session(f"avfleet-index-{config.date}", master)
        report = run_index(config, SparkEngine(spark))
    if args.summary_json:
        import dataclasses
        import pathlib

        path = pathlib.Path(args.summary_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dataclasses.asdict(report), default=str))
    return report
