"""Arguments and run of `avfleet mine` and `jobs/mine.py`, and `avfleet label`."""

from __future__ import annotations

import argparse
import json

from avfleet.core import storage
from avfleet.core.metrics import MetricsConfig
from avfleet.mining.job import InProcessScorer, MineConfig, MineReport, run_mine, write_parquet
from avfleet.mining.select import STRATEGIES, SelectionConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from avfleet.core.storage import add_storage_arguments

    parser.add_argument("--index", required=True, help="frame index root")
    parser.add_argument("--date", required=True, help="index date to mine, YYYY-MM-DD")
    parser.add_argument("--model", required=True, help="NAME:VERSION in the model repository")
    parser.add_argument("--repo", required=True, help="Triton model repository")
    parser.add_argument(
        "--no-pre-annotate",
        dest="pre_annotate",
        action="store_false",
        help="leave the Label Studio tasks without the model's predicted masks",
    )
    parser.add_argument("--budget", type=int, required=True, help="K: frames to select")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument(
        "--triton-url",
        default=None,
        help="grpc://HOST:PORT or http://HOST:PORT; without it, score in process",
    )
    parser.add_argument(
        "--ready-timeout-s", type=float, default=60.0, help="wait this long for Triton to be ready"
    )
    parser.add_argument(
        "--labeled", default=None, help="a dataset version whose frames are already labeled"
    )
    parser.add_argument("--score", default="mutual_information")
    parser.add_argument(
        "--strategy",
        default="uncertainty",
        choices=list(STRATEGIES),
        help="uncertainty (scores, quotas, diversity), stratified (quotas, random inside a "
        "domain) or random (uniform)",
    )
    parser.add_argument(
        "--no-diversity",
        dest="diversity",
        action="store_false",
        help="take each domain's most uncertain frames in order (no k-center)",
    )
    parser.add_argument("--window-s", type=float, default=2.0, help="de-duplication window")
    parser.add_argument("--alpha", type=float, default=0.5, help="domain quota exponent")
    parser.add_argument("--shard-recordings", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pushgateway", default=None)
    parser.add_argument("--outputs-dir", default=None, help="write output parameters here (Argo)")
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
