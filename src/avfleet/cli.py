"""The `avfleet` command line.

avfleet fleet generate|heldout|corrupt   synthetic fleet recordings
avfleet index                            recordings -> frame index (Spark)
avfleet dataset build|check             training sets from the index
avfleet mine / label / pseudo-label      select frames to label, label them
avfleet evaluate                         mIoU of a model on a dataset
avfleet workflows render                 Hera builders -> manifests/
avfleet local-run FILE -p k=v            run a rendered workflow on this machine
avfleet deploy / bench / lineage         the deploy stage (avfleet.cli_deploy)
avfleet nas ...                          architecture search and sweeps (avfleet.cli_nas)
avfleet demo                             the whole loop on embedded engines
avfleet report --run DIR                 a demo run's report/index.html and summary.json
avfleet metrics forget                   delete avfleet's Pushgateway groups past the retention
avfleet pin-model --model NAME:V         keep a repository version served (a backfill's)
avfleet step plan-index|verify-index|... the workflows' plumbing steps (plan, verify, publish)

Every command takes --json (its result as one JSON document on stdout); every option's help
is its config field's docstring (avfleet.core.cliopts).
"""

from __future__ import annotations

import argparse
import sys

from avfleet import cli_deploy, cli_nas
from avfleet.core.cliopts import (
    Parser,
    add_field,
    add_fields,
    add_json_flags,
    add_outputs_dir,
    emit,
    from_args,
)
from avfleet.core.entry import run_main
from avfleet.core.logs import setup_logging

HELDOUT_FIELDS = ("seed", "segment_s", "camera_hz", "gps_hz", "can_hz", "height", "width")
"""What of FleetSpec a held-out set takes: its domains and rates are its own."""


def _fleet_parsers(sub: argparse._SubParsersAction) -> None:
    fleet = sub.add_parser("fleet", help="synthetic fleet recordings").add_subparsers(
        dest="fleet_cmd", required=True
    )
    from avfleet.fleet.world import FleetSpec

    gen = fleet.add_parser("generate", help="write a fleet of MCAP recordings")
    gen.add_argument("--out", required=True, help="fleet root (path, file:// or s3://)")
    add_fields(gen, FleetSpec)
    gen.add_argument("--workers", type=int, default=2, help="processes rendering recordings")
    held = fleet.add_parser("heldout", help="write the domain-balanced held-out test set")
    held.add_argument("--out", required=True, help="held-out root, apart from the fleet's")
    held.add_argument(
        "--segments-per-domain",
        type=int,
        default=1,
        help="recordings per (time of day, weather, road) domain",
    )
    add_fields(held, FleetSpec, HELDOUT_FIELDS, seed=1, segment_s=10.0)
    held.add_argument("--workers", type=int, default=2, help="processes rendering recordings")
    bad = fleet.add_parser(
        "corrupt", help="corrupt some recordings of a date in place (drills, tests)"
    )
    bad.add_argument("--fleet", required=True, help="fleet root whose recordings to corrupt")
    bad.add_argument("--date", required=True, help="the day whose recordings to corrupt")
    for kind in ("truncated", "bitflip-summary", "bitflip-signals", "bomb", "bomb-lying"):
        bad.add_argument(f"--{kind}", type=int, default=0, help=f"number of {kind} recordings")
    bad.add_argument("--seed", type=int, default=0, help="seed of which files and bytes")
    for p in (gen, held, bad):
        from avfleet.core.storage import add_storage_arguments

        add_storage_arguments(p)


def _cmd_fleet(args: argparse.Namespace) -> None:
    from avfleet.core.storage import storage_from_args
    from avfleet.fleet import generate
    from avfleet.fleet.world import FleetSpec

    st = storage_from_args(args)
    if args.fleet_cmd == "generate":
        spec = from_args(FleetSpec, args)
        uris = generate.generate_fleet(spec, args.out, workers=args.workers, storage_config=st)
        emit(args, {"recordings": uris}, f"{len(uris)} recordings under {args.out}")
    elif args.fleet_cmd == "heldout":
        spec = from_args(FleetSpec, args, HELDOUT_FIELDS)
        uris = generate.generate_heldout(
            spec, args.out, args.segments_per_domain, workers=args.workers, storage_config=st
        )
        emit(args, {"recordings": uris}, f"{len(uris)} held-out recordings under {args.out}")
    else:
        from avfleet.fleet.corrupt import KINDS, corrupt_fleet

        counts = {
            k: getattr(args, k.replace("-", "_"))
            for k in KINDS
            if getattr(args, k.replace("-", "_"))
        }
        done = corrupt_fleet(args.fleet, args.date, counts, args.seed, st)
        emit(args, {"corrupted": done}, "\n".join(f"{c.kind:16s} {c.uri}" for c in done))


