"""Rendered manifests: no drift from the builders, valid against Argo's CRDs, references resolve."""

from __future__ import annotations

import copy
import pathlib

import pytest
import yaml

from avfleet.workflows.render import (
    check_or_write,
    default_manifests_dir,
    manifests_root,
    render_all,
)
from avfleet.workflows.validate import (
    KIND_TO_CRD,
    reference_errors,
    schema_errors,
    unused_parameters,
)
from tests.conftest import REPO_ROOT, TESTDATA, shared_testdata, tool
from tests.manifest_helpers import resource_docs

CRDS = TESTDATA / "argo" / "crds-full"


def rendered():
    return {rel: yaml.safe_load(text.split("\n", 1)[1]) for rel, text in render_all().items()}


def library() -> dict:
    """The WorkflowTemplates `kubectl apply -k manifests/overlays/...` installs: what templateRef can name."""
    return {
        d["metadata"]["name"]: d for d in rendered().values() if d["kind"] == "WorkflowTemplate"
    }


def test_committed_manifests_match_builders():
    drift = check_or_write(None, write=False)
    assert not drift, f"regenerate with `make render`: {drift}"


@pytest.mark.parametrize("rel", sorted(render_all()))
def test_rendered_manifest_is_valid(rel):
    shared_testdata("argo")
    doc = rendered()[rel]
    assert schema_errors(doc, str(CRDS)) == []
    assert reference_errors(doc, library()) == []
    assert unused_parameters(doc, library()) == []


def test_template_refs_resolve_and_the_caller_declares_what_they_read():
    docs = rendered()
    engine = docs["workflows/data-engine.yaml"]
    refs = [
        t["templateRef"]
        for t in next(t for t in engine["spec"]["templates"] if t["name"] == "main")["dag"]["tasks"]
        if "templateRef" in t
    ]
    assert {r["name"] for r in refs} == {"fleet-index", "train"}  # used, not copied
    names = {t["name"] for t in engine["spec"]["templates"]}
    assert not names & {"plan-index", "spark-index", "build-dataset", "train-ensemble"}
    missing_param = copy.deepcopy(engine)
    params = missing_param["spec"]["arguments"]["parameters"]
    params[:] = [p for p in params if p["name"] != "recordings"]
    assert any(
        "fleet-index/plan-index uses workflow parameter 'recordings'" in e
        for e in reference_errors(missing_param, library())
    )
    dangling = copy.deepcopy(engine)
    main = next(t for t in dangling["spec"]["templates"] if t["name"] == "main")
    next(t for t in main["dag"]["tasks"] if t["name"] == "index")["templateRef"]["template"] = "x"
    assert any("fleet-index/x does not exist" in e for e in reference_errors(dangling, library()))
    wrong_output = copy.deepcopy(engine)
    main = next(t for t in wrong_output["spec"]["templates"] if t["name"] == "main")
    task = next(t for t in main["dag"]["tasks"] if t["name"] == "train-ensemble")
    task["arguments"]["parameters"][0]["value"] = "{{tasks.dataset.outputs.parameters.dataset}}"
    assert any(
        "no output parameter 'dataset'" in e for e in reference_errors(wrong_output, library())
    )


def test_validator_catches_typos_bad_enums_and_dangling_references():
    shared_testdata("argo")
    doc = rendered()["workflows/fleet-index.yaml"]
    typo = copy.deepcopy(doc)
    typo["spec"]["templates"][0]["retryStategy"] = {"limit": 1}
    assert any("retryStategy" in e for e in schema_errors(typo, str(CRDS)))
    bad_enum = copy.deepcopy(doc)
    next(t for t in bad_enum["spec"]["templates"] if "resource" in t)["resource"]["action"] = (
        "launch"
    )
    assert any("launch" in e for e in schema_errors(bad_enum, str(CRDS)))
    dangling = copy.deepcopy(doc)
    dag = next(t for t in dangling["spec"]["templates"] if "dag" in t)
    dag["dag"]["tasks"][1]["template"] = "spark-indx"
    dag["dag"]["tasks"][2]["depends"] = "indx"
    dag["dag"]["tasks"][2]["arguments"]["parameters"][0]["value"] = (
        "{{tasks.plan.outputs.parameters.num-filez}}"
    )
    errors = reference_errors(dangling)
    assert any("unknown template 'spark-indx'" in e for e in errors)
    assert any("unknown task 'indx'" in e for e in errors)
    assert any("no output parameter 'num-filez'" in e for e in errors)


