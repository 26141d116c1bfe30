"""The deploy stage's commands (wired into `avfleet` by avfleet.cli).

avfleet deploy export|build|promote   model -> release folder -> engine -> registry + Triton
avfleet bench agent                    the bench agent's HTTP service (on a bench device)
avfleet bench validate                 run a BenchValidation through bench agents (local executor)
avfleet lineage                        the promoted engine -> model -> dataset -> frames -> recordings
"""

from __future__ import annotations

import argparse
import json
import sys

from avfleet.bench import agent_main as bench_agent
from avfleet.bench.agent import AgentConfig
from avfleet.bench.client import TOKEN_ENV, token_from_env
from avfleet.core.cliopts import add_field, add_input_hw, add_outputs_dir, emit, say
from avfleet.deploy.config import ExportConfig
from avfleet.deploy.registry import PromoteConfig
from avfleet.serve.repository import INSTANCE_KINDS, ServingConfig


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _latency_parsers(sub)
    from avfleet.core.storage import add_storage_arguments

    deploy = sub.add_parser("deploy", help="export, build, promote").add_subparsers(
        dest="deploy_cmd", required=True
    )
    export = deploy.add_parser("export", help="a trained model -> a release folder (ONNX + bundle)")
    export.add_argument("--model", required=True, help="model folder, e.g. <run>/deployable/model")
    export.add_argument("--validation", required=True, help="dataset the bench scores")
    export.add_argument("--releases", required=True, help="releases root")
    export.add_argument("--calibration", default="", help="INT8 calibration dataset")
    add_field(export, ExportConfig, "validation_frames")
    build = deploy.add_parser("build", help="the release's engine for this machine (cached)")
    build.add_argument("--release", required=True, help="the release folder (deploy export)")
    build.add_argument("--cache", required=True, help="engine cache root")
    add_field(build, AgentConfig, "runtime", choices=["onnxruntime", "tensorrt"])
    build.add_argument(
        "--precision", default="fp32", choices=["fp32", "fp16", "int8"], help="engine precision"
    )
    add_field(build, AgentConfig, "target")
    promote = deploy.add_parser("promote", help="gates -> Triton version -> registry pointer")
    add_field(promote, PromoteConfig, "release_uri", "--release")
    add_field(promote, PromoteConfig, "report_uri", "--report")
    add_field(promote, PromoteConfig, "registry_uri", "--registry")
    add_field(promote, PromoteConfig, "model_repo_uri", "--repo")
    add_field(promote, PromoteConfig, "model_name", "--name")
    add_field(promote, ServingConfig, "kind", "--instance-kind", choices=INSTANCE_KINDS)
    promote.add_argument(
        "--policy",
        default="",
        help="promotion policy (gates); default: the reviewed one shipped with avfleet",
    )
    promote.add_argument(
        "--pushgateway", default="", help="Pushgateway host:port for the verdict; empty: none"
    )
    promote.add_argument(
        "--triton-url",
        default="",
        help="the serving Triton (grpc:// or http://), told to load the promoted version; empty: none",
    )
    for p in (export, build, promote):
        add_outputs_dir(p)
        add_storage_arguments(p)

    bench = sub.add_parser("bench", help="bench agent and validations").add_subparsers(
        dest="bench_cmd", required=True
    )
    agent = bench.add_parser("agent", help=f"serve the bench agent (token from ${TOKEN_ENV})")
    bench_agent.add_arguments(agent)
    validate = bench.add_parser("validate", help="run a BenchValidation manifest to its verdict")
    validate.add_argument("--manifest-json", required=True, help="the BenchValidation resource")
    validate.add_argument(
        "--bench",
        action="append",
        default=[],
        help=f"NAME=ADDRESS of a running agent (token from ${TOKEN_ENV}); none: start one here",
    )
    validate.add_argument("--cache", default="", help="engine cache of the local agent")

    lineage = sub.add_parser("lineage", help="promoted engine -> model -> dataset -> recordings")
    add_field(lineage, PromoteConfig, "registry_uri", "--registry")
    lineage.add_argument("--release", default="", help="a release id (default: the promoted one)")
    lineage.add_argument("--frames", type=int, default=5, help="frame ids shown per dataset")
    lineage.add_argument("--json", action="store_true", help="the whole chain as JSON")
    for p in (validate, lineage):
        add_storage_arguments(p)


