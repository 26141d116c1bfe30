"""`avfleet demo`: the data-engine loop on one machine, on embedded engines.

1. fleet: generate a small fleet, mix in a few hostile recordings as a drill;
2. index: the rendered `fleet-index` workflow on the local executor
   (plan -> spark-submit local[2] -> verify);
3. train: the rendered `train` workflow: a random labeled set (oracle labels),
   the DPE ensemble and the pruned deployable net under torchrun (2 CPU
   processes each), evaluated per domain on a domain-balanced held-out set;
4. deploy: the rendered `deploy` workflow: the pruned net exported to ONNX,
   its engine built, validated by a bench agent on localhost (latency, parity,
   accuracy gates) and promoted: the registry's pointer moves and the run's
   ensemble becomes the Triton model version that mining reads;
5. mine: rounds of the loop: the promoted version served by a real local
   Triton server, a date mined through it (uncertainty x diversity x domain
   quotas), the queue labeled by the oracle, the dataset grown with the picks,
   the ensemble retrained and published for the next round.
6. search (`--search`): the rendered `nas` map job on the local executor: the
   search space profiled on this machine, one search per latency target fanned
   out (withParam, two at a time), each derived net trained from scratch,
   exported and benched, and the Pareto front drawn (measured latency vs
   held-out mIoU).
5b. the baseline: the same rounds with random picks at the same budget.
It ends with the rounds in words and tables, and `demo-output/report/index.html`
(avfleet.report): the rounds plot with both arms, the picks' domain mix against
the fleet's, the first picks with their uncertainty maps and masks, the
compression and search tables, and the promoted engine with its lineage.
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

MARKER = ".avfleet-demo"


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoConfig:
    out_dir: str = "demo-output"
    """Work folder; wiped and rebuilt on each run (it holds only demo data)."""
    vehicles: int = 5
    """Vehicles in the synthetic fleet."""
    minutes_per_day: float = 6.0
    """Driving minutes per vehicle."""
    segment_s: float = 20.0
    """Length of one recording: a drive is 1-3 of them with one set of conditions, so shorter
    recordings make more drives, and no rare condition or hazard is one drive's."""
    seed: int = 77
    """Seed of the fleet (and of everything after it). 77 gives the 5 x 6-minute fleet of
    20-second recordings about the generator's design rates of rare conditions, each in more
    than one drive: of 47 drives, 3 night, 2 twilight, 3 fog, 2 rain, 2 snow."""
    date: str = "2026-11-20"
    """The day generated and indexed."""
    corrupt: tuple[tuple[str, int], ...] = (("truncated", 1), ("bitflip-summary", 1), ("bomb", 1))
    """Hostile recordings mixed in as a drill: (kind, count)."""
    heldout_vehicles: int = 3
    """Vehicles of the held-out fleet (its own seed: never mined or trained on)."""
    heldout_minutes: float = 4.0
    """Its driving minutes per vehicle."""
    heldout_frames: int = 400
    """Frames of the held-out set (a random sample of the held-out fleet, every 0.5 s)."""
    heldout_hazard_frames: int = 120
    """At most this many more held-out frames that show a hazard: the slice the hazard IoU is
    scored on together with the held-out set."""
    train_frames: int = 400
    """Randomly selected frames labeled for the first training set."""
    epochs: int = 3
    """Training epochs of both nets (longer training is an option, not the default)."""
    members: int = 4
    """DPE ensemble members."""
    rounds: int = 2
    """Mining rounds after the first training."""
    round_epochs: int = 2
    """Epochs of each round's training (a fine-tune of the last round's ensemble when
    warm_start; both arms alike)."""
    budget: int = 160
    """Frames selected for labeling per round."""
    random_arm: bool = True
    """Run the same rounds with random picks beside mining (the baseline the report shows)."""
    warm_start: bool = True
    """Each round fine-tunes the last round's ensemble on the grown set (both arms alike);
    False retrains from scratch, as benchmarks/selection_rounds.py does."""
    speedup: float = 2.0
    """The deployable net's latency budget: the dense width-2 net's, as this machine's latency
    table predicts it, divided by this (and half its parameters)."""
    search: bool = False
    """Run the architecture search map job too (about 2 more minutes here)."""
    search_targets: str = "0.8,1.2,1.6"
    """Latency targets of the search, ms at batch 1 on this machine."""
    search_epochs: int = 2
    """Supernet epochs per target."""
    pushgateway: str = ""
    """Pushgateway host:port every stage pushes its metrics to, as in a cluster ('' = none):
    with a Prometheus scraping it (infra/prometheus/prometheus.yml), the dashboards fill."""
    triton_metrics_port: int = 0
    """Port of the local Triton's metrics endpoint during mining (0: any free port)."""


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
    # Imported here, not at the top: the CLI builds its parser from DemoConfig, and every
    # workflow step is a CLI process that should not pay for loading the workflow models.
    from rich.console import Console

    from avfleet.workflows.local.executor import LocalExecutor
    from avfleet.workflows.render import default_manifests_dir

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
        segment_s=config.segment_s,
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
        {
            "recordings": fleet_uri,
            "date": config.date,
            "index": index_uri,
            "pushgateway": config.pushgateway,
        },
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
    heldout = _heldout(root, config)
    heldout_uri = heldout.dataset_uri
    lut_uri, budget = _latency_budget(root, config, console)
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
        "group-sparsity": "0.005",
        "finetune-epochs": "0",
        "latency-lut": lut_uri,
        "pushgateway": config.pushgateway,
        **budget,
    }
    result = executor.run_file(
        str(default_manifests_dir() / "workflows" / "train.yaml"), train_params
    )
    console.print(result.summary())
    if not result.succeeded:
        console.print(f"[red]workflow failed; step logs under {root / 'local-run'}")
        return result.exit_code
    dataset_uri = next(n for n in result.nodes if n.name.endswith(".dataset")).outputs[
        "dataset-uri"
    ]

    console.rule("[bold]summary of the first training")
    _print_training(console, root / "runs" / "round-0")

    console.rule("[bold]4. deploy: the deploy workflow (export -> build -> bench -> promote)")
    result = executor.run_file(
        str(default_manifests_dir() / "workflows" / "deploy.yaml"),
        {
            "model-uri": str(root / "runs" / "round-0" / "deployable" / "model"),
            "validation": heldout_uri,
            "releases": str(root / "releases"),
            "engine-cache": str(root / "engines"),
            "registry": str(root / "registry"),
            "model-repo": str(root / "loop" / "repo"),
            "model-name": "dpe",
            "pushgateway": config.pushgateway,
            "triton-url": "",  # the rounds start their own Triton for each version they mine with
        },
    )
    console.print(result.summary())
    if not result.succeeded:
        console.print(f"[red]workflow failed; step logs under {root / 'local-run'}")
        return result.exit_code
    promoted = _print_promotion(console, root / "registry")

    console.rule(f"[bold]5. mine: {config.rounds} rounds of mine -> label -> retrain")
    rounds, random_rounds = _mining_rounds(
        console, root, config, fleet_uri, index_uri, heldout, promoted
    )

    front = None
    if config.search:
        console.rule(f"[bold]6. search: the nas map job at {config.search_targets} ms")
        front = _search(console, root, config, executor, dataset_uri, heldout_uri)
        if front is None:
            return 1

    console.rule("[bold]summary")
    if rounds:
        _print_rounds(console, root, rounds, random_rounds)
    from avfleet.report import write_report

    page, summary = write_report(str(root))
    for line in summary["story"]:
        console.print(line)
    console.print(
        f"promoted engine: release {promoted['release_id']}, p50 {promoted['latency']['p50_ms']:.2f} ms, "
        f"p99 {promoted['latency']['p99_ms']:.2f} ms (batch 1, 1 CPU thread), held-out mIoU "
        f"{100 * promoted['miou']:.1f}; lineage: avfleet lineage --registry {root / 'registry'}"
    )
    console.print(
        f"report: {page} (summary.json beside it; avfleet report --run {root} redraws it)"
    )
    if front is None:
        console.print(
            "architecture search (the nas map job, about 2 more minutes): avfleet demo --search"
        )
    console.print(f"[green]demo finished in {time.time() - started:.0f} s[/]; outputs in {root}")
    return 0


