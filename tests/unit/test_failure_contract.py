"""One failure contract through every executor: a transient failure is retried and a
permanent one is not, for a container step, a SparkApplication, a PyTorchJob and a
BenchValidation, each run by the local executor with the retry and restart rules of the
controller that runs it in a cluster (workflows/local/engines.py).

The job inside each fails on purpose: transient twice then succeeds, or permanent once.
Each case counts how many times the job ran.
"""

from __future__ import annotations

import json
import pathlib
import sys

import pytest
import yaml

from avfleet.core.errors import ExitCode
from avfleet.train import launch
from avfleet.workflows import common as c
from avfleet.workflows.local.executor import LocalExecutor

JOB = """\
import os, pathlib, sys
from avfleet.core.errors import PermanentError, TransientError
counter = pathlib.Path({counter!r} + os.environ.get("RANK", ""))  # one count per rank
def job():
    runs = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(runs + 1))
    if {mode!r} == "transient" and runs < 2:
        raise TransientError("S3 answered 503 (injected)")
    if {mode!r} == "permanent":
        raise PermanentError("recording root is not a fleet (injected)")
"""


def job_script(tmp_path: pathlib.Path, mode: str, tail: str) -> pathlib.Path:
    script = tmp_path / f"job_{mode}.py"
    script.write_text(JOB.format(counter=str(tmp_path / "runs"), mode=mode) + tail)
    return script


def runs(tmp_path: pathlib.Path, rank: str = "") -> int:
    return int((tmp_path / f"runs{rank}").read_text())


def workflow(template: dict, after: dict | None = None) -> dict:
    tasks = [{"name": "step", "template": template["name"]}]
    templates = [template]
    if after:
        tasks.append({"name": "after", "template": after["name"], "depends": "step"})
        templates.append(after)
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "contract"},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "image", "value": c.DEFAULT_IMAGE}]},
            "templates": [{"name": "main", "dag": {"tasks": tasks}}, *templates],
        },
    }


def resource_template(name: str, manifest: dict, deadline_s: int = 600) -> dict:
    """A resource step as avfleet's builders make it (retry on Error only, a deadline),
    creating `manifest`. The conditions are the builders' concern; the local executor
    stands for them with the engine's exit code."""
    step = template_dict(
        c.resource_step(
            name,
            "placeholder",
            [],
            success="status.phase == Succeeded",
            failure="status.phase in (Rejected,Failed)",
            deadline_s=deadline_s,
        )
    )
    step["resource"]["manifest"] = yaml.safe_dump(manifest)
    return step


def template_dict(template) -> dict:  # noqa: ANN001 - a Hera template
    return json.loads(template._build_template().model_dump_json(exclude_none=True, by_alias=True))


@pytest.fixture
def executor(tmp_path):
    return LocalExecutor(workdir=str(tmp_path / "wf"), backoff_scale=0.001, quiet=True)


# --- container steps: Argo's retryStrategy on exit 75 ---------------------------------------


@pytest.mark.parametrize("mode,ran,succeeded", [("transient", 3, True), ("permanent", 1, False)])
def test_container_step(tmp_path, executor, mode, ran, succeeded):
    script = job_script(
        tmp_path, mode, "from avfleet.core.entry import run_main\nsys.exit(run_main(job))\n"
    )
    step = template_dict(c.cli_step("step", []))
    step["container"]["command"] = [sys.executable, str(script)]
    step["container"].pop("args", None)
    result = executor.run_manifest(workflow(step), {})
    assert result.succeeded is succeeded and runs(tmp_path) == ran
    if not succeeded:
        assert result.exit_code == ExitCode.BAD_INPUT


# --- SparkApplication: the spark-operator's OnFailure restarts; permanent via the outcome ----


def spark_manifest(script: pathlib.Path, outcome: pathlib.Path) -> dict:
    from avfleet.workflows import fleet_index

    return {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": "contract"},
        "spec": {
            "type": "Python",
            "mainApplicationFile": str(script),
            "arguments": [str(outcome)],
            "restartPolicy": fleet_index.RESTART_POLICY,  # what the index workflow ships
        },
    }


@pytest.mark.parametrize("mode,ran,succeeded", [("transient", 3, True), ("permanent", 1, False)])
def test_spark_application(tmp_path, executor, mode, ran, succeeded):
    outcome = tmp_path / "outcome.json"
    script = job_script(
        tmp_path,
        mode,
        "from avfleet.core.outcome import run_with_outcome\n"
        "from avfleet.core.storage import StorageConfig\n"
        "sys.exit(run_with_outcome(job, sys.argv[1], StorageConfig()))\n",
    )
    step = resource_template("spark", spark_manifest(script, outcome))
    verify = template_dict(c.cli_step("verify", []))
    verify["container"]["command"] = [
        sys.executable,
        "-c",
        "import sys; from avfleet.core.entry import run_main; "
        "from avfleet.core.outcome import raise_recorded; "
        "from avfleet.core.storage import StorageConfig; "
        f"sys.exit(run_main(lambda: raise_recorded({str(outcome)!r}, StorageConfig())))",
    ]
    verify["container"].pop("args", None)
    result = executor.run_manifest(workflow(step, verify), {})
    assert result.succeeded is succeeded and runs(tmp_path) == ran
    spark_node = next(n for n in result.nodes if n.template == "spark")
    assert spark_node.attempts == 1  # the operator restarted it; Argo did not retry
    if not succeeded:  # the driver ended 0 (no restart), the next step fails with its code
        assert spark_node.phase == "Succeeded"
        assert result.exit_code == ExitCode.BAD_INPUT
        assert "recording root is not a fleet" in json.loads(outcome.read_text())["message"]