def _index_parsers(sub: argparse._SubParsersAction, step: argparse._SubParsersAction) -> None:
    from avfleet.index import entry, spark_k8s
    from avfleet.index.job import IndexConfig

    index = sub.add_parser("index", help="index one day of recordings (Spark, metadata only)")
    entry.add_arguments(index)
    index.add_argument("--master", default="local[2]", help="Spark master")
    index.add_argument(
        "--engine",
        choices=("spark", "loop"),
        default="spark",
        help="loop: one process without Spark (baseline)",
    )

    plan = step.add_parser("plan-index", help="count a date's recordings and size the Spark job")
    add_field(plan, IndexConfig, "recordings_uri", "--recordings")
    add_field(plan, IndexConfig, "date")
    plan.add_argument(
        "--files-per-executor", type=int, default=200, help="recordings one Spark executor scans"
    )
    plan.add_argument(
        "--max-executors", type=int, default=20, help="the most executors the job may ask for"
    )
    add_outputs_dir(plan)
    entry.add_storage_arguments(plan)

    driver = step.add_parser(
        "spark-driver",
        help="run a Spark job from this pod with Spark's own Kubernetes scheduler (no operator)",
    )
    spark_k8s.add_arguments(driver)

    verify = step.add_parser(
        "verify-index", help="check a committed date: every input indexed or quarantined"
    )
    add_field(verify, IndexConfig, "out_uri", "--index")
    add_field(verify, IndexConfig, "date")
    verify.add_argument(
        "--expect-files",
        type=int,
        default=None,
        help="recordings the plan counted: fewer accounted for fails the step",
    )
    verify.add_argument(
        "--outcome",
        default=None,
        help="the index job's outcome record: a permanent failure recorded there ends this "
        "step with its code",
    )
    add_outputs_dir(verify)
    entry.add_storage_arguments(verify)


def _cmd_index(args: argparse.Namespace) -> None:
    from avfleet.index import entry
    from avfleet.index.summary import print_index_report

    report = entry.run(args, master=args.master, engine=args.engine)
    emit(args, report, lambda: print_index_report(report))