def _search(console, root, config, executor, dataset_uri: str, heldout_uri: str):  # noqa: ANN001
    from avfleet.workflows.render import default_manifests_dir

    """The nas workflow on the round-0 dataset; its front's plot (the report embeds it)."""
    import json

    result = executor.run_file(
        str(default_manifests_dir() / "workflows" / "nas.yaml"),
        {
            "dataset": dataset_uri,
            "validation": heldout_uri,
            "out": str(root / "nas"),
            "targets": config.search_targets,
            "search-epochs": str(config.search_epochs),
            "train-epochs": str(config.epochs),
            "batch-size": "8",
            "nodes": "1",
            "lut-cache": str(root / "latency" / "cache"),
            "bench-runs": "200",
            "max-miou-drop": "0.05",
        },
    )
    console.print(result.summary())
    if not result.succeeded:
        console.print(f"[red]workflow failed; step logs under {root / 'local-run'}")
        return None
    run = next(p for p in (root / "nas").iterdir() if p.is_dir())
    console.print((run / "pareto" / "pareto.md").read_text())
    doc = json.loads((run / "pareto" / "pareto.json").read_text())
    cost = sum(c["search"]["process_hours"] for c in doc["candidates"])
    console.print(
        f"front: {', '.join(doc['front'])}; search cost {cost * 3600:.0f} CPU-seconds in all; "
        f"pick one for a budget: avfleet nas pick --pareto {run / 'pareto' / 'pareto.json'} "
        "--budget-ms X"
    )
    return run / "pareto" / "pareto.png"