# Argo's examples run on Argo as they are; our checks must accept them. One exception, by design:
# our references check insists every workflow parameter be declared, and this example leaves one
# to the event binding that submits it.
UNDECLARED_BY_DESIGN = {"event-consumer-workflowtemplate.yaml"}


def argo_examples():
    root = TESTDATA / "argo" / "examples"
    for path in sorted(root.glob("**/*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in KIND_TO_CRD:
                yield pytest.param(
                    path,
                    doc,
                    id=f"{path.relative_to(root)}:{doc['metadata'].get('name') or doc['metadata'].get('generateName')}",
                )


@pytest.mark.parametrize("path,doc", list(argo_examples()))
def test_argo_examples_pass_our_checks(path: pathlib.Path, doc):
    assert schema_errors(doc, str(CRDS)) == []
    if path.name not in UNDECLARED_BY_DESIGN:
        assert reference_errors(doc) == []


def test_kustomize_renders_all_resources():
    import subprocess

    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(default_manifests_dir())],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(out) if d)
    expected = ["Namespace"]  # namespace.yaml: Pod Security "restricted" enforced
    expected += ["ConfigMap", "PrometheusRule"]  # site.yaml, monitoring/
    expected += ["ConfigMap"] * 5 + ["PodMonitor"] * 2  # monitoring/: Grafana dashboards, scrapes
    expected += ["Role", "Role", "RoleBinding", "RoleBinding"] + ["ServiceAccount"] * 4
    expected += ["NetworkPolicy"] * 8  # network-policies.yaml
    expected += ["Deployment", "Service", "ServiceAccount"]  # triton/
    expected += ["CustomResourceDefinition"] * 2  # bench/crds.yaml
    expected += [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",  # kopf's discovery: CRDs and namespaces, read-only
        "ClusterRoleBinding",
        "Deployment",
    ]
    rendered_kinds = [
        yaml.safe_load(text.split("\n", 1)[1])["kind"] for text in render_all().values()
    ]
    assert kinds == sorted(expected + rendered_kinds)
    assert "CronWorkflow" in rendered_kinds
    for doc in yaml.safe_load_all(out):
        if doc and doc["kind"] in KIND_TO_CRD:
            assert schema_errors(doc, str(CRDS)) == []


def test_rbac_objects_are_valid_kubernetes_models():
    from kubernetes.client import V1Role, V1RoleBinding, V1ServiceAccount

    models = {"Role": V1Role, "RoleBinding": V1RoleBinding, "ServiceAccount": V1ServiceAccount}
    docs = list(yaml.safe_load_all((default_manifests_dir() / "rbac.yaml").read_text()))
    for doc in docs:
        models[doc["kind"]].model_validate(doc)
    with pytest.raises(Exception, match="rulez|extra"):
        V1Role.model_validate({**docs[1], "rulez": []})


def test_a_declared_but_unused_parameter_is_reported():
    doc = copy.deepcopy(rendered()["workflows/train.yaml"])
    doc["spec"]["arguments"]["parameters"].append({"name": "forgotten", "value": "1"})
    assert unused_parameters(doc) == ["forgotten"]


def test_triton_objects_are_valid_kubernetes_models():
    from kubernetes.client import V1Deployment, V1Service, V1ServiceAccount

    models = {"Deployment": V1Deployment, "Service": V1Service, "ServiceAccount": V1ServiceAccount}
    docs = list(
        yaml.safe_load_all((default_manifests_dir() / "triton" / "triton.yaml").read_text())
    )
    assert sorted(d["kind"] for d in docs) == sorted(models)
    for doc in docs:
        models[doc["kind"]].model_validate(doc)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    # Explicit control: a version loads when a step calls the load API, never half-written.
    assert "--model-control-mode=explicit" in args and "--load-model=*" in args


def bench_docs() -> list[dict]:
    """The bench CRDs and operator (base) and every site's benches (overlays/*/benches)."""
    root = default_manifests_dir() / "bench"
    files = [root / "crds.yaml", root / "operator.yaml"]
    files += sorted((manifests_root() / "overlays").glob("*/benches/benches.yaml"))
    return [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]