def _cmd_plan_index(args: argparse.Namespace) -> None:
    from avfleet.core.storage import storage_from_args
    from avfleet.index.job import list_recordings
    from avfleet.workflows.outputs import write_outputs

    files = list_recordings(args.recordings, args.date, storage_from_args(args))
    executors = max(1, min(args.max_executors, -(-len(files) // args.files_per_executor)))
    outputs = {"num-files": len(files), "executors": executors}
    write_outputs(args.outputs_dir, outputs)
    emit(args, outputs)


def _cmd_verify_index(args: argparse.Namespace) -> None:
    from avfleet.core.outcome import raise_recorded
    from avfleet.core.storage import storage_from_args
    from avfleet.index.verify import verify_date
    from avfleet.workflows.outputs import write_outputs

    raise_recorded(args.outcome, storage_from_args(args))
    result = verify_date(args.index, args.date, args.expect_files, storage_from_args(args))
    write_outputs(
        args.outputs_dir, {"frames": result["frames"], "quarantined": result["quarantined"]}
    )
    emit(args, result)


def _dataset_parsers(sub: argparse._SubParsersAction) -> None:
    from avfleet.core.storage import add_storage_arguments
    from avfleet.dataset.build import ENGINES, DatasetConfig

    ds = sub.add_parser("dataset", help="training sets").add_subparsers(
        dest="ds_cmd", required=True
    )
    build = ds.add_parser("build", help="fetch, label and write a versioned training set")
    add_field(build, DatasetConfig, "index_uri", "--index")
    add_field(build, DatasetConfig, "selection", "--frames")
    add_field(build, DatasetConfig, "out_uri", "--out")
    build.add_argument(
        "--labels",
        required=True,
        metavar="oracle:FLEET_URI|pseudo:URI|labelstudio:URI|URI",
        help="the oracle of a synthetic fleet, an ensemble's pseudo-labels (avfleet pseudo-label; "
        "extend a human-labeled --base with them), a Label Studio project's JSON export (brush "
        "masks; each frame's annotation id and annotator go into the manifest), or a labeling "
        "tool's Parquet export (frame_id, mask_png)",
    )
    add_field(build, DatasetConfig, "engine", choices=ENGINES)
    add_field(build, DatasetConfig, "spark_master")
    add_field(build, DatasetConfig, "spark_min_frames")
    add_field(build, DatasetConfig, "frames_per_task")
    add_field(build, DatasetConfig, "dates")
    add_field(build, DatasetConfig, "exclude_uri", "--exclude")
    add_field(build, DatasetConfig, "base_uri", "--base")
    add_field(build, DatasetConfig, "seed")
    add_outputs_dir(build)
    add_storage_arguments(build)
    check = ds.add_parser("check", help="check a dataset's manifest against its data")
    check.add_argument("dataset", help="the dataset version's URI")
    add_storage_arguments(check)


def _cmd_dataset(args: argparse.Namespace) -> None:
    from avfleet.core.storage import storage_from_args
    from avfleet.dataset.build import DatasetConfig, build_dataset, check_dataset
    from avfleet.dataset.labels import OracleLabels, PseudoLabels, ToolLabels
    from avfleet.workflows.outputs import write_outputs

    st = storage_from_args(args)
    if args.ds_cmd == "check":
        manifest = check_dataset(args.dataset, st)
        sources = manifest.get("frames_per_source", {})
        emit(
            args,
            {k: manifest[k] for k in ("version", "num_frames", "label_version")}
            | {"frames_per_source": sources, "ok": True},
            f"{args.dataset}: {manifest['num_frames']} frames, labels {manifest['label_version']}"
            + (f" ({', '.join(f'{k} {v}' for k, v in sources.items())})" if sources else "")
            + ": ok",
        )
        return
    config = DatasetConfig(
        index_uri=args.index,
        selection=args.frames,
        out_uri=args.out,
        dates=tuple(args.dates),
        seed=args.seed,
        exclude_uri=args.exclude,
        base_uri=args.base,
        engine=args.engine,
        spark_master=args.spark_master,
        spark_min_frames=args.spark_min_frames,
        frames_per_task=args.frames_per_task,
        storage=st,
    )
    if args.labels.startswith("oracle:"):
        labeler = OracleLabels(args.labels.removeprefix("oracle:"), st)
    elif args.labels.startswith("pseudo:"):
        labeler = PseudoLabels(args.labels.removeprefix("pseudo:"), st)
    elif args.labels.startswith("labelstudio:"):
        from avfleet.dataset.labelstudio import LabelStudioLabels

        labeler = LabelStudioLabels(args.labels.removeprefix("labelstudio:"), st)
    else:
        labeler = ToolLabels(args.labels, st)
    version = build_dataset(config, labeler)
    write_outputs(args.outputs_dir, {"dataset-uri": version.uri})
    emit(
        args,
        version,
        f"{version.uri}: {version.num_frames} frames, labels {version.label_version}"
        + (" (reused)" if version.reused else ""),
    )


def _train_parsers(sub: argparse._SubParsersAction, step: argparse._SubParsersAction) -> None:
    plan = step.add_parser("plan-train", help="size a PyTorchJob (worker replicas = nodes - 1)")
    plan.add_argument(
        "--nodes",
        type=int,
        required=True,
        help="nodes the job spans (one master, the rest workers)",
    )
    add_outputs_dir(plan)
    ev = sub.add_parser(
        "evaluate", help="mIoU overall and per domain of a saved model on a dataset"
    )
    ev.add_argument("--model", required=True, help="model folder (arch.json + weights.pt)")
    ev.add_argument("--dataset", required=True, help="dataset version (e.g. the held-out set)")
    add_outputs_dir(ev)


def _cmd_plan_train(args: argparse.Namespace) -> None:
    from avfleet.core.errors import ConfigError
    from avfleet.workflows.outputs import write_outputs

    if args.nodes < 1:
        raise ConfigError("nodes", "must be at least 1")
    write_outputs(args.outputs_dir, {"worker-replicas": args.nodes - 1})
    emit(args, {"worker-replicas": args.nodes - 1})


def _cmd_evaluate(args: argparse.Namespace) -> None:
    import json

    from avfleet.core import storage
    from avfleet.train.evaluate import evaluate
    from avfleet.train.loop import load_model
    from avfleet.workflows.outputs import write_outputs

    result = evaluate(load_model(args.model), args.dataset)
    storage.atomic_write_text(
        storage.join(args.model, "evaluation.json"), json.dumps(result.__dict__, indent=2)
    )
    write_outputs(args.outputs_dir, {"miou": f"{result.miou:.4f}"})
    lines = [f"mIoU {100 * result.miou:.1f} on {sum(result.frames_per_domain.values())} frames"]
    for domain, value in result.miou_per_domain.items():
        lines.append(
            f"  {domain:<26} {100 * value:5.1f}  ({result.frames_per_domain[domain]} frames)"
        )
    emit(args, result, "\n".join(lines))


def _workflow_parsers(sub: argparse._SubParsersAction) -> None:
    wf = sub.add_parser("workflows", help="Argo workflow manifests").add_subparsers(
        dest="wf_cmd", required=True
    )
    render = wf.add_parser("render", help="render the Hera builders into manifests/")
    render.add_argument(
        "--write", action="store_true", help="write files (default: check for drift)"
    )
    render.add_argument("--manifests", default=None, help="manifests folder (default: the repo's)")
    run = sub.add_parser("local-run", help="run a rendered workflow on this machine")
    run.add_argument("manifest", help="WorkflowTemplate/Workflow/CronWorkflow YAML")
    run.add_argument("-p", "--parameter", action="append", default=[], help="name=value")
    run.add_argument(
        "--workdir", default=None, help="where step sandboxes go (default: a temp folder)"
    )
    run.add_argument("--spark-master", default="local[2]", help="where SparkApplications run here")
    run.add_argument(
        "--templates",
        action="append",
        default=[],
        help="a folder of WorkflowTemplates for templateRef (besides the manifest's own folder)",
    )


def _cmd_workflows(args: argparse.Namespace) -> int:
    from avfleet.workflows.render import check_or_write

    drift = check_or_write(args.manifests, write=args.write)
    emit(
        args,
        {"written" if args.write else "drift": drift},
        "\n".join(("wrote " if args.write else "drift: ") + path for path in drift) or "up to date",
    )
    return 0 if args.write or not drift else 1


def _cmd_local_run(args: argparse.Namespace) -> int:
    import os

    from avfleet.workflows.local.executor import LocalExecutor, parse_parameters

    executor = LocalExecutor(workdir=args.workdir, spark_master=args.spark_master)
    for folder in args.templates or [os.path.dirname(os.path.abspath(args.manifest))]:
        executor.load_library(folder)
    result = executor.run_file(args.manifest, parse_parameters(args.parameter))
    emit(
        args,
        {"succeeded": result.succeeded, "exit_code": result.exit_code, "summary": result.summary()},
        result.summary(),
    )
    return 0 if result.succeeded else result.exit_code


def _mining_parsers(sub: argparse._SubParsersAction) -> None:
    from avfleet.core.storage import add_storage_arguments
    from avfleet.mining.entry import add_arguments

    add_arguments(sub.add_parser("mine", help="score a date's frames and select K to label"))
    label = sub.add_parser("label", help="answer a labeling queue (the oracle stands in)")
    label.add_argument("--queue", required=True, help="queue.json of a mining run")
    label.add_argument("--oracle", required=True, metavar="FLEET_URI", help="synthetic fleet")
    label.add_argument("--out", required=True, help="labels export to write (.parquet)")
    add_outputs_dir(label)
    add_storage_arguments(label)
    pseudo = sub.add_parser(
        "pseudo-label",
        help="label confident frames of under-represented domains with the ensemble's prediction",
    )
    pseudo.add_argument("--mining", required=True, help="a finished mining run folder")
    pseudo.add_argument(
        "--labeled", required=True, help="the human-labeled dataset version after this round"
    )
    pseudo.add_argument("--model", required=True, help="the ensemble's model folder (members >= 2)")
    pseudo.add_argument("--index", required=True, help="frame index root")
    pseudo.add_argument("--out", required=True, help="pseudo-labels to write (.parquet)")
    pseudo.add_argument(
        "--confidence-quantile",
        type=float,
        default=0.5,
        help="confident: mutual information at most this quantile of the candidates'",
    )
    pseudo.add_argument(
        "--min-labeled-fraction",
        type=float,
        default=0.6,
        help="skip frames whose members agree on fewer pixels than this",
    )
    pseudo.add_argument("--max-frames", type=int, default=0, help="cap per run; 0: no cap")
    add_outputs_dir(pseudo)
    add_storage_arguments(pseudo)


def _mining_plan_parsers(sub: argparse._SubParsersAction, step: argparse._SubParsersAction) -> None:
    from avfleet.core.storage import add_storage_arguments
    from avfleet.serve.outputs import Reduction
    from avfleet.serve.repository import INSTANCE_KINDS, ServingConfig

    plan = step.add_parser("plan-mining", help="the nightly run: yesterday's date, folder, model")
    plan.add_argument("--now", required=True, help="RFC 3339 time the run was created")
    plan.add_argument("--timezone", default="UTC", help="the fleet's timezone")
    plan.add_argument("--mining-root", required=True, help="root of the nightly runs' folders")
    plan.add_argument("--repo", required=True, help="Triton model repository")
    plan.add_argument("--model", required=True, help="NAME (newest version) or NAME:VERSION")
    plan.add_argument("--date", default="", help="a day to mine instead of yesterday (backfill)")
    add_outputs_dir(plan)
    publish = step.add_parser("publish-queue", help="hand a mining run's queue to labelers")
    publish.add_argument("--queue", required=True, help="queue.json of a finished mining run")
    publish.add_argument("--to", required=True, help="queues root")
    publish.add_argument("--date", required=True, help="the mined day: the queue's folder name")
    add_outputs_dir(publish)
    model = sub.add_parser("publish-model", help="a trained ensemble -> a repository version")
    model.add_argument("--model-uri", required=True, help="saved model folder (arch.json, weights)")
    model.add_argument("--repo", required=True, help="Triton model repository")
    model.add_argument("--name", required=True, help="model name in the repository")
    add_field(model, Reduction, "how", "--reduce", choices=["mean", "top"])
    add_field(model, Reduction, "top_fraction")
    add_field(model, ServingConfig, "kind", "--instance-kind", choices=INSTANCE_KINDS)
    model.add_argument(
        "--triton-url",
        default="",
        help="a Triton in explicit model-control mode to load the new version; empty: none",
    )
    add_outputs_dir(model)
    pin = sub.add_parser(
        "pin-model",
        help="keep a repository version served by Triton whatever is published after (a backfill)",
    )
    pin.add_argument("--repo", required=True, help="Triton model repository")
    pin.add_argument("--model", required=True, help="NAME:VERSION")
    pin.add_argument("--reason", default="", help="why it is pinned, e.g. 'backfill 2026-11-01'")
    pin.add_argument("--unpin", action="store_true", help="let the version go instead")
    pin.add_argument(
        "--triton-url", default="", help="a Triton to load the new version policy; empty: none"
    )
    for p in (plan, publish, model, pin):
        add_storage_arguments(p)


def _cmd_pin_model(args: argparse.Namespace) -> None:
    import json

    from avfleet.core.errors import ConfigError
    from avfleet.core.storage import storage_from_args
    from avfleet.serve import repository

    name, version = repository.parse_ref(args.model)
    if version is None:
        raise ConfigError("model", f"{args.model!r}: pin a version, NAME:VERSION")
    if not args.unpin and not args.reason.strip():
        raise ConfigError("reason", "say why the version is pinned (--reason), e.g. 'backfill D'")
    change = {version: None if args.unpin else args.reason.strip()}
    served = repository.set_pins(args.repo, name, change, storage_from_args(args))
    if args.triton_url:
        from avfleet.serve.client import load_model

        load_model(args.triton_url, name)
    emit(args, {"model": name, "served": served}, json.dumps({"model": name, "served": served}))


def _cmd_plan_mining(args: argparse.Namespace) -> None:
    from avfleet.core.storage import storage_from_args
    from avfleet.mining.plan import plan_mining
    from avfleet.workflows.outputs import write_outputs

    plan = plan_mining(
        args.now,
        args.timezone,
        args.mining_root,
        args.repo,
        args.model,
        storage_from_args(args),
        date=args.date,
    )
    write_outputs(args.outputs_dir, plan)
    emit(args, plan)


def _cmd_publish_queue(args: argparse.Namespace) -> None:
    from avfleet.core.storage import storage_from_args
    from avfleet.mining.plan import publish_queue
    from avfleet.workflows.outputs import write_outputs

    published = publish_queue(args.queue, args.to, args.date, storage_from_args(args))
    write_outputs(args.outputs_dir, {"published": published})
    emit(args, {"published": published}, str(published))


def _cmd_publish_model(args: argparse.Namespace) -> None:
    from avfleet.core.storage import storage_from_args
    from avfleet.serve.graph import Reduction
    from avfleet.serve.publish import publish_model
    from avfleet.serve.repository import ServingConfig
    from avfleet.workflows.outputs import write_outputs

    ref = publish_model(
        args.model_uri,
        args.repo,
        args.name,
        Reduction(args.reduce, args.top_fraction),
        storage_config=storage_from_args(args),
        serving=ServingConfig(kind=args.instance_kind),
    )
    if args.triton_url:
        from avfleet.serve.client import load_model

        load_model(args.triton_url, ref.partition(":")[0])
    write_outputs(args.outputs_dir, {"model-ref": ref})
    emit(args, {"model-ref": ref}, ref)


def _cmd_mine(args: argparse.Namespace) -> None:
    from avfleet.mining.entry import output_parameters, run
    from avfleet.workflows.outputs import write_outputs

    report = run(args)
    write_outputs(args.outputs_dir, output_parameters(args))
    emit(
        args,
        report,
        f"{report.selected} frames selected from {report.candidates} candidates "
        f"({report.frames_indexed} indexed, {report.frames_scored} scored, "
        f"{report.shards_skipped} shards skipped); per domain: {report.selected_per_domain}",
    )


def _cmd_pseudo_label(args: argparse.Namespace) -> None:
    from avfleet.core.storage import storage_from_args
    from avfleet.mining.pseudo import PseudoConfig, pseudo_label, write_pseudo_labels
    from avfleet.train.loop import load_model
    from avfleet.workflows.outputs import write_outputs

    st = storage_from_args(args)
    config = PseudoConfig(
        confidence_quantile=args.confidence_quantile,
        min_labeled_fraction=args.min_labeled_fraction,
        max_frames=args.max_frames,
    )
    table = pseudo_label(args.mining, args.labeled, load_model(args.model), args.index, config, st)
    write_pseudo_labels(table, args.out, st)
    write_outputs(args.outputs_dir, {"pseudo-labels": args.out})
    counts = table["domain"].value_counts().sort_index().to_dict()
    emit(
        args,
        {"frames": len(table), "pseudo_labels": args.out, "per_domain": counts},
        f"{len(table)} frames pseudo-labeled -> {args.out}; per domain: {counts}",
    )


def _cmd_label(args: argparse.Namespace) -> None:
    from avfleet.core.storage import storage_from_args
    from avfleet.mining.entry import label_queue
    from avfleet.workflows.outputs import write_outputs

    n = label_queue(args.queue, args.oracle, args.out, storage_from_args(args))
    write_outputs(args.outputs_dir, {"labels": args.out})
    emit(args, {"frames": n, "labels": args.out}, f"{n} frames labeled -> {args.out}")


def _serve_parsers(sub: argparse._SubParsersAction) -> None:
    from avfleet.serve.local import LocalServerConfig

    serve = sub.add_parser(
        "serve", help="a local Triton server (PyTriton's tritonserver) for repository versions"
    )
    serve.add_argument("--repo", required=True, help="Triton model repository")
    serve.add_argument("--model", action="append", required=True, help="NAME:VERSION (repeat)")
    for name in ("http_port", "grpc_port", "metrics_port", "threads"):
        add_field(serve, LocalServerConfig, name)
    server = sub.add_parser(
        "tritonserver",
        help="Triton's own server (PyTriton's build) over a model repository, ONNX Runtime on "
        "the CPU: NVIDIA's image's stand-in where it cannot run",
    )
    server.add_argument(
        "--backends-dir", default="", help="where to assemble the backends (default: under TMPDIR)"
    )
    server.add_argument(
        "server_args",
        nargs=argparse.REMAINDER,
        help="after --: tritonserver's own arguments, e.g. -- --model-repository=s3://... "
        "--model-control-mode=explicit --load-model=*",
    )


def _cmd_serve(args: argparse.Namespace) -> None:
    import os

    from avfleet.serve.local import ACCESS_TOKEN_ENV, LocalServerConfig, LocalTriton

    config = LocalServerConfig(
        repo_uri=args.repo,
        models=tuple(args.model),
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        threads=args.threads,
        access_token=os.environ.get(ACCESS_TOKEN_ENV) or None,
    )
    with LocalTriton(config) as server:
        names = ", ".join(f"{v.name}:{v.version}" for v in server.versions)
        emit(
            args,
            {
                "serving": [f"{v.name}:{v.version}" for v in server.versions],
                "http_port": args.http_port,
                "grpc_port": args.grpc_port,
            },
            f"serving {names} on http :{args.http_port}, grpc :{args.grpc_port}",
        )
        sys.stdout.flush()
        server.serve_forever()


def _cmd_tritonserver(args: argparse.Namespace) -> None:
    from avfleet.serve.tritonserver import exec_server

    server_args = args.server_args[1:] if args.server_args[:1] == ["--"] else args.server_args
    exec_server(server_args, args.backends_dir)


def _demo_parser(sub: argparse._SubParsersAction) -> None:
    from avfleet.demo import DemoConfig

    d = DemoConfig()
    demo = sub.add_parser("demo", help="the data-engine loop on embedded engines")
    demo.add_argument("--out", default=d.out_dir, help=f"work folder (default ./{d.out_dir})")
    add_field(demo, DemoConfig, "vehicles")
    add_field(demo, DemoConfig, "minutes_per_day")
    add_field(demo, DemoConfig, "seed")
    for name in ("rounds", "budget", "epochs", "round_epochs"):
        add_field(demo, DemoConfig, name)
    demo.add_argument(
        "--no-random-arm",
        dest="random_arm",
        action="store_false",
        help="skip the baseline rounds with random picks",
    )
    demo.add_argument(
        "--search",
        action="store_true",
        help="also run the architecture search map job (nas.yaml: 3 targets, about 2 minutes)",
    )
    demo.add_argument(
        "--pushgateway",
        default=d.pushgateway,
        help="Pushgateway host:port every stage pushes to (infra/prometheus/prometheus.yml scrapes it)",
    )
    demo.add_argument(
        "--triton-metrics-port",
        type=int,
        default=d.triton_metrics_port,
        help="the local Triton's metrics port during mining (default: any free port)",
    )
    report = sub.add_parser("report", help="redraw a demo run's report/index.html and summary.json")
    report.add_argument("--run", default=d.out_dir, help="the demo's work folder")


def _cmd_demo(args: argparse.Namespace) -> int:
    from avfleet.demo import DemoConfig, run_demo

    return run_demo(
        DemoConfig(
            out_dir=args.out,
            vehicles=args.vehicles,
            minutes_per_day=args.minutes_per_day,
            seed=args.seed,
            rounds=args.rounds,
            budget=args.budget,
            epochs=args.epochs,
            round_epochs=args.round_epochs,
            random_arm=args.random_arm,
            search=args.search,
            pushgateway=args.pushgateway,
            triton_metrics_port=args.triton_metrics_port,
        )
    )


def _cmd_report(args: argparse.Namespace) -> None:
    from avfleet.report import write_report

    page, summary = write_report(args.run)
    emit(args, {"report": page, **summary}, "\n".join([*summary["story"], f"report: {page}"]))


def _metrics_parsers(sub: argparse._SubParsersAction) -> None:
    metrics = sub.add_parser("metrics", help="the jobs' pushed metrics").add_subparsers(
        dest="metrics_cmd", required=True
    )
    forget = metrics.add_parser(
        "forget", help="delete avfleet's Pushgateway groups last pushed before the retention"
    )
    forget.add_argument(
        "--pushgateway", default="", help="Pushgateway host:port; empty: nothing to forget"
    )
    forget.add_argument(
        "--max-age-hours",
        type=float,
        default=192.0,
        help="keep groups pushed within this many hours (default 8 days: a week of nightly runs)",
    )


def _cmd_metrics(args: argparse.Namespace) -> None:

    from avfleet.core.errors import ConfigError
    from avfleet.core.metrics import forget_stale

    if args.max_age_hours <= 0:
        raise ConfigError("max_age_hours", f"must be positive, got {args.max_age_hours}")
    if not args.pushgateway:
        emit(args, {"forgotten": [], "pushgateway": None}, "no Pushgateway: nothing to forget")
        return
    deleted = forget_stale(args.pushgateway, args.max_age_hours * 3600)
    emit(
        args,
        {"forgotten": deleted, "pushgateway": args.pushgateway},
        f"forgot {len(deleted)} stale group(s) on {args.pushgateway}"
        + "".join(f"\n  {d}" for d in deleted),
    )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("avfleet")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="avfleet", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="print the version"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LOG_LEVELS,
        help="how much to log (any case) (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    step_parser = sub.add_parser(
        "step",
        help="workflow plumbing: what the Argo steps run between the stages (plan, verify, "
        "publish)",
    )
    step = step_parser.add_subparsers(dest="step_cmd", required=True)
    _fleet_parsers(sub)
    _index_parsers(sub, step)
    _dataset_parsers(sub)
    _train_parsers(sub, step)
    _workflow_parsers(sub)
    _mining_parsers(sub)
    _mining_plan_parsers(sub, step)
    _serve_parsers(sub)
    cli_deploy.add_parsers(sub)
    cli_nas.add_parsers(sub)
    _demo_parser(sub)
    _metrics_parsers(sub)
    # Listed last: people run the verbs above; the workflows run these.
    sub._choices_actions.append(sub._choices_actions.pop(0))
    add_json_flags(parser)
    return parser


def _cmd_spark_driver(args: argparse.Namespace) -> None:
    from avfleet.index import spark_k8s

    spark_k8s.run(args)


STEP_COMMANDS = {
    "plan-index": _cmd_plan_index,
    "spark-driver": _cmd_spark_driver,
    "verify-index": _cmd_verify_index,
    "plan-train": _cmd_plan_train,
    "plan-mining": _cmd_plan_mining,
    "publish-queue": _cmd_publish_queue,
}
"""`avfleet step <verb>`: what the workflows' plumbing steps run."""


def _cmd_step(args: argparse.Namespace) -> int | None:
    return STEP_COMMANDS[args.step_cmd](args)


COMMANDS = {
    "step": _cmd_step,
    "fleet": _cmd_fleet,
    "index": _cmd_index,
    "dataset": _cmd_dataset,
    "evaluate": _cmd_evaluate,
    "workflows": _cmd_workflows,
    "local-run": _cmd_local_run,
    "mine": _cmd_mine,
    "publish-model": _cmd_publish_model,
    "pin-model": _cmd_pin_model,
    "label": _cmd_label,
    "pseudo-label": _cmd_pseudo_label,
    "serve": _cmd_serve,
    "tritonserver": _cmd_tritonserver,
    "demo": _cmd_demo,
    "report": _cmd_report,
    "metrics": _cmd_metrics,
    **cli_deploy.COMMANDS,
    **cli_nas.COMMANDS,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.log_level)
    return run_main(lambda: COMMANDS[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