def _print_promotion(console, registry: pathlib.Path) -> dict:  # noqa: ANN001
    """The promoted release's record, printed with its lineage."""
    from avfleet.deploy.lineage import lineage, render
    from avfleet.deploy.registry import promoted, release_record

    record = release_record(str(registry), promoted(str(registry))["release_id"])
    checks = record["verdict"]["checks"]
    console.print(
        f"promoted release {record['release_id']}: p50 {record['latency']['p50_ms']:.2f} ms, "
        f"p99 {record['latency']['p99_ms']:.2f} ms (budget {checks['latency_p99_ms']['limit']:g}), "
        f"max abs error {record['parity']['max_abs_error']:.2g}, argmax agreement "
        f"{record['parity']['argmax_agreement']:.4f}, mIoU {100 * record['miou']:.1f} "
        f"(framework {100 * record['export']['reference_miou']:.1f}); mining reads {record['model_ref']}"
    )
    console.print(render(lineage(str(registry)), frames=3))
    return record


def _mining_rounds(console, root, config, fleet_uri, index_uri, heldout, promoted):  # noqa: ANN001, ANN202
    """The mined rounds (through Triton) and, with random_arm, the same rounds with random picks."""
    from avfleet.mining.rounds import RoundsConfig, run_rounds
    from avfleet.mining.select import SelectionConfig

    def show(r) -> None:  # noqa: ANN001
        picks = ", ".join(f"{d} {n}" for d, n in sorted(r.mining.selected_per_domain.items()))
        which = " (the promoted version)" if r.model_ref == promoted["model_ref"] else ""
        console.print(
            f"round {r.round}: mined with {r.model_ref}{which} ({r.mining.candidates} candidates of "
            f"{r.mining.frames_indexed} frames, {r.mining.frames_per_s:.0f} frames/s through Triton);"
            f" picked {picks}; {100 * r.hazard_pick_share:.0f}% of the picks show a hazard "
            f"({100 * r.hazard_pool_share:.1f}% of the candidates); dataset {r.dataset_frames} "
            f"frames; held-out mIoU {100 * r.miou:.1f}, hazard IoU {_pct(r.hazard_iou)}"
        )

    def show_random(r) -> None:  # noqa: ANN001
        console.print(
            f"random arm, round {r.round}: {r.mining.selected} random picks, "
            f"{100 * r.hazard_pick_share:.0f}% showing a hazard; dataset {r.dataset_frames} "
            f"frames; held-out mIoU {100 * r.miou:.1f}, hazard IoU {_pct(r.hazard_iou)}"
        )

    base = RoundsConfig(
        root=str(root / "loop"),
        fleet_uri=fleet_uri,
        index_uri=index_uri,
        date=config.date,
        heldout_uri=heldout.dataset_uri,
        hazard_heldout_uri=heldout.hazard_uri,
        first_run=str(root / "runs" / "round-0" / "ensemble"),
        rounds=config.rounds,
        selection=SelectionConfig(budget=config.budget),
        members=config.members,
        epochs=config.round_epochs,
        seed=config.seed,
        warm_start=config.warm_start,
        pushgateway=config.pushgateway,
        triton_metrics_port=config.triton_metrics_port,
    )
    mined = run_rounds(base, on_round=show)
    if not config.random_arm:
        return mined, []
    console.print(
        f"the baseline: the same {config.rounds} rounds with {config.budget} random picks each"
    )
    random = run_rounds(
        dataclasses.replace(
            base,
            root=str(root / "loop-random"),
            selection=SelectionConfig(budget=config.budget, strategy="random", seed=config.seed),
            triton=False,  # random picks ignore the scores: no server needed
        ),
        on_round=show_random,
    )
    return mined, random