# --- PyTorchJob: torchrun under avfleet.train.launch, Kubeflow's ExitCode restarts -----------


def pytorch_manifest(script: pathlib.Path, max_restarts: int) -> dict:
    from avfleet.workflows import train

    container = {"name": "pytorch", "command": [*train.LAUNCH, str(script)]}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "contract"},
        "spec": {
            "runPolicy": {"backoffLimit": train.BACKOFF_LIMIT},  # what training ships
            "elasticPolicy": {"maxRestarts": max_restarts},
            "pytorchReplicaSpecs": {
                "Master": {
                    "replicas": 1,
                    "restartPolicy": train.RESTART_POLICY,
                    "template": {"spec": {"containers": [container]}},
                }
            },
        },
    }


@pytest.mark.parametrize(
    "mode,max_restarts,ran,succeeded",
    [("transient", 0, 3, True), ("permanent", 0, 1, False), ("permanent", 2, 1, False)],
)
def test_pytorch_job(tmp_path, executor, mode, max_restarts, ran, succeeded):
    """Two ranks under the launcher: a transient failure of rank 0 costs a pod restart
    (exit 203, Kubeflow restarts it), a permanent one ends the job (exit 65) at once; when
    torchrun restarts the group itself (maxRestarts), the restarted workers see the
    recorded permanent failure and end without running the job again."""
    script = job_script(
        tmp_path,
        mode,
        "from avfleet.train.launch import run_worker\n"
        "if os.environ.get('RANK') == '1': sys.exit(run_worker(lambda: None))\n"
        "sys.exit(run_worker(job))\n",
    )
    step = resource_template("torch", pytorch_manifest(script, max_restarts))
    result = executor.run_manifest(workflow(step), {})
    assert result.succeeded is succeeded
    assert runs(tmp_path, "0") == ran
    node = result.nodes[-1]
    assert node.attempts == 1
    if not succeeded:
        assert node.exit_code == ExitCode.BAD_INPUT


def test_the_launcher_maps_worker_codes_to_kubeflow_semantics():
    assert launch.exit_code_for(0, {}) == 0
    assert launch.exit_code_for(1, {0: [75, 0]}) == ExitCode.RESTARTABLE
    assert 128 <= ExitCode.RESTARTABLE <= 255  # Kubeflow's ExitCode policy restarts it
    assert launch.exit_code_for(1, {0: [0, 65]}) == 65  # permanent: 1-127, not restarted
    assert launch.exit_code_for(1, {0: [75], 1: [78]}) == 78
    assert launch.exit_code_for(1, {}) == ExitCode.RESTARTABLE  # a worker killed (OOM)
    assert launch.exit_code_for(-15, {}) == 143  # torchrun itself stopped by SIGTERM


# --- BenchValidation: the bench operator's attempts; Argo retries only an Error -------------


def test_bench_validation_rejected_is_final_and_argo_retries_only_errors(tmp_path, executor):
    step = resource_template("validate", {})
    assert step["retryStrategy"]["expression"] == 'lastRetry.status == "Error"'
    # A validation whose model does not exist: the operator's steps fail it (Failed) and the
    # step is not retried by Argo (its attempts were the operator's).
    manifest = {
        "apiVersion": "avfleet.dev/v1alpha1",
        "kind": "BenchValidation",
        "metadata": {"name": "contract"},
        "spec": {
            "modelUri": str(tmp_path / "no-such-release" / "model.onnx"),
            "bundleUri": str(tmp_path / "no-such-release" / "bundle.npz"),
            "reportUri": str(tmp_path / "report.json"),
            "target": "xavier-agx-jp5",
            "precision": "fp32",
            "runs": 5,
            "warmup": 1,
        },
    }
    step = resource_template("validate", manifest)
    result = executor.run_manifest(workflow(step), {})
    assert not result.succeeded
    node = result.nodes[-1]
    assert node.attempts == 1 and node.phase == "Failed"


def test_a_resource_step_past_its_deadline_fails(tmp_path, executor):
    script = tmp_path / "slow.py"
    script.write_text("import time\ntime.sleep(30)\n")
    manifest = {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": "slow"},
        "spec": {"type": "Python", "mainApplicationFile": str(script)},
    }
    step = resource_template("slow", manifest, deadline_s=1)
    result = executor.run_manifest(workflow(step), {})
    assert not result.succeeded and result.nodes[-1].phase == "Failed"


@pytest.mark.parametrize(
    "error,code",
    [
        (
            RuntimeError(
                "[../third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
                "[10.89.0.11]:904: Connection reset by peer."
            ),
            ExitCode.TRANSIENT,
        ),
        ("DistNetworkError", ExitCode.TRANSIENT),
        (RuntimeError("shape mismatch in the model"), ExitCode.INTERNAL),
    ],
    ids=["gloo-peer-reset", "dist-network-error", "a-bug"],
)
def test_a_rank_that_loses_its_peer_exits_transient_and_a_bug_does_not(error, code):
    """A worker pod deleted mid-run (seen on a real cluster) makes the other ranks' collective
    raise: that is worth the restart and the resume from the checkpoint, unlike a bug."""
    import torch.distributed as dist

    if error == "DistNetworkError":
        error = dist.DistNetworkError("Failed to recv, got 0 bytes")

    def job() -> None:
        raise error

    assert launch.run_worker(job) == code
