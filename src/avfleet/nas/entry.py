"""Arguments of the search job (jobs/search.py)."""

from __future__ import annotations

import argparse

from avfleet.nas.search import SearchConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset version URI")
    parser.add_argument("--out", required=True, help="search folder")
    parser.add_argument(
        "--latency-lut", required=True, help="the bench's table (avfleet nas profile)"
    )
    parser.add_argument("--target-latency-ms", type=float, required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--arch-lr", type=float, default=0.03)
    parser.add_argument("--latency-weight", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.2)
    parser.add_argument("--soft", action="store_true", help="FBNet's soft mix (every block runs)")
    parser.add_argument(
        "--arch-split", type=int, default=5, help="one frame in N trains alpha, the rest weights"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=20)
    parser.add_argument("--stop-after-steps", type=int, default=0)


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    return SearchConfig(
        dataset_uri=args.dataset,
        out_uri=args.out,
        latency_lut_uri=args.latency_lut,
        target_latency_ms=args.target_latency_ms,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        arch_lr=args.arch_lr,
        latency_weight=args.latency_weight,
        warmup=args.warmup,
        hard=not args.soft,
        arch_split=args.arch_split,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        stop_after_steps=args.stop_after_steps,
    )
