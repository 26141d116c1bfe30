"""Resource kinds -> embedded engines: how a cluster resource runs on one machine.

Each engine turns the (parameter-substituted) resource manifest into the argv
of a local process whose exit code stands for the resource's success or
failure condition: SparkApplication -> spark-submit, PyTorchJob -> torchrun,
BenchValidation -> a local bench agent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable

from avfleet.core.errors import PermanentError
from avfleet.workflows import common


@dataclasses.dataclass(frozen=True)
class LocalContext:
    repo_root: str
    spark_master: str
    torchrun_nproc: int = 2
    """Processes a PyTorchJob gets on this machine, whatever its nodes x GPUs (CPU, gloo)."""

    def map_image_path(self, path: str) -> str:
        """A path inside the image (/opt/avfleet/...) -> the same file in this checkout."""
        path = path.removeprefix("local://")
        if path.startswith(common.IMAGE_ROOT + "/"):
            return os.path.join(self.repo_root, path[len(common.IMAGE_ROOT) + 1 :])
        return path


# sparkConf keys that only make sense on a cluster: in local mode the executor is the driver JVM.
_CLUSTER_ONLY_SPARK_CONF = {"spark.executor.pyspark.memory"}


def spark_application(manifest: dict, ctx: LocalContext) -> list[str]:
    """SparkApplication (spark-operator) -> spark-submit with a local master."""
    spec = manifest.get("spec", {})
    if spec.get("type") != "Python":
        raise PermanentError(
            f"SparkApplication type {spec.get('type')!r}: only Python applications run locally"
        )
    main = spec.get("mainApplicationFile")
    if not main:
        raise PermanentError("SparkApplication has no spec.mainApplicationFile")
    argv = [
        os.path.join(os.path.dirname(sys.executable), "spark-submit"),
        "--master",
        ctx.spark_master,
    ]
    for key, value in sorted((spec.get("sparkConf") or {}).items()):
        if key not in _CLUSTER_ONLY_SPARK_CONF:
            argv += ["--conf", f"{key}={value}"]
    argv += ["--conf", "spark.ui.enabled=false", ctx.map_image_path(main)]
    return argv + [str(a) for a in spec.get("arguments") or []]


def pytorch_job(manifest: dict, ctx: LocalContext) -> list[str]:
    """PyTorchJob (Kubeflow) -> one standalone torchrun with N local processes (gloo on CPU).

    The Master's container command is `torchrun <script> <args>`; in the cluster the
    training operator feeds torchrun its rendezvous through PET_* variables. Here the
    same script runs under `torchrun --standalone`, with the job's maxRestarts, so a
    failed worker restarts the whole local group as it would the pods' group.
    """
    spec = manifest.get("spec", {})
    try:
        container = spec["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    except (KeyError, IndexError, TypeError) as e:
        raise PermanentError("PyTorchJob has no Master replica with a container") from e
    command = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    scripts = [i for i, a in enumerate(command) if a.endswith(".py")]
    if not scripts:
        raise PermanentError(
            f"PyTorchJob Master command {command[:3]} names no Python script to run"
        )
    script = scripts[0]
    max_restarts = int((spec.get("elasticPolicy") or {}).get("maxRestarts", 0))
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    return [
        torchrun,
        "--standalone",
        f"--nproc_per_node={ctx.torchrun_nproc}",
        f"--max-restarts={max_restarts}",
        ctx.map_image_path(command[script]),
        *command[script + 1 :],
    ]


def bench_validation(manifest: dict, ctx: LocalContext) -> list[str]:
    """BenchValidation (avfleet.dev) -> `avfleet bench validate` with a bench agent on localhost.

    In the cluster the bench operator leases a Xavier to the resource; here the same
    operator steps run against a local agent (ONNX Runtime) and the process's exit
    code stands for the success (Succeeded) or failure (Rejected, Failed) condition.
    """
    if not (manifest.get("spec") or {}).get("reportUri"):
        raise PermanentError("BenchValidation has no spec.reportUri")
    manifest = {
        **manifest,
        "metadata": {"name": "local-validation", **manifest.get("metadata", {})},
    }
    manifest["metadata"].pop("generateName", None)
    return [
        sys.executable,
        "-m",
        "avfleet",
        "bench",
        "validate",
        "--manifest-json",
        json.dumps(manifest),
    ]


ENGINES: dict[str, Callable[[dict, LocalContext], list[str]]] = {
    "SparkApplication": spark_application,
    "PyTorchJob": pytorch_job,
    "BenchValidation": bench_validation,
}


def command_for(manifest: dict, ctx: LocalContext) -> list[str]:
    kind = manifest.get("kind")
    engine = ENGINES.get(kind or "")
    if engine is None:
        raise PermanentError(
            f"resource kind {kind!r} has no local engine (known: {', '.join(sorted(ENGINES))})"
        )
    return engine(manifest, ctx)
