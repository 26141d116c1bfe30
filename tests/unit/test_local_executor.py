"""The local executor on small workflows whose steps are real `python -c` processes."""

from __future__ import annotations

import sys
import time

import pytest
import yaml

from avfleet.core.errors import ConfigError, PermanentError
from avfleet.workflows.local.engines import LocalContext, pytorch_job, spark_application
from avfleet.workflows.local.executor import LocalExecutor
from avfleet.workflows.local.expressions import evaluate_retry_expression, substitute

RETRY = {
    "limit": 3,
    "retryPolicy": "Always",
    "expression": 'asInt(lastRetry.exitCode) == 75 || lastRetry.status == "Error"',
    "backoff": {"duration": "2s", "factor": 2},
}


def py(code: str) -> dict:
    return {"image": "python", "command": [sys.executable, "-c", code]}


def workflow(templates: list[dict], params: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "t"},
        "spec": {
            "entrypoint": "main",
            "arguments": {
                "parameters": [{"name": k, "value": v} for k, v in (params or {}).items()]
            },
            "templates": templates,
        },
    }


def flaky(counter: str, fail_times: int, code: int) -> str:
    # Fails `fail_times` times with `code`, then succeeds; the counter file survives attempts.
    return (
        f"import pathlib,sys; p=pathlib.Path({counter!r}); n=int(p.read_text()) if p.exists() else 0; "
        f"p.write_text(str(n+1)); sys.exit({code} if n < {fail_times} else 0)"
    )


@pytest.fixture
def executor(tmp_path):
    return LocalExecutor(workdir=str(tmp_path / "runs"), backoff_scale=0.01, quiet=True)


def test_retries_transient_exit_until_success_with_backoff(tmp_path, executor):
    wf = workflow(
        [
            {
                "name": "main",
                "container": py(flaky(str(tmp_path / "n"), 2, 75)),
                "retryStrategy": RETRY,
            }
        ]
    )
    started = time.time()
    result = executor.run_manifest(wf, {})
    assert result.succeeded
    assert result.nodes[0].attempts == 3
    assert time.time() - started >= (2 + 4) * 0.01  # backoff 2s then 4s, scaled


def test_permanent_exit_is_not_retried(tmp_path, executor):
    wf = workflow(
        [
            {
                "name": "main",
                "container": py(flaky(str(tmp_path / "n"), 5, 65)),
                "retryStrategy": RETRY,
            }
        ]
    )
    result = executor.run_manifest(wf, {})
    assert not result.succeeded
    assert (result.nodes[0].attempts, result.exit_code) == (1, 65)


def test_retry_limit_is_honoured(tmp_path, executor):
    wf = workflow(
        [
            {
                "name": "main",
                "container": py(flaky(str(tmp_path / "n"), 10, 75)),
                "retryStrategy": RETRY,
            }
        ]
    )
    result = executor.run_manifest(wf, {})
    assert (result.nodes[0].attempts, result.exit_code) == (4, 75)


def test_parameters_and_outputs_flow_through_the_dag(tmp_path, executor):
    write = "import pathlib,sys; d=pathlib.Path('/tmp/outputs'); d.mkdir(parents=True, exist_ok=True); (d/'n').write_text(str(len(sys.argv[1])))"
    check = "import sys; sys.exit(0 if sys.argv[1:] == ['5', 'hello'] else 65)"
    wf = workflow(
        [
            {
                "name": "main",
                "dag": {
                    "tasks": [
                        {"name": "a", "template": "count"},
                        {
                            "name": "b",
                            "template": "check",
                            "depends": "a",
                            "arguments": {
                                "parameters": [
                                    {"name": "n", "value": "{{tasks.a.outputs.parameters.n}}"}
                                ]
                            },
                        },
                    ]
                },
            },
            {
                "name": "count",
                "container": {**py(write), "args": ["{{workflow.parameters.word}}"]},
                "outputs": {"parameters": [{"name": "n", "valueFrom": {"path": "/tmp/outputs/n"}}]},
            },
            {
                "name": "check",
                "inputs": {"parameters": [{"name": "n"}]},
                "container": {
                    **py(check),
                    "args": ["{{inputs.parameters.n}}", "{{workflow.parameters.word}}"],
                },
            },
        ],
        params={"word": "xxxxx"},
    )
    result = executor.run_manifest(wf, {"word": "hello"})
    assert result.succeeded, result.summary()
    first = result.nodes[0]
    assert first.name.endswith(".a") and first.outputs == {"n": "5"}
    assert (
        tmp_path / "runs" / first.name / "outputs" / "n"
    ).read_text() == "5"  # /tmp/outputs -> the step's sandbox


