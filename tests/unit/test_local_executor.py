"""The local executor on small workflows whose steps are real `python -c` processes."""

from __future__ import annotations

import json
import pathlib
import sys
import time

import pytest
import yaml

from avfleet.core.errors import ConfigError, PermanentError
from avfleet.workflows.local.engines import LocalContext, pytorch_job, spark_application
from avfleet.workflows.local.executor import LocalExecutor
from avfleet.workflows.local.expressions import (
    evaluate_condition,
    evaluate_retry_expression,
    substitute,
)

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
    run = spark_application(manifest, LocalContext(image_root="/repo", spark_master="local[2]"))
    argv = run.argv
    assert run.restarts == 0 and run.policy == "Never"  # no restartPolicy: the operator's default
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
                                        "python3",
                                        "-m",
                                        "avfleet.train.launch",
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
    argv = pytorch_job(manifest, LocalContext(image_root="/repo", spark_master="local[2]")).argv
    assert argv[0] == sys.executable and argv[1:3] == ["-m", "avfleet.train.launch"]
    assert argv[3:6] == ["--standalone", "--nproc_per_node=2", "--max-restarts=3"]
    assert argv[6:] == ["/repo/jobs/train.py", "--epochs", "2"]
    with pytest.raises(PermanentError, match="no Master replica"):
        pytorch_job({"kind": "PyTorchJob", "spec": {}}, LocalContext("/r", "local[2]"))


# --- loops, fan-in, when, templateRef (Argo's documented semantics, docs/walk-through/loops.md) --


def record(folder: str, seconds: float = 0.0) -> dict:
    """A leaf that notes when it ran (start and end times) and outputs its input `v` doubled."""
    code = (
        "import json,pathlib,sys,time,os; t0=time.time(); "
        f"time.sleep({seconds}); "
        f"pathlib.Path({folder!r}).mkdir(parents=True, exist_ok=True); "
        f"pathlib.Path({folder!r}, str(os.getpid())).write_text(json.dumps([t0, time.time()])); "
        "pathlib.Path(sys.argv[2]).mkdir(parents=True, exist_ok=True); "
        "pathlib.Path(sys.argv[2], 'doubled').write_text(sys.argv[1] * 2)"
    )
    return {
        "name": "leaf",
        "inputs": {"parameters": [{"name": "v"}]},
        "container": {
            "image": "python",
            "command": [sys.executable, "-c", code, "{{inputs.parameters.v}}", "/tmp/outputs"],
        },
        "outputs": {
            "parameters": [{"name": "doubled", "valueFrom": {"path": "/tmp/outputs/doubled"}}]
        },
    }


def dag(tasks: list[dict], *templates: dict, parallelism: int | None = None, params=None) -> dict:
    """A workflow whose entrypoint `main` is a dag of `tasks`, calling `templates`."""
    main = {"name": "main", "dag": {"tasks": tasks}}
    if parallelism:
        main["parallelism"] = parallelism
    return workflow([main, *templates], params)


def fan(tasks: list[dict], leaf: dict, parallelism: int | None = None) -> dict:
    collect = {
        "name": "collect",
        "inputs": {"parameters": [{"name": "all"}]},
        "container": py("import sys"),
        "outputs": {},
    }
    return dag(tasks, leaf, collect, parallelism=parallelism)


def spans(folder) -> list[tuple[float, float]]:
    import json as _json

    return [tuple(_json.loads(p.read_text())) for p in folder.iterdir()]


def test_with_items_runs_each_item_and_aggregates_outputs_in_item_order(tmp_path, executor):
    wf = fan(
        [
            {
                "name": "each",
                "template": "leaf",
                "arguments": {"parameters": [{"name": "v", "value": "{{item}}"}]},
                "withItems": ["c", "a", "b"],
            },
            {
                "name": "gather",
                "template": "collect",
                "depends": "each",
                "arguments": {
                    "parameters": [
                        {"name": "all", "value": "{{tasks.each.outputs.parameters.doubled}}"}
                    ]
                },
            },
        ],
        record(str(tmp_path / "t")),
    )
    # One item per node, named as Argo names them; the fan-in sees values in item order.
    scope_capture = {}
    original = executor._call

    def spy(templates, call, scope, *rest):
        if call["name"] == "gather":
            scope_capture.update(scope)
        return original(templates, call, scope, *rest)

    executor._call = spy
    result = executor.run_manifest(wf, {})
    assert result.succeeded
    items = [n.name.split(".")[-1] for n in result.nodes if "each(" in n.name]
    assert sorted(items) == ["each(0:c)", "each(1:a)", "each(2:b)"]
    assert json.loads(scope_capture["tasks.each.outputs.parameters.doubled"]) == ["cc", "aa", "bb"]
    assert json.loads(scope_capture["tasks.each.outputs.parameters"]) == [
        {"doubled": "cc"},
        {"doubled": "aa"},
        {"doubled": "bb"},
    ]