def crd_schema(kind: str) -> dict:
    crd = next(
        d
        for d in bench_docs()
        if d["kind"] == "CustomResourceDefinition" and d["spec"]["names"]["kind"] == kind
    )
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_bench_objects_are_valid_kubernetes_models():
    from kubernetes.client import (
        V1CustomResourceDefinition,
        V1Deployment,
        V1Role,
        V1RoleBinding,
        V1ServiceAccount,
    )

    models = {
        "CustomResourceDefinition": V1CustomResourceDefinition,
        "Deployment": V1Deployment,
        "Role": V1Role,
        "RoleBinding": V1RoleBinding,
        "ServiceAccount": V1ServiceAccount,
    }
    for doc in bench_docs():
        if doc["kind"] in models:
            models[doc["kind"]].model_validate(doc)
    deployment = next(d for d in bench_docs() if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-1] == "/opt/avfleet/operators/bench_operator.py"
    assert deployment["spec"]["replicas"] == 1  # one leaser


def test_bench_resources_match_their_crds():
    import jsonschema

    benches = [d for d in bench_docs() if d["kind"] == "XavierBench"]
    assert len(benches) == 4  # prod 2, staging 1, local 1
    for bench in benches:
        jsonschema.validate(bench, crd_schema("XavierBench"))
    # The deploy workflow's BenchValidation, parameters filled with the workflow's defaults.
    doc = rendered()["workflows/deploy.yaml"]
    template = next(t for t in doc["spec"]["templates"] if "resource" in t)
    from avfleet.workflows.local.expressions import substitute

    scope = {
        f"workflow.parameters.{p['name']}": p["value"]
        for p in doc["spec"]["arguments"]["parameters"]
    }
    scope.update(
        {"inputs.parameters.release-uri": "s3://r/rel", "inputs.parameters.reference-miou": "0.5"}
    )
    scope["workflow.name"] = "deploy-abc"
    validation = yaml.safe_load(substitute(template["resource"]["manifest"], scope, "deploy"))
    jsonschema.validate(validation, crd_schema("BenchValidation"))
    assert validation["spec"]["gates"]["latency_p99_ms"] == 50
    with pytest.raises(jsonschema.ValidationError, match="precision|fp64"):
        jsonschema.validate(
            {**validation, "spec": {**validation["spec"], "precision": "fp64"}},
            crd_schema("BenchValidation"),
        )
    # The operator writes statuses the CRD accepts.
    status = {
        "phase": "Rejected",
        "bench": "xavier-01",
        "attempts": 1,
        "benchesLost": [],
        "message": "p99 over",
    }
    jsonschema.validate({**validation, "status": status}, crd_schema("BenchValidation"))


def test_map_job_templates_fan_out_and_in_and_item_stays_in_its_loop():
    for rel in ("workflows/nas.yaml", "workflows/sweep.yaml"):
        doc = rendered()[rel]
        main = next(t for t in doc["spec"]["templates"] if t["name"] == "main")
        assert main["parallelism"] >= 1
        tasks = {t["name"]: t for t in main["dag"]["tasks"]}
        assert tasks["candidates"]["withParam"] == "{{tasks.plan.outputs.parameters.items}}"
        assert tasks["pareto"]["arguments"]["parameters"][0]["value"] == (
            "{{tasks.candidates.outputs.parameters.result}}"
        )
        assert "budget-ms" in tasks["pick"]["when"]
        assert reference_errors(doc) == []
        broken = copy.deepcopy(doc)
        main = next(t for t in broken["spec"]["templates"] if t["name"] == "main")
        next(t for t in main["dag"]["tasks"] if t["name"] == "candidates").pop("withParam")
        assert any("outside a loop" in e for e in reference_errors(broken))


def _dag(doc: dict) -> dict:
    return next(t for t in doc["spec"].get("templates", []) if "dag" in t)


def _leaf(doc: dict, kind: str) -> dict:
    return next(t for t in doc["spec"].get("templates", []) if kind in t)


# Each mutation breaks one rule Argo's validation enforces (avfleet.workflows.rules); the
# checks must reject every mutated copy of every rendered manifest that has the part mutated.
def _cycle(doc):
    tasks = _dag(doc)["dag"]["tasks"]
    tasks[0]["depends"] = tasks[-1]["name"]


def _self_dependency(doc):
    task = _dag(doc)["dag"]["tasks"][-1]
    task["depends"] = f"{task['name']} && ({task.get('depends') or task['name']})"


def _duplicate_template(doc):
    doc["spec"]["templates"].append(copy.deepcopy(doc["spec"]["templates"][0]))


