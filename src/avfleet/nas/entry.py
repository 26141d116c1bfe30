"""Arguments of the search job (jobs/search.py)."""

from __future__ import annotations

import argparse

from avfleet.core.cliopts import add_field
from avfleet.nas.config import SearchConfig

# The options, in order, with the SearchConfig field each one sets (flag: None = --field-name).
SEARCH_OPTIONS = {
    "dataset_uri": "--dataset",
    "out_uri": "--out",
    "latency_lut_uri": "--latency-lut",
    "target_latency_ms": None,
    "epochs": None,
    "batch_size": None,
    "lr": None,
    "arch_lr": None,
    "latency_weight": None,
    "warmup": None,
    "arch_split": None,
    "seed": None,
    "checkpoint_every": None,
    "stop_after_steps": None,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The search job's options, made from SearchConfig's fields (help: their docstrings)."""
    for name, flag in SEARCH_OPTIONS.items():
        add_field(parser, SearchConfig, name, *([flag] if flag else []))
    parser.add_argument("--soft", action="store_true", help="FBNet's soft mix (every block runs)")


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