def test_with_param_objects_expose_item_fields(tmp_path, executor):
    plan = {
        "name": "plan",
        "container": py(
            "import json,pathlib; pathlib.Path('/tmp/outputs').mkdir(parents=True, exist_ok=True); "
            "pathlib.Path('/tmp/outputs/items').write_text(json.dumps("
            "[{'name': 'x', 'n': 1}, {'name': 'y', 'n': 2}]))"
        ),
        "outputs": {"parameters": [{"name": "items", "valueFrom": {"path": "/tmp/outputs/items"}}]},
    }
    wf = fan(
        [
            {"name": "plan", "template": "plan"},
            {
                "name": "each",
                "template": "leaf",
                "depends": "plan",
                "arguments": {"parameters": [{"name": "v", "value": "{{item.name}}{{item.n}}"}]},
                "withParam": "{{tasks.plan.outputs.parameters.items}}",
            },
        ],
        record(str(tmp_path / "t")),
    )
    wf["spec"]["templates"].append(plan)
    result = executor.run_manifest(wf, {})
    assert result.succeeded
    names = sorted(n.name.split(".")[-1] for n in result.nodes if "each(" in n.name)
    assert names == ["each(0:n:1,name:x)", "each(1:n:2,name:y)"]
    outputs = sorted(n.outputs["doubled"] for n in result.nodes if "each(" in n.name)
    assert outputs == ["x1x1", "y2y2"]


def test_parallelism_limits_concurrent_items(tmp_path, executor):
    folder = tmp_path / "t"
    wf = fan(
        [
            {
                "name": "each",
                "template": "leaf",
                "arguments": {"parameters": [{"name": "v", "value": "{{item}}"}]},
                "withItems": ["1", "2", "3", "4", "5"],
            }
        ],
        record(str(folder), seconds=0.6),
        parallelism=2,
    )
    result = executor.run_manifest(wf, {})
    assert result.succeeded
    times = spans(folder)
    assert len(times) == 5
    most = max(sum(1 for a, b in times if a <= t < b) for t, _ in times)
    assert most == 2  # items overlap (they do run concurrently), never more than 2 at once


def test_failed_item_retries_alone_then_fails_the_task_and_omits_the_fan_in(tmp_path, executor):
    counter = tmp_path / "n"
    leaf = {
        "name": "leaf",
        "inputs": {"parameters": [{"name": "v"}]},
        "container": py(
            f"import sys; v='{{{{inputs.parameters.v}}}}'; "
            f"exec({flaky(str(counter), 2, 75)!r}) if v == 'flaky' else None; "
            "sys.exit(65 if v == 'bad' else 0)"
        ),
        "retryStrategy": RETRY,
    }
    wf = dag(
        [
            {
                "name": "each",
                "template": "leaf",
                "arguments": {"parameters": [{"name": "v", "value": "{{item}}"}]},
                "withItems": ["ok", "flaky", "bad"],
            },
            {
                "name": "after",
                "template": "leaf",
                "depends": "each",
                "arguments": {"parameters": [{"name": "v", "value": "ok"}]},
            },
        ],
        leaf,
        parallelism=1,
    )
    result = executor.run_manifest(wf, {})
    assert not result.succeeded
    by_item = {n.name.split(".")[-1]: n for n in result.nodes}
    assert by_item["each(1:flaky)"].phase == "Succeeded"
    assert by_item["each(1:flaky)"].attempts == 3  # retried on its own (exit 75 twice)
    assert by_item["each(2:bad)"].phase == "Failed"
    assert by_item["each(2:bad)"].attempts == 1  # 65: not retried
    assert by_item["after"].phase == "Omitted"
    assert result.exit_code == 65