def _print_rounds(console, root: pathlib.Path, rounds: list, random_rounds: list) -> None:  # noqa: ANN001
    import json

    from rich.table import Table

    from avfleet.report import is_rare
    from avfleet.train.evaluate import mean_by_time_of_day

    first = json.loads(
        (root / "runs" / "round-0" / "ensemble" / "model" / "evaluation.json").read_text()
    )
    rows = [(0, first["miou"], first["miou_per_domain"])] + [
        (r.round, r.miou, r.miou_per_domain) for r in rounds
    ]
    random_miou = {0: first["miou"], **{r.round: r.miou for r in random_rounds}}
    groups = list(mean_by_time_of_day(rows[0][2]))
    table = Table(title="DPE ensemble, held-out mIoU (%) per round")
    for col in ["round", "all", *(["random picks"] if random_rounds else []), "rare", *groups]:
        table.add_column(col, justify="right")
    for r, miou, per_domain in rows:
        means = mean_by_time_of_day(per_domain)
        rare = [v for d, v in per_domain.items() if is_rare(d)]
        table.add_row(
            str(r),
            f"{100 * miou:.1f}",
            *([f"{100 * random_miou[r]:.1f}" if r in random_miou else ""] if random_rounds else []),
            f"{100 * sum(rare) / max(len(rare), 1):.1f}",
            *(f"{100 * means[g]:.1f}" for g in groups),
        )
    console.print(table)

    fleet = rounds[0].mining.fleet_share_per_domain
    fleet_tod: dict[str, float] = {}
    for domain, share in fleet.items():
        fleet_tod[domain.split("/")[0]] = fleet_tod.get(domain.split("/")[0], 0) + share
    mix = Table(title="selections vs the fleet, by time of day (%)")
    mix.add_column("time of day")
    mix.add_column("fleet", justify="right")
    for r in rounds:
        mix.add_column(f"round {r.round} picks", justify="right")
    for tod in sorted(fleet_tod):
        shares = [
            sum(v for d, v in r.mining.selected_per_domain.items() if d.startswith(tod + "/"))
            / r.mining.selected
            for r in rounds
        ]
        mix.add_row(tod, f"{100 * fleet_tod[tod]:.1f}", *(f"{100 * x:.1f}" for x in shares))
    console.print(mix)


def _latency_budget(root: pathlib.Path, config: DemoConfig, console) -> tuple[str, dict]:  # noqa: ANN001
    """This machine's latency table for the width-2 net's pruning grid, and the budget from it."""
    import time

    from avfleet.latency.lut import profile_to_file, pruning_units
    from avfleet.train.export import INPUT_HW
    from avfleet.train.models import build, default_arch, num_parameters

    arch = default_arch(width=2.0)
    started = time.time()
    lut_uri = str(root / "latency" / "lut.json")
    cache = str(root / "latency" / "cache")  # the search (--search) shares it
    table = profile_to_file(pruning_units(arch, INPUT_HW), INPUT_HW, lut_uri, cache=cache)
    dense_ms = table.predict(arch).total_ms
    target_ms = dense_ms / config.speedup
    target_params = num_parameters(build(arch)) // 2
    console.print(
        f"latency table: {len(table.entries)} units on {table.bench} in {time.time() - started:.0f} s; "
        f"dense width-2 net {dense_ms:.2f} ms predicted -> budget {target_ms:.2f} ms and "
        f"{target_params:,} parameters"
    )
    return lut_uri, {"target-latency-ms": f"{target_ms:.4f}", "target-params": str(target_params)}


def _heldout(root: pathlib.Path, config: DemoConfig):  # noqa: ANN202
    """The held-out set: recordings of the fleet's own world with a seed of their own (never
    mined or trained on), and its hazard-rich slice (avfleet.dataset.heldout)."""
    from avfleet.dataset.heldout import build_heldout

    spec = FleetSpec(
        seed=config.seed + 1000,
        vehicles=config.heldout_vehicles,
        minutes_per_day=config.heldout_minutes,
        segment_s=config.segment_s,
        start_date=config.date,
    )
    return build_heldout(
        spec,
        str(root / "heldout"),
        frames=config.heldout_frames,
        hazard_frames=config.heldout_hazard_frames,
        spacing_s=0.5,
        seed=config.seed,
        show_progress=True,
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


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
    compression = archs["deployable"].get("compression")
    if compression:
        params, measured = compression["parameters"], compression["measured_latency_ms"]
        console.print(
            f"compression: {params['before']:,} -> {params['after']:,} parameters "
            f"({100 * (1 - params['after'] / params['before']):.0f}% removed); latency measured on "
            f"ONNX Runtime here (the local bench's runtime, batch 1, one thread) "
            f"{measured['before']:.2f} -> {measured['after']:.2f} ms "
            f"({measured['before'] / measured['after']:.2f}x faster)"
        )
        if "budget" in compression:
            console.print(f"budget: {compression['budget']['message']}")
    console.print(
        f"training throughput: ensemble {results['ensemble']['samples_per_s']:.0f} frames/s, deployable {dep['samples_per_s']:.0f} frames/s (2 CPU processes)"
    )
