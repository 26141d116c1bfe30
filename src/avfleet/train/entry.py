"""Arguments of the training job, shared by jobs/train.py and `avfleet train`."""

from __future__ import annotations

import argparse

from avfleet.core.metrics import MetricsConfig
from avfleet.train.loop import TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset version URI")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument(
        "--members", type=int, default=1, help="1: deployable net; E > 1: DPE ensemble"
    )
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument(
        "--arch", default="", help="an arch.json to train (a searched net) instead of the family"
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--init", default="", help="a model folder whose weights start training (warm start)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=0,
        help="train exactly this many steps instead of --epochs (same compute for any set size)",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--dpe-strength", type=float, default=0.0)
    parser.add_argument("--group-sparsity", type=float, default=0.0)
    parser.add_argument(
        "--finetune-epochs", type=int, default=0, help="after pruning: epochs without the penalty"
    )
    parser.add_argument(
        "--low-rank", type=float, default=0.0, help="nuclear-norm strength; 0 disables"
    )
    parser.add_argument(
        "--low-rank-energy", type=float, default=0.9, help="spectral energy kept at the reload"
    )
    parser.add_argument(
        "--target-latency-ms",
        type=float,
        default=0.0,
        help="latency budget of the pruned net (batch 1, as the latency table predicts); 0: none",
    )
    parser.add_argument(
        "--target-params", type=int, default=0, help="parameter budget of the pruned net; 0: none"
    )
    parser.add_argument(
        "--latency-lut",
        default="",
        help="the bench's latency table (avfleet latency profile): latency-weighted pruning",
    )
    parser.add_argument(
        "--expand-ratio",
        type=int,
        default=1,
        help="ExpandNets: train dense convs expanded r times, contract exactly after (1: off)",
    )
    parser.add_argument(
        "--pseudo-label-weight",
        type=float,
        default=1.0,
        help="loss weight of pseudo-labeled frames against human/oracle ones, in [0, 1]",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=20)
    parser.add_argument(
        "--log-every",
        type=int,
        default=10,
        help="report loss, lr and frames/s every N steps (a bar on a terminal, log lines in a "
        "pod, pushed to the Pushgateway); 0: only at checkpoints (default 10)",
    )
    parser.add_argument("--stop-after-steps", type=int, default=0)
    parser.add_argument("--pushgateway", default=None)


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
        pseudo_label_weight=args.pseudo_label_weight,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        stop_after_steps=args.stop_after_steps,
        metrics=MetricsConfig(pushgateway_url=args.pushgateway),
    )