def _duplicate_task(doc):
    tasks = _dag(doc)["dag"]["tasks"]
    tasks.append(copy.deepcopy(tasks[0]))


def _invalid_name(doc):
    _leaf(doc, "container")["name"] = "Bad_Name!"


def _no_image(doc):
    _leaf(doc, "container")["container"]["image"] = ""


def _both_depends_forms(doc):
    tasks = _dag(doc)["dag"]["tasks"]
    tasks[-1]["depends"] = tasks[0]["name"]
    tasks[0]["dependencies"] = []
    tasks[-1]["dependencies"] = [tasks[0]["name"]]


def _two_types(doc):
    _leaf(doc, "container")["suspend"] = {}


def _dag_timeout(doc):
    _dag(doc)["timeout"] = "10m"


def _bad_manifest(doc):
    _leaf(doc, "resource")["resource"]["manifest"] = "kind: [unclosed\n  spec: {"


MUTATIONS = {
    "dependency cycle": (_cycle, "dag", "dependency cycle"),
    "self-dependency": (_self_dependency, "dag", "dependency cycle"),
    "duplicate template": (_duplicate_template, "templates", "is not unique"),
    "duplicate task": (_duplicate_task, "dag", "is not unique"),
    "invalid name": (_invalid_name, "container", "is invalid"),
    "container without image": (_no_image, "container", "image may not be empty"),
    "depends and dependencies": (_both_depends_forms, "dag", "cannot use both"),
    "two template types": (_two_types, "container", "multiple template types"),
    "timeout on a dag": (_dag_timeout, "dag", "doesn't support the timeout"),
    "resource manifest not YAML": (_bad_manifest, "resource", "not valid YAML"),
}


def _has(doc: dict, part: str) -> bool:
    templates = doc["spec"].get("templates") or doc["spec"].get("workflowSpec", {}).get(
        "templates", []
    )
    return bool(templates) and (part == "templates" or any(part in t for t in templates))


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_mutated_manifests_are_rejected_as_argo_would(mutation):
    mutate, part, says = MUTATIONS[mutation]
    checked = 0
    for rel, doc in rendered().items():
        if doc["kind"] == "CronWorkflow" or not _has(doc, part):
            continue
        bad = copy.deepcopy(doc)
        mutate(bad)
        errors = reference_errors(bad, library())
        assert any(says in e for e in errors), (rel, errors)
        checked += 1
    assert checked >= 1


def test_a_malformed_cron_schedule_is_rejected():
    nightly = next(d for d in rendered().values() if d["kind"] == "CronWorkflow")
    bad = copy.deepcopy(nightly)
    bad["spec"]["schedules"] = ["0 2 * *"]  # four fields
    assert any("malformed" in e for e in reference_errors(bad, library()))
    bad["spec"]["schedules"] = ["0 2 * * *"]
    bad["spec"]["concurrencyPolicy"] = "Sometimes"
    assert any("concurrencyPolicy" in e for e in reference_errors(bad, library()))