def _cmd_deploy(args: argparse.Namespace) -> None:
    from avfleet.core.storage import storage_from_args
    from avfleet.workflows.outputs import write_outputs

    st = storage_from_args(args)
    if args.deploy_cmd == "export":
        from avfleet.deploy.export import ExportConfig, export_release, read_export

        release = export_release(
            ExportConfig(
                model_uri=args.model,
                validation_uri=args.validation,
                releases_uri=args.releases,
                calibration_uri=args.calibration,
                validation_frames=args.validation_frames,
                storage=st,
            )
        )
        info = read_export(release, st)
        write_outputs(
            args.outputs_dir,
            {"release-uri": release, "reference-miou": f"{info['reference_miou']:.6f}"},
        )
        emit(
            args,
            {"release_uri": release, **info},
            f"release {info['release_id']} at {release}: {info['parameters']:,} parameters, "
            f"ONNX vs PyTorch max abs error {info['export_parity']['max_abs_error']:.2g}, "
            f"reference mIoU {100 * info['reference_miou']:.1f} on {info['validation_frames']} frames",
        )
    elif args.deploy_cmd == "build":
        from avfleet.bench.engines import EngineSpec, build_engine
        from avfleet.bench.measure import load_bundle, to_input
        from avfleet.core import storage

        bundle = load_bundle(storage.read_bytes(storage.join(args.release, "bundle.npz"), st))
        engine = build_engine(
            storage.read_bytes(storage.join(args.release, "model.onnx"), st),
            EngineSpec(runtime=args.runtime, precision=args.precision, target=args.target),
            args.cache,
            calibration_NCHW=to_input(bundle.calibration_NHWC),
            storage_config=st,
        )
        write_outputs(args.outputs_dir, {"engine-key": engine.key})
        how = "cached" if engine.cached else f"built in {engine.info['build_s']:.1f} s"
        emit(
            args,
            {"key": engine.key, "uri": engine.uri, "cached": engine.cached, **engine.info},
            f"engine {engine.key} ({engine.info['engine_bytes']:,} bytes, {how}) at {engine.uri}",
        )
    else:
        from avfleet.core.metrics import MetricsConfig
        from avfleet.deploy.registry import PromoteConfig, promote, promotion_policy

        pointer = promote(
            PromoteConfig(
                release_uri=args.release,
                report_uri=args.report,
                registry_uri=args.registry,
                model_repo_uri=args.repo,
                model_name=args.name,
                gates=promotion_policy(args.policy, st),
                storage=st,
                metrics=MetricsConfig(pushgateway_url=args.pushgateway or None),
                triton_url=args.triton_url,
                serving=ServingConfig(kind=args.instance_kind),
            )
        )
        write_outputs(
            args.outputs_dir,
            {"release-id": pointer["release_id"], "model-ref": pointer["model_ref"]},
        )
        emit(
            args,
            pointer,
            f"promoted release {pointer['release_id']}; mining now scores with {pointer['model_ref']}",
        )


def _cmd_bench(args: argparse.Namespace) -> int:
    from avfleet.core.storage import storage_from_args

    if args.bench_cmd == "agent":
        return bench_agent.run(args)
    return _validate(args, storage_from_args(args))