def test_when_skips_and_skipped_satisfies_dependencies(tmp_path, executor):
    wf = dag(
        [
            {
                "name": "maybe",
                "template": "leaf",
                "when": "'{{workflow.parameters.budget}}' != ''",
                "arguments": {"parameters": [{"name": "v", "value": "a"}]},
            },
            {
                "name": "none",
                "template": "leaf",
                "withParam": "[]",
                "arguments": {"parameters": [{"name": "v", "value": "{{item}}"}]},
            },
            {
                "name": "then",
                "template": "leaf",
                "depends": "maybe && none",
                "arguments": {"parameters": [{"name": "v", "value": "b"}]},
            },
        ],
        record(str(tmp_path / "t")),
        params={"budget": ""},
    )
    result = executor.run_manifest(wf, {})
    assert result.succeeded
    phases = {n.name.split(".")[-1]: n.phase for n in result.nodes}
    assert phases == {"maybe": "Skipped", "none": "Skipped", "then": "Succeeded"}
    result = executor.run_manifest(wf, {"budget": "2.0"})
    assert {n.name.split(".")[-1]: n.phase for n in result.nodes}["maybe"] == "Succeeded"


def test_template_ref_runs_the_referenced_template_in_its_own_namespace(tmp_path):
    library = tmp_path / "lib"
    library.mkdir()
    shared = workflow(
        [
            {
                "name": "outer",
                "inputs": {"parameters": [{"name": "v"}]},
                "steps": [
                    [
                        {
                            "name": "inner",
                            "template": "leaf",
                            "arguments": {
                                "parameters": [{"name": "v", "value": "{{inputs.parameters.v}}"}]
                            },
                        }
                    ]
                ],
                "outputs": {
                    "parameters": [
                        {
                            "name": "doubled",
                            "valueFrom": {
                                "parameter": "{{steps.inner.outputs.parameters.doubled}}"
                            },
                        }
                    ]
                },
            },
            record(str(tmp_path / "t")),
        ]
    )
    shared["metadata"]["name"] = "shared"
    (library / "shared.yaml").write_text(yaml.safe_dump(shared))
    caller = workflow(
        [
            {
                "name": "main",
                "dag": {
                    "tasks": [
                        {
                            "name": "use",
                            "templateRef": {"name": "shared", "template": "outer"},
                            "arguments": {"parameters": [{"name": "v", "value": "q"}]},
                        },
                        {
                            "name": "then",
                            "templateRef": {"name": "shared", "template": "leaf"},
                            "depends": "use",
                            "arguments": {
                                "parameters": [
                                    {
                                        "name": "v",
                                        "value": "{{tasks.use.outputs.parameters.doubled}}",
                                    }
                                ]
                            },
                        },
                    ]
                },
            },
        ]
    )
    executor = LocalExecutor(workdir=str(tmp_path / "runs"), quiet=True)
    with pytest.raises(PermanentError, match="templateRef 'shared' is not a loaded"):
        executor.run_manifest(caller, {})
    executor.load_library(str(library))
    result = executor.run_manifest(caller, {})
    assert result.succeeded
    outputs = {n.name.split(".", 1)[1]: n.outputs for n in result.nodes}
    # the dag's own output (valueFrom.parameter) feeds the next task; `leaf` resolved in `shared`
    assert outputs == {"use.inner": {"doubled": "qq"}, "then": {"doubled": "qqqq"}}


def test_hostile_items_cannot_escape_the_sandbox_and_bad_with_param_is_named(tmp_path, executor):
    wf = dag(
        [
            {
                "name": "each",
                "template": "leaf",
                "withItems": ["../../escape", "a/b"],
                "arguments": {"parameters": [{"name": "v", "value": "{{item}}"}]},
            }
        ],
        record(str(tmp_path / "t")),
    )
    result = executor.run_manifest(wf, {})
    assert result.succeeded
    runs = tmp_path / "runs"
    assert not (tmp_path / "escape").exists()
    assert all(runs in pathlib.Path(n.log_path).parents for n in result.nodes if n.log_path)
    wf["spec"]["templates"][0]["dag"]["tasks"][0].pop("withItems")
    wf["spec"]["templates"][0]["dag"]["tasks"][0]["withParam"] = "not json"
    with pytest.raises(PermanentError, match="withParam is not a JSON array"):
        executor.run_manifest(wf, {})


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("heads == heads", True),  # Argo's coinflip example: bare words compare as strings
        ("tails == heads", False),
        ("'' != ''", False),
        ("'1.5' != ''", True),
        ("2 > 10", False),
        ("!(a == b)", True),
        ("1.0 == 1 && true", True),
    ],
)
def test_when_conditions(expression, expected):
    assert evaluate_condition(expression) is expected