def argo_lint(paths: list[str]) -> tuple[int, str]:
    import subprocess

    done = subprocess.run(
        [tool("argo"), "lint", "--offline", "--output", "simple", *paths],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout + done.stderr


def test_argo_lint_accepts_every_rendered_manifest():
    code, out = argo_lint([str(default_manifests_dir() / "workflows")])
    assert code == 0, out


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_argo_lint_rejects_what_our_validator_rejects(mutation, tmp_path):
    """The same mutated copies, through Argo's own validation: our rules claim no more than it."""
    mutate, part, _ = MUTATIONS[mutation]
    rel, doc = next(
        (r, d)
        for r, d in sorted(rendered().items())
        if d["kind"] != "CronWorkflow" and _has(d, part)
    )
    bad = copy.deepcopy(doc)
    mutate(bad)
    # Linted with every other rendered manifest, so templateRefs resolve as in the cluster.
    for other, text in render_all().items():
        if other.startswith("workflows/") and other != rel:
            (tmp_path / pathlib.Path(other).name).write_text(text)
    (tmp_path / pathlib.Path(rel).name).write_text(yaml.safe_dump(bad))
    code, out = argo_lint([str(tmp_path)])
    assert code != 0 and pathlib.Path(rel).stem in out, (mutation, rel, out)


def avfleet_pods():
    """(where, pod securityContext, containers, volumes) of every pod avfleet creates."""
    import glob

    for rel, doc in sorted(rendered().items()):
        spec = doc["spec"].get("workflowSpec", doc["spec"])
        for t in spec.get("templates", []):
            if "container" in t:
                c = {**t["container"], "name": t["name"]}
                yield f"{rel}:{t['name']}", spec.get("securityContext"), [c], t.get("volumes", [])
        for name, res in resource_docs(doc):
            s = res["spec"]
            if res["kind"] == "SparkApplication":
                for role in ("driver", "executor"):
                    r = s[role]
                    c = {"name": role, "securityContext": r.get("securityContext")}
                    yield (
                        f"{rel}:{name}:{role}",
                        r.get("podSecurityContext"),
                        [c],
                        s.get("volumes", []),
                    )
            elif res["kind"] == "PyTorchJob":
                for role, replica in s["pytorchReplicaSpecs"].items():
                    pod = replica["template"]["spec"]
                    assert pod["serviceAccountName"] == "avfleet-train", rel
                    assert pod["automountServiceAccountToken"] is False, rel
                    yield (
                        f"{rel}:{name}:{role}",
                        pod.get("securityContext"),
                        pod["containers"],
                        pod.get("volumes", []),
                    )
    for path in sorted(glob.glob(str(default_manifests_dir() / "**" / "*.yaml"), recursive=True)):
        for doc in yaml.safe_load_all(pathlib.Path(path).read_text()):
            if doc and doc.get("kind") == "Deployment":
                pod = doc["spec"]["template"]["spec"]
                yield path, pod.get("securityContext"), pod["containers"], pod.get("volumes", [])


def test_every_pod_avfleet_creates_meets_pod_security_restricted():
    pods = list(avfleet_pods())
    kinds = {where.rsplit(":", 1)[-1] for where, *_ in pods}
    assert {"driver", "executor", "Master", "Worker"} <= kinds  # Spark and PyTorchJob pods too
    assert len(pods) > 30
    for where, pod, containers, volumes in pods:
        assert pod and pod.get("runAsNonRoot") is True, where
        assert (pod.get("seccompProfile") or {}).get("type") == "RuntimeDefault", where
        assert int(pod.get("runAsUser", 0)) >= 10000, where  # never a host account's UID
        for c in containers:
            sc = c.get("securityContext") or {}
            assert sc.get("allowPrivilegeEscalation") is False, (where, c["name"])
            assert "ALL" in (sc.get("capabilities") or {}).get("drop", []), (where, c["name"])
            assert sc.get("readOnlyRootFilesystem") is True, (where, c["name"])
            assert not sc.get("privileged"), (where, c["name"])
        assert not any("hostPath" in v for v in volumes), where


def test_the_prod_overlay_refuses_plain_http_benches():
    import subprocess

    import jsonschema

    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(manifests_root() / "overlays" / "prod")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    crd = next(
        d
        for d in yaml.safe_load_all(out)
        if d and d["metadata"]["name"] == "xavierbenches.avfleet.dev"
    )
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    bench = {"spec": {"address": "https://xavier-01.lab:8470", "target": "t", "tokenSecret": "s"}}
    jsonschema.validate(bench, schema)
    with pytest.raises(jsonschema.ValidationError, match="does not match"):
        jsonschema.validate(
            {"spec": {**bench["spec"], "address": "http://xavier-01.lab:8470"}}, schema
        )


def test_dashboards_ship_as_sidecar_configmaps_and_json():
    """Each stage's dashboard: in a ConfigMap the Grafana sidecar loads, and as the same JSON
    under infra/grafana/; every panel has a query and a unique id."""
    import json

    from avfleet import dashboards

    path = default_manifests_dir() / "monitoring" / "grafana-dashboards.yaml"
    maps = [d for d in yaml.safe_load_all(path.read_text()) if d]
    uids = {board.uid for board in dashboards.BOARDS}
    assert len(uids) == 5 and {m["metadata"]["name"] for m in maps} == {
        f"grafana-dashboard-{uid}" for uid in uids
    }
    for cm in maps:
        assert cm["metadata"]["labels"] == {"grafana_dashboard": "1"}
        ((name, text),) = cm["data"].items()
        assert text == (REPO_ROOT / "infra" / "grafana" / name).read_text()
        doc = json.loads(text)
        assert doc["uid"] == name.removesuffix(".json") and "id" not in doc
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids))
        for panel in doc["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "${datasource}"
                assert [t["expr"] for t in panel["targets"]], panel["title"]