def _validate(args: argparse.Namespace, st) -> int:  # noqa: ANN001
    import contextlib

    from avfleet.bench import scheduler
    from avfleet.bench.local import local_agent, run_validation
    from avfleet.core.errors import ConfigError, PermanentError

    manifest = json.loads(args.manifest_json)
    if manifest.get("kind") != "BenchValidation":
        raise ConfigError("manifest", f"expected a BenchValidation, got {manifest.get('kind')!r}")
    name, spec = manifest["metadata"]["name"], manifest["spec"]
    with contextlib.ExitStack() as stack:
        if args.bench:
            token = token_from_env()
            benches = {}
            for item in args.bench:
                bench_name, _, address = item.partition("=")
                benches[bench_name] = {
                    "address": address,
                    "target": spec.get("target", ""),
                    "token": token,
                }
        else:  # this machine stands in for the bench: ONNX Runtime, which has no fp16 path
            if spec.get("precision") == "fp16":
                say(args, f"{name}: the local ONNX Runtime bench builds fp32 for fp16")
                spec = {**spec, "precision": "fp32"}
            cache = args.cache or spec["reportUri"].rsplit("/", 1)[0] + "/engine-cache"
            local = stack.enter_context(
                local_agent(
                    cache,
                    # this run's own release: the folders of its model and bundle
                    read_prefixes=(
                        spec["modelUri"].rsplit("/", 1)[0],
                        spec["bundleUri"].rsplit("/", 1)[0],
                    ),
                    target=spec.get("target", ""),
                    storage_config=st,
                )
            )
            benches = {"local-bench": local}

        def show(status: dict) -> None:
            say(args, f"{name}: {status.get('phase')}: {status.get('message')}")

        status = run_validation(name, spec, benches, on_status=show, storage_config=st)
    if status["phase"] != scheduler.SUCCEEDED:
        raise PermanentError(
            f"validation {name} {status['phase'].lower()}: {status.get('message')}"
        )
    summary = status["summary"]
    emit(
        args,
        status,
        f"{name}: p50 {summary['p50Ms']:.2f} ms, p99 {summary['p99Ms']:.2f} ms, "
        f"mIoU {100 * summary['miou']:.1f}, argmax agreement {summary['argmaxAgreement']:.4f}",
    )
    return 0


def _cmd_lineage(args: argparse.Namespace) -> None:
    from avfleet.core.storage import storage_from_args
    from avfleet.deploy.lineage import lineage, render

    chain = lineage(args.registry, args.release, storage_from_args(args))
    if args.json:
        json.dump(chain, sys.stdout, indent=2)
        print()
    else:
        print(render(chain, args.frames))


def _latency_parsers(sub: argparse._SubParsersAction) -> None:
    lat = sub.add_parser("latency", help="the bench's latency lookup table").add_subparsers(
        dest="latency_command", required=True
    )
    prof = lat.add_parser(
        "profile",
        help="measure every unit pruning a width-W net can reach on a bench -> a table file",
    )
    prof.add_argument("--width", type=float, default=2.0, help="width multiplier of the net")
    add_input_hw(prof)
    prof.add_argument("--out", required=True, help="the table file to write (lut.json)")
    prof.add_argument(
        "--bench",
        default="",
        help=f"address of a bench agent (token from ${TOKEN_ENV}); none: this machine",
    )
    prof.add_argument(
        "--cache", default="", help="unit cache when profiling here (default: beside --out)"
    )
    add_outputs_dir(prof)


def _cmd_latency(args: argparse.Namespace) -> None:
    import time

    from avfleet.latency.lut import profile_to_file, pruning_units
    from avfleet.train.models import default_arch
    from avfleet.workflows.outputs import write_outputs

    arch = default_arch(width=args.width)
    input_hw = tuple(args.input_hw)
    started = time.time()
    table = profile_to_file(
        pruning_units(arch, input_hw), input_hw, args.out, bench=args.bench, cache=args.cache
    )
    write_outputs(args.outputs_dir, {"lut-uri": args.out})
    dense = table.predict(arch)
    emit(
        args,
        {
            "lut": args.out,
            "units": len(table.entries),
            "bench": table.bench,
            "predicted_ms": dense.total_ms,
        },
        f"{args.out}: {len(table.entries)} units on {table.bench} in {time.time() - started:.1f} s; "
        f"the width-{args.width:g} net: {dense.total_ms:.3f} ms predicted",
    )


COMMANDS = {
    "deploy": _cmd_deploy,
    "bench": _cmd_bench,
    "lineage": _cmd_lineage,
    "latency": _cmd_latency,
}
