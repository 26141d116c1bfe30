"""`avfleet demo`: the data-engine loop on one machine, on embedded engines.

1. fleet: generate a small fleet, mix in a few hostile recordings as a drill;
2. index: the rendered `fleet-index` workflow on the local executor
   (plan -> spark-submit local[2] -> verify);
3. train: the rendered `train` workflow: a random labeled set (oracle labels),
   the DPE ensemble and the pruned deployable net under torchrun (2 CPU
   processes each), evaluated per domain on a domain-balanced held-out set.
It ends with a summary and plots. Later stages (mining, deploy) extend it.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import time

from avfleet.core.errors import PermanentError
from avfleet.fleet.corrupt import corrupt_fleet
from avfleet.fleet.generate import generate_fleet
from avfleet.fleet.world import FleetSpec
from avfleet.index.summary import print_index_report
from avfleet.index.table import IndexTable
from avfleet.workflows.local.executor import LocalExecutor
from avfleet.workflows.render import default_manifests_dir

MARKER = ".avfleet-demo"


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoConfig:
    out_dir: str = "demo-output"
    """Work folder; wiped and rebuilt on each run (it holds only demo data)."""
    vehicles: int = 6
    """Vehicles in the synthetic fleet."""
    minutes_per_day: float = 6.0
    """Driving minutes per vehicle (one-minute recordings)."""
    seed: int = 0
    """Seed of the fleet."""
    date: str = "2026-11-20"
    """The day generated and indexed."""
    corrupt: tuple[tuple[str, int], ...] = (("truncated", 1), ("bitflip-summary", 1), ("bomb", 1))
    """Hostile recordings mixed in as a drill: (kind, count)."""
    train_frames: int = 480
    """Randomly selected frames labeled for the first training set."""
    epochs: int = 3
    """Training epochs of both nets (longer training is an option, not the default)."""
    members: int = 4
    """DPE ensemble members."""


def _fresh_folder(path: pathlib.Path) -> None:
    if path.exists():
        if not (path / MARKER).exists():
            raise PermanentError(
                f"{path} exists and is not a demo folder; pass --out to a new or demo folder"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("avfleet demo output; safe to delete\n")


def run_demo(config: DemoConfig) -> int:
    from rich.console import Console

    console = Console()
    started = time.time()
    root = pathlib.Path(config.out_dir).resolve()
    _fresh_folder(root)
    fleet_uri, index_uri = str(root / "fleet"), str(root / "index")

    console.rule("[bold]1. fleet: generate recordings")
    spec = FleetSpec(
        seed=config.seed,
        vehicles=config.vehicles,
        minutes_per_day=config.minutes_per_day,
        start_date=config.date,
    )
    uris = generate_fleet(spec, fleet_uri, show_progress=True)
    console.print(f"{len(uris)} recordings under {fleet_uri}/raw/date={config.date}")
    drill = corrupt_fleet(fleet_uri, config.date, dict(config.corrupt), seed=config.seed)
    console.print(
        "drill: corrupted " + ", ".join(f"{c.uri.rsplit('/', 1)[-1]} ({c.kind})" for c in drill)
    )

    console.rule("[bold]2. index: the fleet-index workflow on the local executor")
    manifest = default_manifests_dir() / "workflows" / "fleet-index.yaml"
    executor = LocalExecutor(workdir=str(root / "local-run"))
    result = executor.run_file(
        str(manifest),
        {"recordings": fleet_uri, "date": config.date, "index": index_uri, "pushgateway": ""},
    )
    console.print(result.summary())
    if not result.succeeded:
        console.print(f"[red]workflow failed; step logs under {root / 'local-run'}")
        return result.exit_code

    report = IndexTable(index_uri).report(config.date)
    print_index_report(report)

    console.rule(
        "[bold]3. train: the train workflow (dataset -> DPE ensemble + pruned net -> evaluation)"
    )
    heldout_uri = _heldout(root, config)
    train_params = {
        "index": index_uri,
        "frames": f"random:{config.train_frames}",
        "labels": f"oracle:{fleet_uri}",
        "datasets": str(root / "datasets"),
        "runs": str(root / "runs"),
        "heldout": heldout_uri,
        "run-name": "round-0",
        "members": str(config.members),
        "epochs": str(config.epochs),
        "nodes": "1",
        "width": "2.0",
        "group-sparsity": "0.5",
        "finetune-epochs": "2",
    }
    result = executor.run_file(
        str(default_manifests_dir() / "workflows" / "train.yaml"), train_params
    )
    console.print(result.summary())
    if not result.succeeded:
        console.print(f"[red]workflow failed; step logs under {root / 'local-run'}")
        return result.exit_code

    console.rule("[bold]summary")
    _print_training(console, root / "runs" / "round-0")
    plot = _plot_domains(report.frames_per_domain, root / "report" / "domain_mix.png")
    console.print(f"plots: {plot}")
    console.print(f"[green]demo finished in {time.time() - started:.0f} s[/]; outputs in {root}")
    return 0


def _heldout(root: pathlib.Path, config: DemoConfig) -> str:
    """A domain-balanced held-out set (its own recordings, never mined or trained on), as a dataset."""
    from avfleet.dataset.build import DatasetConfig, build_dataset
    from avfleet.dataset.labels import OracleLabels
    from avfleet.fleet.generate import generate_heldout
    from avfleet.index.job import IndexConfig, LoopEngine, run_index

    spec = FleetSpec(seed=config.seed + 1000, segment_s=6.0, start_date=config.date)
    fleet, index = str(root / "heldout" / "fleet"), str(root / "heldout" / "index")
    generate_heldout(spec, fleet, show_progress=True)
    run_index(IndexConfig(recordings_uri=fleet, date=config.date, out_uri=index), LoopEngine())
    version = build_dataset(
        DatasetConfig(
            index_uri=index,
            selection="random:480",
            out_uri=str(root / "heldout" / "datasets"),
            seed=config.seed,
        ),
        OracleLabels(fleet),
    )
    return version.uri


def _print_training(console, run: pathlib.Path) -> None:
    import json

    from rich.table import Table

    evals = {
        kind: json.loads((run / kind / "model" / "evaluation.json").read_text())
        for kind in ("ensemble", "deployable")
    }
    archs = {
        kind: json.loads((run / kind / "model" / "arch.json").read_text())
        for kind in ("ensemble", "deployable")
    }
    results = {
        kind: json.loads((run / kind / "result.json").read_text())
        for kind in ("ensemble", "deployable")
    }
    table = Table(title="held-out mIoU per domain (%)")
    table.add_column("domain")
    table.add_column(f"DPE ensemble (E={archs['ensemble']['members']})", justify="right")
    table.add_column("pruned deployable net", justify="right")
    for domain in evals["ensemble"]["miou_per_domain"]:
        table.add_row(
            domain,
            *(
                f"{100 * evals[k]['miou_per_domain'][domain]:.1f}"
                for k in ("ensemble", "deployable")
            ),
        )
    table.add_row(
        "[bold]all", *(f"[bold]{100 * evals[k]['miou']:.1f}" for k in ("ensemble", "deployable"))
    )
    console.print(table)
    dep = results["deployable"]
    if dep["pruned_parameters"]:
        before = archs["deployable"].get("pruned_from_parameters", dep["num_parameters"])
        console.print(
            f"pruning: {before:,} -> {dep['pruned_parameters']:,} parameters ({100 * (1 - dep['pruned_parameters'] / before):.0f}% removed)"
        )
    console.print(
        f"training throughput: ensemble {results['ensemble']['samples_per_s']:.0f} frames/s, deployable {dep['samples_per_s']:.0f} frames/s (2 CPU processes)"
    )


def _plot_domains(frames_per_domain: dict[str, int], path: pathlib.Path) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    items = sorted(frames_per_domain.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#4472c4")
    ax.set_xlabel("frames")
    ax.set_title("fleet frames per domain (time of day / weather / road)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
