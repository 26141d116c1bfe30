"""Arguments of the training job, shared by jobs/train.py and `avfleet train`."""

from __future__ import annotations

import argparse

from avfleet.core.cliopts import add_field
from avfleet.core.metrics import MetricsConfig
from avfleet.train.config import TrainConfig

# The options, in order, with the TrainConfig field each one sets (flag: None = --field-name).
TRAIN_OPTIONS = {
    "dataset_uri": "--dataset",
    "out_uri": "--out",
    "members": None,
    "width": None,
    "arch_uri": "--arch",
    "epochs": None,
    "init_uri": "--init",
    "steps": None,
    "batch_size": None,
    "lr": None,
    "dpe_strength": None,
    "group_sparsity": None,
    "finetune_epochs": None,
    "low_rank": None,
    "low_rank_energy": None,
    "target_latency_ms": None,
    "target_params": None,
    "latency_lut_uri": "--latency-lut",
    "expand_ratio": None,
    "class_weights": None,
    "pseudo_label_weight": None,
    "seed": None,
    "checkpoint_every": None,
    "log_every": None,
    "stop_after_steps": None,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The training job's options, made from TrainConfig's fields (help: their docstrings)."""
    for name, flag in TRAIN_OPTIONS.items():
        add_field(parser, TrainConfig, name, *([flag] if flag else []))
    add_field(parser, MetricsConfig, "pushgateway_url", "--pushgateway")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        dataset_uri=args.dataset,
        out_uri=args.out,
        members=args.members,
        width=args.width,
        arch_uri=args.arch,
        epochs=args.epochs,
        steps=args.steps,
        init_uri=args.init,
        batch_size=args.batch_size,
        lr=args.lr,
        dpe_strength=args.dpe_strength,
        group_sparsity=args.group_sparsity,
        low_rank=args.low_rank,
        low_rank_energy=args.low_rank_energy,
        finetune_epochs=args.finetune_epochs,
        target_latency_ms=args.target_latency_ms,
        target_params=args.target_params,
        latency_lut_uri=args.latency_lut,
        expand_ratio=args.expand_ratio,
        class_weights=args.class_weights,
        pseudo_label_weight=args.pseudo_label_weight,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        stop_after_steps=args.stop_after_steps,
        metrics=MetricsConfig(pushgateway_url=args.pushgateway),
    )
