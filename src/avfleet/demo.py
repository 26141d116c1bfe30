"""`avfleet demo`: the data-engine loop on one machine, on embedded engines.

Today's loop is the first stage: generate a small fleet, mix in a few hostile
recordings as a drill, and index the day through the rendered `fleet-index`
workflow with the local executor (plan -> spark-submit local[2] -> verify).
It ends with a summary and a plot of the fleet's domain mix. Later stages
(dataset, training, mining, deploy) extend this same function.
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

    console.rule("[bold]summary")
    report = IndexTable(index_uri).report(config.date)
    print_index_report(report)
    plot = _plot_domains(report.frames_per_domain, root / "report" / "domain_mix.png")
    console.print(f"plot: {plot}")
    console.print(f"[green]demo finished in {time.time() - started:.0f} s[/]; outputs in {root}")
    return 0


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