def test_when_refuses_code():
    for bad in ('__import__("os").system("true")', "a.b == c"):
        with pytest.raises(PermanentError):
            evaluate_condition(bad)


def test_an_optional_secret_is_absent_here_and_a_required_one_is_refused(tmp_path, executor):
    secret = {"secretKeyRef": {"name": "avfleet-bench-token", "key": "token", "optional": True}}
    container = py("import os, sys; sys.exit(0 if os.environ.get('ONLY_HERE') == 'x' else 3)")
    container["env"] = [{"name": "TOKEN", "valueFrom": secret}, {"name": "ONLY_HERE", "value": "x"}]
    wf = workflow([{"name": "main", "container": container}])
    assert executor.run_manifest(wf, {}).succeeded
    secret["secretKeyRef"]["optional"] = False
    with pytest.raises(PermanentError, match="TOKEN.*only in a cluster"):
        executor.run_manifest(wf, {})


# Crafted parameter values against the rendered resource manifests, substituted as the local
# executor (and Argo) substitute them: each stays one inert string, or is refused by name.
HOSTILE = {
    "newline and keys": 's3://fleet"\n    volumes:\n      - name: root\n        hostPath: {path: /}\n#',
    "flow mapping": '{"hostPath": {"path": "/"}}',
    "quote breaking": 'a" , "--conf", "spark.driver.extraJavaOptions=-Dx=1',
    "yaml anchor": "&a [*a, *a]",
}


def _resource_manifests():
    from avfleet.workflows.render import render_all

    for rel, text in sorted(render_all().items()):
        doc = yaml.safe_load(text.split("\n", 1)[1])
        spec = doc["spec"].get("workflowSpec", doc["spec"])
        for template in spec.get("templates", []):
            if "resource" in template:
                yield rel, template


@pytest.mark.parametrize("value", sorted(HOSTILE))
def test_a_crafted_string_parameter_stays_one_inert_string(value):
    import re

    from avfleet.workflows.local.expressions import substitute

    crafted = HOSTILE[value]
    checked = 0
    for rel, template in _resource_manifests():
        text = template["resource"]["manifest"]
        names = set(re.findall(r"(?:workflow|inputs)\.parameters\['([^']+)'\]", text))
        numeric = set(
            re.findall(r"as(?:Int|Float)\((?:workflow|inputs)\.parameters\['([^']+)'\]", text)
        )
        scope = {"workflow.name": "wf-1", "workflow.namespace": "ns"}
        for n in names:
            good = "3" if n in numeric else f"v-{n}"
            scope[f"workflow.parameters.{n}"] = scope[f"inputs.parameters.{n}"] = good
        baseline = yaml.safe_load(substitute(text, scope, rel))
        for n in names - numeric:
            hostile = dict(scope)
            hostile[f"workflow.parameters.{n}"] = hostile[f"inputs.parameters.{n}"] = crafted
            doc = yaml.safe_load(substitute(text, hostile, rel))
            # Same structure: every key path the same, the crafted text exactly where the value was.
            assert _shape(doc) == _shape(baseline), (rel, n)
            assert any(crafted in s for s in _strings(doc)), (rel, n)
            checked += 1
    assert checked > 10


@pytest.mark.parametrize("crafted", ["3\n  hostPath: /", "1e9", "two", ""])
def test_a_crafted_number_parameter_is_refused_by_name(crafted):
    from avfleet.workflows.local.expressions import substitute

    for rel, template in _resource_manifests():
        text = template["resource"]["manifest"]
        if "asInt(" not in text:
            continue
        with pytest.raises(PermanentError, match="is not an integer"):
            substitute(text, _Anything(crafted), rel)


class _Anything(dict):
    """Every name resolves to the same value (the crafted one)."""

    def __init__(self, value: str) -> None:
        super().__init__()
        self.value = value

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return self.value


def _shape(doc):
    if isinstance(doc, dict):
        return {k: _shape(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_shape(v) for v in doc]
    return type(doc).__name__ if not isinstance(doc, str) else "str"


def _strings(doc) -> list:
    if isinstance(doc, dict):
        return [s for v in doc.values() for s in _strings(v)]
    if isinstance(doc, list):
        return [s for v in doc for s in _strings(v)]
    return [doc] if isinstance(doc, str) else []
