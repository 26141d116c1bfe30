"""avfleet's install against a real kube-apiserver (etcd, RBAC on, Pod Security admission),
with the CRDs of the controllers it needs from ../shared/testdata: every object of every
overlay passes a server-side dry run, so do the objects its workflows create; each
ServiceAccount can do what its stage needs and no more (`kubectl auth can-i`); and Argo's
own workflow-controller turns `argo submit` and `argo cron create` into pods (Pending:
there is no kubelet) whose spec is checked here.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from avfleet import resources
from avfleet.workflows.render import default_manifests_dir, manifests_root
from tests.conftest import TESTDATA, shared_testdata, tool, tool_path
from tests.integration.conftest import free_port
from tests.integration.kube import api_server, argo_cli, argo_controller_env, host_process
from tests.manifest_helpers import resource_docs

OVERLAYS = ["local", "staging", "prod"]
CRD_FILES = [
    "argo/crds-full/argoproj.io_workflows.yaml",
    "argo/crds-full/argoproj.io_workflowtemplates.yaml",
    "argo/crds-full/argoproj.io_cronworkflows.yaml",
    "argo/crds-full/argoproj.io_clusterworkflowtemplates.yaml",
    "spark-operator/sparkoperator.k8s.io_sparkapplications.yaml",
    "kubeflow-training-v1/kubeflow.org_pytorchjobs.yaml",
    "prometheus-operator/monitoring.coreos.com_prometheusrules.yaml",
    "prometheus-operator/monitoring.coreos.com_podmonitors.yaml",
]
# Argo's controller also watches three internal kinds whose CRDs are not among the full
# CRDs in testdata (its executor reports outputs as WorkflowTaskResults): created here with
# an open schema, so RBAC and the controller can name them.
ARGO_INTERNAL_KINDS = {
    "workflowtaskresults": "WorkflowTaskResult",
    "workflowtasksets": "WorkflowTaskSet",
    "workflowartifactgctasks": "WorkflowArtifactGCTask",
}


def open_crd(plural: str, kind: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.argoproj.io"},
        "spec": {
            "group": "argoproj.io",
            "names": {"kind": kind, "plural": plural},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def kubectl(cluster, *args: str, check: bool = True, input_: str | None = None):
    config = cluster.kubeconfig(cluster.admin_token, "admin")
    done = subprocess.run(
        [tool("kubectl"), "--kubeconfig", config, *args],
        capture_output=True,
        text=True,
        input=input_,
        timeout=300,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
    return done


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    shared_testdata("argo")
    with api_server(tmp_path_factory.mktemp("kube")) as c:
        for rel in CRD_FILES:
            kubectl(c, "apply", "--server-side", "-f", str(TESTDATA / rel))
        for plural, kind in ARGO_INTERNAL_KINDS.items():
            crd = json.dumps(open_crd(plural, kind))
            kubectl(c, "apply", "--server-side", "-f", "-", input_=crd)
        kubectl(c, "wait", "--for=condition=established", "--timeout=120s", "crd", "--all")
        for namespace in ("avfleet", "avfleet-staging"):
            kubectl(c, "create", "namespace", namespace)
        yield c


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_every_overlay_passes_a_server_side_dry_run(cluster, overlay):
    path = str(manifests_root() / "overlays" / overlay)
    done = kubectl(cluster, "apply", "--server-side", "--dry-run=server", "-k", path)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    objects = [d for d in yaml.safe_load_all(kubectl(cluster, "kustomize", path).stdout) if d]
    assert len(lines) == len(objects) > 35, done.stdout
    assert all("(server dry run)" in line for line in lines), done.stdout
    assert "Warning" not in done.stderr, done.stderr  # Pod Security warns on a loose pod
    kubectl(cluster, "apply", "--server-side", "-f", str(default_manifests_dir() / "bench"))
    benches = kubectl(
        cluster, "apply", "--server-side", "--dry-run=server", "-k", f"{path}/benches"
    )
    assert benches.stdout.count("xavierbench.avfleet.dev/") >= 1, benches.stdout


def test_the_objects_workflows_create_pass_a_server_side_dry_run(cluster):
    """SparkApplications, PyTorchJobs and BenchValidations, parameters at their defaults,
    against the spark-operator, training-operator and avfleet CRDs."""
    kubectl(cluster, "apply", "--server-side", "-f", str(default_manifests_dir() / "bench"))
    kinds = []
    for f in sorted((default_manifests_dir() / "workflows").glob("*.yaml")):
        for name, doc in resource_docs(yaml.safe_load(f.read_text())):
            done = kubectl(
                cluster,
                "create",
                "--dry-run=server",
                "-n",
                "avfleet",
                "-f",
                "-",
                "-o",
                "json",
                input_=json.dumps(doc),
                check=False,
            )
            assert done.returncode == 0, (f.name, name, done.stderr)
            kinds.append(json.loads(done.stdout)["kind"])
    assert {"SparkApplication", "PyTorchJob", "BenchValidation"} <= set(kinds), kinds


SITE_IMAGES = {"avfleet.local/avfleet:dev", "avfleet.local/avfleet-train:dev"}
NS = "avfleet"


@pytest.fixture(scope="module")
def installed(cluster):
    """The local overlay installed for real (not a dry run), and its benches."""
    local = str(manifests_root() / "overlays" / "local")
    kubectl(cluster, "apply", "--server-side", "-k", local)
    kubectl(cluster, "apply", "--server-side", "-k", f"{local}/benches")
    return cluster


# (service account, verb, resource, namespace or None for cluster scope, allowed): what each
# stage needs, and next to it what it must not have. Checked with
# `kubectl auth can-i --as=system:serviceaccount:avfleet:<sa>`.
CAN_I = [
    ("avfleet-workflow", "create", "pytorchjobs.kubeflow.org", NS, True),
    ("avfleet-workflow", "create", "benchvalidations.avfleet.dev", NS, True),
    ("avfleet-workflow", "create", "workflowtaskresults.argoproj.io", NS, True),
    ("avfleet-workflow", "create", "pods", NS, False),
    ("avfleet-workflow", "get", "secrets", NS, False),
    ("avfleet-workflow", "create", "workflows.argoproj.io", NS, False),
    ("avfleet-workflow", "patch", "xavierbenches.avfleet.dev", NS, False),
    ("avfleet-workflow", "create", "deployments.apps", NS, False),
    ("avfleet-spark", "create", "pods", NS, True),
    ("avfleet-spark", "create", "services", NS, True),
    ("avfleet-spark", "create", "configmaps", NS, True),
    ("avfleet-spark", "get", "secrets", NS, False),
    ("avfleet-spark-executor", "get", "pods", NS, False),
    ("avfleet-spark-executor", "get", "configmaps", NS, False),
    ("avfleet-train", "get", "pods", NS, False),
    ("avfleet-train", "create", "pytorchjobs.kubeflow.org", NS, False),
    ("avfleet-triton", "get", "pods", NS, False),
    ("avfleet-triton", "get", "secrets", NS, False),
    ("avfleet-bench-operator", "list", "xavierbenches.avfleet.dev", NS, True),
    ("avfleet-bench-operator", "patch", "benchvalidations.avfleet.dev/status", NS, True),
    ("avfleet-bench-operator", "create", "events", NS, True),
    ("avfleet-bench-operator", "get", "secrets", NS, True),
    ("avfleet-bench-operator", "list", "secrets", NS, False),
    ("avfleet-bench-operator", "create", "benchvalidations.avfleet.dev", NS, False),
    ("avfleet-bench-operator", "create", "pods", NS, False),
    ("avfleet-bench-operator", "delete", "xavierbenches.avfleet.dev", NS, False),
    # Cluster scope: only the operator's discovery, read-only; nothing in another namespace.
    ("avfleet-bench-operator", "list", "customresourcedefinitions", None, True),
    ("avfleet-bench-operator", "list", "namespaces", None, True),
    ("avfleet-bench-operator", "create", "customresourcedefinitions", None, False),
    ("avfleet-bench-operator", "get", "secrets", "kube-system", False),
    ("avfleet-workflow", "create", "sparkapplications.sparkoperator.k8s.io", "default", False),
    ("avfleet-spark", "create", "pods", "default", False),
]


def test_each_service_account_can_do_what_its_stage_needs_and_no_more(installed):
    wrong = []
    for account, verb, resource, namespace, allowed in CAN_I:
        where = ["-n", namespace] if namespace else []
        who = f"--as=system:serviceaccount:{NS}:{account}"
        done = kubectl(installed, "auth", "can-i", verb, resource, *where, who, check=False)
        if (done.stdout.strip() == "yes") != allowed:
            wrong.append((account, verb, resource, namespace, done.stdout.strip()))
    assert wrong == []


@pytest.fixture(scope="module")
def controller(installed, tmp_path_factory):
    """Argo's workflow-controller (tools/build.sh) as a host process watching avfleet's
    namespace, configured as docs/install.md says (infra/argo)."""
    binary = tool_path("workflow-controller")
    if not binary:
        pytest.skip("workflow-controller is not built (tools/build.sh)")
    config = resources.infra_dir() / "argo" / "workflow-controller-configmap.yaml"
    # As shipped, but its metrics on a free port (9090 may be taken on a shared machine).
    installed.argo_metrics_port = free_port()
    text = config.read_text().replace("port: 9090", f"port: {installed.argo_metrics_port}")
    assert str(installed.argo_metrics_port) in text
    kubectl(installed, "apply", "-n", NS, "-f", "-", input_=text)
    log = tmp_path_factory.mktemp("argo") / "controller.log"
    env = argo_controller_env()
    args = [
        binary,
        "--kubeconfig",
        installed.kubeconfig(installed.admin_token, "admin"),
        "--namespaced",
        "--managed-namespace",
        NS,
        "-n",
        NS,
        "--executor-image",
        "avfleet.local/argoexec:v4.0.5",
    ]
    with host_process(args, log, env):
        yield installed


def argo(cluster, *args: str) -> subprocess.CompletedProcess:
    tool("argo")  # skips, saying how to build it, where it is missing
    return argo_cli(cluster.kubeconfig(cluster.admin_token, "admin"), NS, *args)


STORAGELESS_VERBS = {("step", "plan-train")}
"""CLI steps that read and write no storage (plan-train sizes a PyTorchJob from --nodes)."""


def first_pod(cluster, workflow: str, timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pods = json.loads(
            kubectl(
                cluster,
                "get",
                "pods",
                "-n",
                NS,
                "-l",
                f"workflows.argoproj.io/workflow={workflow}",
                "-o",
                "json",
            ).stdout
        )["items"]
        if pods:
            return pods[0]
        status = json.loads(
            kubectl(cluster, "get", "workflow", workflow, "-n", NS, "-o", "json").stdout
        ).get("status", {})
        assert status.get("phase") not in ("Failed", "Error"), status.get("message")
        errors = [
            n.get("message")
            for n in status.get("nodes", {}).values()
            if n.get("phase") in ("Error", "Failed")
        ]
        assert not errors, errors  # e.g. a pod the API server refused
        time.sleep(1)
    raise AssertionError(f"{workflow}: no pod in {timeout_s:.0f} s")


SUBMIT_FROM = [
    "workflowtemplate/fleet-index",
    "workflowtemplate/train",
    "workflowtemplate/data-engine",
    "workflowtemplate/deploy",
    "workflowtemplate/nas",
    "workflowtemplate/sweep",
    "cronwf/nightly-mining",
]


@pytest.mark.parametrize("source", SUBMIT_FROM)
def test_argo_submit_creates_the_first_step_as_a_restricted_pod(controller, source):
    done = argo(controller, "submit", "--from", source, "-o", "name")
    assert done.returncode == 0, done.stderr
    workflow = done.stdout.strip().rsplit("/", 1)[-1]
    pod = first_pod(controller, workflow)  # created: Pod Security "restricted" admitted it
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "avfleet-workflow"
    assert pod["status"]["phase"] == "Pending"  # no kubelet here
    assert pod["metadata"]["labels"]["avfleet.io/role"] == "workflow-step"
    main = next(c for c in spec["containers"] if c["name"] == "main")
    assert main["image"] in SITE_IMAGES | {"avfleet.local/argoexec:v4.0.5"}, main["image"]
    if main["image"] in SITE_IMAGES:  # a CLI step: avfleet <verb> with the site's values
        assert main["command"][-1] == "avfleet" and main["args"][0].replace("-", "").isalpha()
        assert not any("{{" in a for a in main["args"]), main["args"]
        # Steps that touch storage got the site's bucket or endpoint. Root steps start
        # together, so the first pod may be one that sizes the job and reads nothing.
        if tuple(main["args"][:2]) not in STORAGELESS_VERBS:
            args = main["args"]
            assert "s3://avfleet-data" in " ".join(args) or "--s3-endpoint-url" in args, args
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_argo_cron_create_schedules_the_nightly_mining(controller, tmp_path):
    rendered = kubectl(controller, "kustomize", str(manifests_root() / "overlays" / "local"))
    cron = next(d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"] == "CronWorkflow")
    kubectl(controller, "delete", "cronworkflow", cron["metadata"]["name"], "-n", NS)
    path = tmp_path / "nightly.yaml"
    path.write_text(yaml.safe_dump(cron))
    done = argo(controller, "cron", "create", str(path))
    assert done.returncode == 0, done.stderr
    listed = argo(controller, "cron", "get", cron["metadata"]["name"], "-o", "json")
    assert listed.returncode == 0, listed.stderr
    spec = json.loads(listed.stdout)["spec"]
    assert spec["schedules"] == cron["spec"]["schedules"]
    assert spec["concurrencyPolicy"] == "Forbid"


# --- Monitoring: every dashboard panel's query returns data from real runs --------------------


@contextlib.contextmanager
def prometheus_server(workdir: pathlib.Path, targets: dict[str, str]):  # noqa: ANN201
    """Debian's Prometheus with infra/prometheus/prometheus.yml, each job's target replaced by
    a local process's address, scraping every second; yields its base URL."""
    binary = shutil.which("prometheus")
    if not binary:
        pytest.skip("prometheus is absent: apt-get install prometheus (.ci/run does)")
    infra = resources.infra_dir() / "prometheus"
    config = yaml.safe_load((infra / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(infra / "avfleet-rules.yaml")]
    assert {job["job_name"] for job in config["scrape_configs"]} == set(targets)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    args = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    url = f"http://127.0.0.1:{port}"
    with host_process(args, workdir / "prometheus.log", dict(os.environ)):
        wait_for_url(f"{url}/-/ready")
        yield url


def wait_for_url(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer in {timeout_s:.0f} s"
            time.sleep(0.3)


def query(prometheus: str, promql: str) -> list:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as response:
        doc = json.load(response)
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def test_every_dashboard_panel_has_data(controller, release, tmp_path):
    """The stages run for real on this machine and push or serve their metrics: the demo's
    index, training, deploy and mining (Triton's own metrics endpoint), the bench operator
    (as its ServiceAccount, leasing a local agent) and Argo's workflow-controller (a workflow
    submitted and stopped, the nightly CronWorkflow triggered); a real Prometheus scrapes
    them with the shipped config and rules, and every panel's query returns data."""
    from avfleet.bench.local import local_agent
    from avfleet.core.metrics import MetricsConfig
    from avfleet.demo import DemoConfig, run_demo
    from avfleet.mining.job import MineConfig, run_mine
    from avfleet.mining.select import SelectionConfig
    from avfleet.serve.local import local_triton
    from tests.integration.test_demo import TINY
    from tests.integration.test_monitoring import start_pushgateway
    from tests.integration.test_operator_rbac import (
        add_bench,
        add_object,
        operator_process,
        validation_spec,
    )

    operator_port, triton_port = free_port(), free_port()
    with (
        start_pushgateway() as pushgateway,
        prometheus_server(
            tmp_path,
            {
                "pushgateway": pushgateway,
                "triton": f"127.0.0.1:{triton_port}",
                "avfleet-bench-operator": f"127.0.0.1:{operator_port}",
                "argo-workflow-controller": f"127.0.0.1:{controller.argo_metrics_port}",
            },
        ) as prometheus,
        local_agent(
            str(tmp_path / "cache"), read_prefixes=(str(release),), target="xavier-test"
        ) as agent,
        operator_process(
            controller,
            controller.service_account_token(NS, "avfleet-bench-operator"),
            tmp_path / "operator.log",
            AVFLEET_REPORTS_PREFIX=str(release),
            AVFLEET_OPERATOR_METRICS_PORT=str(operator_port),
        ),
    ):
        # Argo: the nightly CronWorkflow due every minute; a deploy workflow stopped (Failed).
        kubectl(
            controller,
            *("patch", "cronworkflow", "nightly-mining", "-n", NS, "--type", "merge"),
            *("-p", json.dumps({"spec": {"schedules": ["* * * * *"]}})),
        )
        done = argo(controller, "submit", "--from", "workflowtemplate/deploy", "-o", "name")
        assert done.returncode == 0, done.stderr
        workflow = done.stdout.strip().rsplit("/", 1)[-1]
        first_pod(controller, workflow)
        done = argo(controller, "stop", workflow)
        assert done.returncode == 0, done.stderr
        # The bench operator: one validation runs on the local agent; one waits for a target
        # no bench has (the unfinished-validation panels need one).
        add_bench(controller, "xavier-local", agent["address"], agent["token"])
        for name, target in (("runs", "xavier-test"), ("waits", "xavier-nx-nobody-has")):
            spec = validation_spec(release, name, runs=10, warmup=1, target=target)
            add_object(controller, "benchvalidations", name, spec)
        # The stages of the loop, pushing to the Pushgateway; mining through Triton.
        config = DemoConfig(
            out_dir=str(tmp_path / "demo"),
            **{**TINY, "random_arm": False},
            pushgateway=pushgateway,
            triton_metrics_port=triton_port,
        )
        assert run_demo(config) == 0
        # Triton as it runs in a cluster, up between mining runs: the promoted version served
        # on the port Prometheus scrapes, and a mining run of the date through it.
        repo = str(tmp_path / "demo" / "loop" / "repo")
        with local_triton(repo, "dpe:1", metrics_port=triton_port) as scorer:
            mine_config = MineConfig(
                index_uri=str(tmp_path / "demo" / "index"),
                date=config.date,
                model="dpe:1",
                out_uri=str(tmp_path / "mined"),
                selection=SelectionConfig(budget=16),
                metrics=MetricsConfig(pushgateway_url=pushgateway),
            )
            run_mine(mine_config, scorer)
            empty = panels_without_data(prometheus)
        assert empty == [], "\n".join(f"{uid}: {title}: {expr}" for uid, title, expr in empty)
        # The alerts were evaluated on these figures too: the demo's drill quarantines 3 of its
        # 9 recordings, so the index's quarantine alert fires for the date.
        alerts = query(prometheus, 'ALERTS{alertname="AvfleetIndexQuarantineHigh"}')
        assert [a["metric"]["date"] for a in alerts] == [config.date]


def panels_without_data(prometheus: str, timeout_s: float = 120) -> list[tuple[str, str, str]]:
    """(dashboard, panel, query) of every panel query that returns nothing, once every one
    does or `timeout_s` has passed (the cron's minute, a validation, a few scrapes)."""
    from avfleet import dashboards

    panels = [
        (board.uid, title, expr)
        for board in dashboards.BOARDS
        for title, expr in dashboards.panel_queries(dashboards.build(board))
    ]
    assert len(panels) >= 40
    deadline = time.monotonic() + timeout_s
    while True:
        empty = [(uid, title, expr) for uid, title, expr in panels if not query(prometheus, expr)]
        if not empty or time.monotonic() > deadline:
            return empty
        time.sleep(5)
