"""Arguments and run of `avfleet mine` and `jobs/mine.py`, and `avfleet label`."""

from __future__ import annotations

import argparse
import json

from avfleet.core import storage
from avfleet.core.cliopts import add_field, add_outputs_dir
from avfleet.core.metrics import MetricsConfig
from avfleet.core.storage import write_parquet
from avfleet.mining.job import InProcessScorer, MineConfig, MineReport, run_mine
from avfleet.mining.select import STRATEGIES, SelectionConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from avfleet.core.storage import add_storage_arguments

    add_field(parser, MineConfig, "index_uri", "--index")
    add_field(parser, MineConfig, "date")
    add_field(parser, MineConfig, "model")
    parser.add_argument("--repo", required=True, help="Triton model repository")
    parser.add_argument(
        "--no-pre-annotate",
        dest="pre_annotate",
        action="store_false",
        help="leave the Label Studio tasks without the model's predicted masks",
    )
    add_field(parser, SelectionConfig, "budget")
    add_field(parser, MineConfig, "out_uri", "--out")
    parser.add_argument(
        "--triton-url",
        default=None,
        help="grpc://HOST:PORT or http://HOST:PORT; without it, score in process",
    )
    parser.add_argument(
        "--ready-timeout-s", type=float, default=60.0, help="wait this long for Triton to be ready"
    )
    add_field(parser, MineConfig, "labeled_uri", "--labeled")
    add_field(parser, SelectionConfig, "score")
    add_field(parser, SelectionConfig, "strategy", choices=list(STRATEGIES))
    parser.add_argument(
        "--no-diversity",
        dest="diversity",
        action="store_false",
        help="take each domain's most uncertain frames in order (no k-center)",
    )
    add_field(parser, SelectionConfig, "window_s")
    add_field(parser, SelectionConfig, "alpha")
    add_field(parser, MineConfig, "shard_recordings")
    add_field(parser, MineConfig, "batch_size")
    add_field(parser, SelectionConfig, "seed")
    add_field(parser, MetricsConfig, "pushgateway_url", "--pushgateway")
    add_outputs_dir(parser)
    add_storage_arguments(parser)


def run(args: argparse.Namespace) -> MineReport:
    from avfleet.core.storage import storage_from_args
    from avfleet.serve.repository import load_version

    st = storage_from_args(args)
    config = MineConfig(
        index_uri=args.index,
        date=args.date,
        model=args.model,
        out_uri=args.out,
        selection=SelectionConfig(
            budget=args.budget,
            score=args.score,
            strategy=args.strategy,
            window_s=args.window_s,
            alpha=args.alpha,
            diversity=args.diversity,
            seed=args.seed,
        ),
        labeled_uri=args.labeled,
        shard_recordings=args.shard_recordings,
        batch_size=args.batch_size,
        storage=st,
        metrics=MetricsConfig(pushgateway_url=args.pushgateway),
        pre_annotate_with=(
            load_version(args.repo, args.model, st).info.get("source_model", "")
            if args.pre_annotate
            else ""
        ),
    )
    if args.triton_url:
        from avfleet.serve.client import TritonClientConfig, TritonScorer

        scorer = TritonScorer(
            TritonClientConfig(
                url=args.triton_url, model=args.model, ready_timeout_s=args.ready_timeout_s
            )
        )
        scorer.wait_ready()
    else:
        scorer = InProcessScorer(load_version(args.repo, args.model, st).onnx)
    return run_mine(config, scorer)


def output_parameters(args: argparse.Namespace) -> dict[str, str]:
    """What the mining step hands to later workflow steps (Argo output parameters)."""
    return {
        "selection": storage.join(args.out, "selection.parquet"),
        "queue": storage.join(args.out, "queue.json"),
    }


def label_queue(
    queue_uri: str,
    fleet_uri: str,
    out_uri: str,
    storage_config: storage.StorageConfig | None = None,
) -> int:
    """Answer a labeling queue with the oracle: a labels export (frame_id, mask_png) as a tool would."""
    import pandas as pd

    from avfleet.dataset.labels import OracleLabels

    tasks = json.loads(storage.read_bytes(queue_uri, storage_config))
    frames = pd.DataFrame([t["data"] for t in tasks])
    masks = OracleLabels(fleet_uri, storage_config).labels(frames)
    table = pd.DataFrame({"frame_id": list(masks), "mask_png": list(masks.values())})
    write_parquet(table, out_uri, storage_config)
    return len(table)