def test_failed_task_omits_its_dependents(executor):
    wf = workflow(
        [
            {
                "name": "main",
                "dag": {
                    "tasks": [
                        {"name": "a", "template": "fail"},
                        {"name": "b", "template": "ok", "dependencies": ["a"]},
                    ]
                },
            },
            {"name": "fail", "container": py("raise SystemExit(65)")},
            {"name": "ok", "container": py("pass")},
        ]
    )
    result = executor.run_manifest(wf, {})
    assert [n.phase for n in result.nodes] == ["Failed", "Omitted"]
    assert result.exit_code == 65


def test_unknown_parameter_and_unresolvable_token_are_clear_errors(executor):
    wf = workflow(
        [{"name": "main", "container": {**py("pass"), "args": ["{{workflow.parameters.nope}}"]}}],
        params={"date": "x"},
    )
    with pytest.raises(ConfigError, match="declares no such parameter"):
        executor.run_manifest(wf, {"dat": "2026-11-20"})
    with pytest.raises(PermanentError, match=r"cannot resolve \{\{workflow.parameters.nope\}\}"):
        executor.run_manifest(wf, {})


def test_unknown_resource_kind_is_refused(executor):
    wf = workflow(
        [
            {
                "name": "main",
                "resource": {
                    "action": "create",
                    "manifest": yaml.safe_dump({"apiVersion": "x/v1", "kind": "Mystery"}),
                },
            }
        ]
    )
    with pytest.raises(PermanentError, match="resource kind 'Mystery' has no local engine"):
        executor.run_manifest(wf, {})


def test_spark_application_maps_to_local_spark_submit():
    manifest = {
        "kind": "SparkApplication",
        "spec": {
            "type": "Python",
            "mainApplicationFile": "local:///opt/avfleet/jobs/index_recordings.py",
            "arguments": ["--date", "2026-11-20"],
            "sparkConf": {
                "spark.executor.pyspark.memory": "1g",
                "spark.python.worker.reuse": "true",
            },
        },
    }
    argv = spark_application(manifest, LocalContext(repo_root="/repo", spark_master="local[2]"))
    assert argv[0].endswith("spark-submit")
    assert argv[1:3] == ["--master", "local[2]"]
    assert "spark.python.worker.reuse=true" in argv and not any("pyspark.memory" in a for a in argv)
    assert argv[-3:] == ["/repo/jobs/index_recordings.py", "--date", "2026-11-20"]


@pytest.mark.parametrize(
    "expression,last,expected",
    [
        (
            'asInt(lastRetry.exitCode) == 75 || lastRetry.status == "Error"',
            {"exitCode": "75", "status": "Failed"},
            True,
        ),
        (
            'asInt(lastRetry.exitCode) == 75 || lastRetry.status == "Error"',
            {"exitCode": "65", "status": "Failed"},
            False,
        ),
        (
            'asInt(lastRetry.exitCode) == 75 || lastRetry.status == "Error"',
            {"exitCode": "", "status": "Error"},
            True,
        ),
        (
            "asInt(lastRetry.exitCode) > 1 && !(lastRetry.status == 'Error')",
            {"exitCode": "2", "status": "Failed"},
            True,
        ),
        ("lastRetry.status != 'Failed'", {"exitCode": "1", "status": "Failed"}, False),
    ],
)
def test_retry_expressions(expression, last, expected):
    assert evaluate_retry_expression(expression, last) is expected


def test_retry_expression_refuses_code():
    with pytest.raises(PermanentError):
        evaluate_retry_expression("__import__('os').system('true')", {})


def test_substitution_is_strict():
    assert substitute("a{{ x }}b", {"x": "1"}, "here") == "a1b"
    with pytest.raises(PermanentError, match="here: cannot resolve"):
        substitute("{{y}}", {"x": "1"}, "here")


def test_pytorchjob_maps_to_local_torchrun():
    manifest = {
        "kind": "PyTorchJob",
        "spec": {
            "elasticPolicy": {"maxRestarts": 3, "nProcPerNode": 8},
            "pytorchReplicaSpecs": {
                "Master": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "command": [
                                        "torchrun",
                                        "/opt/avfleet/jobs/train.py",
                                        "--epochs",
                                        "2",
                                    ]
                                }
                            ]
                        }
                    }
                }
            },
        },
    }
    argv = pytorch_job(manifest, LocalContext(repo_root="/repo", spark_master="local[2]"))
    assert argv[0].endswith("torchrun")
    assert argv[1:4] == ["--standalone", "--nproc_per_node=2", "--max-restarts=3"]
    assert argv[4:] == ["/repo/jobs/train.py", "--epochs", "2"]
    with pytest.raises(PermanentError, match="no Master replica"):
        pytorch_job({"kind": "PyTorchJob", "spec": {}}, LocalContext("/r", "local[2]"))
