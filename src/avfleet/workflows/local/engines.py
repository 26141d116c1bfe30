"""Resource kinds -> embedded engines: how a cluster resource runs on one machine.

Each engine turns the (parameter-substituted) resource manifest into a `LocalRun`: the
argv of a local process whose exit code stands for the resource's success or failure
condition (SparkApplication -> spark-submit, PyTorchJob -> torchrun under
avfleet.train.launch, BenchValidation -> a local bench agent), and the restarts the
resource's own controller would make, by its documented rules:

* spark-operator `restartPolicy`: Never; OnFailure restarts a failed driver (any non-zero
  exit) up to onFailureRetries; Always is refused here (a batch job never uses it).
* Kubeflow `restartPolicy` of the Master replica: ExitCode restarts on exit codes 128-255
  only (1-127 are permanent), OnFailure on any failure, Never not at all; at most
  runPolicy.backoffLimit times.
* BenchValidation: the bench operator retries on another bench inside the run itself.
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
class LocalRun:
    argv: list[str]
    restarts: int = 0
    """How many times the resource's controller restarts a failed run."""
    restart_on: Callable[[int], bool] = lambda code: False
    """Which exit codes the controller restarts on."""
    policy: str = "Never"
    """The controller's policy, as the manifest names it (for the log)."""


def _any_failure(code: int) -> bool:
    return code != 0


def _signalled(code: int) -> bool:
    """Kubeflow's ExitCode policy: 128-255 are retryable, 1-127 permanent."""
    return 128 <= code <= 255


@dataclasses.dataclass(frozen=True)
class LocalContext:
    image_root: str
    """What stands in for the image's IMAGE_ROOT here: avfleet's package data (jobs/ inside)."""
    spark_master: str
    torchrun_nproc: int = 2
    """Processes a PyTorchJob gets on this machine, whatever its nodes x GPUs (CPU, gloo)."""

    def map_image_path(self, path: str) -> str:
        """A path inside the image (/opt/avfleet/...) -> the same file in avfleet's package data."""
        path = path.removeprefix("local://")
        if path.startswith(common.IMAGE_ROOT + "/"):
            return os.path.join(self.image_root, path[len(common.IMAGE_ROOT) + 1 :])
        return path


# sparkConf keys that only make sense on a cluster: in local mode the executor is the driver JVM.
_CLUSTER_ONLY_SPARK_CONF = {"spark.executor.pyspark.memory"}


def spark_application(manifest: dict, ctx: LocalContext) -> LocalRun:
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
    argv += [str(a) for a in spec.get("arguments") or []]
    restart = spec.get("restartPolicy") or {}
    policy = restart.get("type", "Never")
    if policy == "Never":
        return LocalRun(argv)
    if policy == "OnFailure":
        retries = int(restart.get("onFailureRetries", 0))
        return LocalRun(argv, retries, _any_failure, "OnFailure")
    raise PermanentError(f"SparkApplication restartPolicy {policy!r}: not run locally")


def pytorch_job(manifest: dict, ctx: LocalContext) -> LocalRun:
    """PyTorchJob (Kubeflow) -> one standalone torchrun with N local processes (gloo on CPU).

    The Master's container command is `python3 -m avfleet.train.launch <script> <args>`;
    in the cluster the training operator feeds torchrun its rendezvous through PET_*
    variables. Here the same script runs under the same launcher with `--standalone`,
    the job's maxRestarts (a failed worker restarts the whole local group as it would
    the pods' group) and the Master's restart policy.
    """
    spec = manifest.get("spec", {})
    try:
        master = spec["pytorchReplicaSpecs"]["Master"]
        container = master["template"]["spec"]["containers"][0]
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
    argv = [
        sys.executable,
        "-m",
        "avfleet.train.launch",
        "--standalone",
        f"--nproc_per_node={ctx.torchrun_nproc}",
        f"--max-restarts={max_restarts}",
        ctx.map_image_path(command[script]),
        *command[script + 1 :],
    ]
    policy = master.get("restartPolicy", "Never")
    backoff = int((spec.get("runPolicy") or {}).get("backoffLimit", 0))
    rules = {"ExitCode": _signalled, "OnFailure": _any_failure, "Always": _any_failure}
    if policy == "Never":
        return LocalRun(argv, policy=policy)
    if policy not in rules:
        raise PermanentError(f"PyTorchJob Master restartPolicy {policy!r} is not Kubeflow's")
    return LocalRun(argv, backoff, rules[policy], policy)


def bench_validation(manifest: dict, ctx: LocalContext) -> LocalRun:
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
    argv = [sys.executable, "-m", "avfleet", "bench", "validate"]
    return LocalRun([*argv, "--manifest-json", json.dumps(manifest)])


ENGINES: dict[str, Callable[[dict, LocalContext], LocalRun]] = {
    "SparkApplication": spark_application,
    "PyTorchJob": pytorch_job,
    "BenchValidation": bench_validation,
}


def run_for(manifest: dict, ctx: LocalContext) -> LocalRun:
    kind = manifest.get("kind")
    engine = ENGINES.get(kind or "")
    if engine is None:
        raise PermanentError(
            f"resource kind {kind!r} has no local engine (known: {', '.join(sorted(ENGINES))})"
        )
    return engine(manifest, ctx)
