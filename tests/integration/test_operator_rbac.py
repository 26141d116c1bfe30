"""The bench operator against a real kube-apiserver, as its own ServiceAccount.

The handler tests call the operator's functions directly and cannot see RBAC: run as
its ServiceAccount against a real API server, the operator once failed in a loop with
APIForbiddenError (kopf watches CustomResourceDefinitions and namespaces cluster-wide).
Here the installed RBAC (manifests/base/bench/operator.yaml) is applied to a real API server,
kopf runs with a token of the operator's ServiceAccount, and a XavierBench is probed and a
BenchValidation validated on a real bench agent, with no Forbidden anywhere. The account
may do what the operator needs and nothing more.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pathlib
import sys
import time

import pytest
import yaml

from avfleet.bench.local import local_agent
from avfleet.workflows.render import default_manifests_dir
from tests.integration.kube import api_server, host_process

REPO = pathlib.Path(__file__).resolve().parents[2]  # the checkout

pytestmark = pytest.mark.integration
NS = "avfleet"
GROUP, VERSION = "avfleet.dev", "v1alpha1"


def apply(cluster, docs: list[dict]) -> None:
    """Create each object as an admin (what `kubectl apply` of these files would do here)."""
    import kubernetes

    client = cluster.client()
    for doc in docs:
        kubernetes.utils.create_from_dict(client, doc, namespace=NS)


def installed(*rels: str, kinds: tuple[str, ...] = ()) -> list[dict]:
    docs = []
    for rel in rels:
        for doc in yaml.safe_load_all((default_manifests_dir() / rel).read_text()):
            if doc and (not kinds or doc["kind"] in kinds):
                if doc["kind"] == "ClusterRoleBinding":
                    for subject in doc["subjects"]:
                        subject["namespace"] = NS
                docs.append(doc)
    return docs


def wait_for(what: str, check, timeout_s: float = 120.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


OPERATOR_RBAC = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")


def install(cluster, rbac_kinds: tuple[str, ...]) -> str:
    """The namespace, the bench CRDs (established) and the operator's RBAC of `rbac_kinds`;
    a token of the operator's ServiceAccount."""
    import kubernetes

    apply(cluster, installed("namespace.yaml"))
    apply(cluster, installed("bench/crds.yaml"))
    api = kubernetes.client.ApiextensionsV1Api(cluster.client())
    wait_for(
        "the CRDs to be established",
        lambda: all(
            any(
                c.type == "Established" and c.status == "True"
                for c in (crd.status.conditions or [])
            )
            for crd in api.list_custom_resource_definition().items
            if crd.spec.group == GROUP
        ),
    )
    apply(cluster, installed("bench/operator.yaml", kinds=rbac_kinds))
    return cluster.service_account_token(NS, "avfleet-bench-operator")


def add_bench(cluster, name: str, address: str, token: str, target: str = "xavier-test") -> None:  # noqa: ANN001
    """A XavierBench at `address` and the Secret holding its token, as an admin makes them."""
    import kubernetes

    secret = {"token": base64.b64encode(token.encode()).decode()}
    kubernetes.client.CoreV1Api(cluster.client()).create_namespaced_secret(
        NS, {"metadata": {"name": f"{name}-token"}, "data": secret}
    )
    add_object(
        cluster,
        "xavierbenches",
        name,
        {"address": address, "target": target, "tokenSecret": f"{name}-token"},
    )


def validation_spec(release, name: str, **overrides) -> dict:  # noqa: ANN001
    """A BenchValidation of the `release` fixture's model, its report at <release>/<name>.json."""
    return {
        "modelUri": str(release / "model.onnx"),
        "bundleUri": str(release / "bundle.npz"),
        "reportUri": str(release / f"{name}.json"),
        "precision": "fp32",
        "runs": 20,
        "warmup": 2,
        "referenceMiou": 1.0,
        **overrides,
    }


def add_object(cluster, plural: str, name: str, spec: dict) -> None:  # noqa: ANN001
    """An avfleet.dev custom object (XavierBench or BenchValidation) in the namespace."""
    import kubernetes

    kind = {"xavierbenches": "XavierBench", "benchvalidations": "BenchValidation"}[plural]
    kubernetes.client.CustomObjectsApi(cluster.client()).create_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        plural,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        },
    )


@contextlib.contextmanager
def operator_process(cluster, token: str, log_path, **env: str):  # noqa: ANN001, ANN201
    """`kopf run` of the bench operator in its own process, as the ServiceAccount of `token`."""
    args = [
        sys.executable,
        "-m",
        "kopf",
        "run",
        "--standalone",
        f"--namespace={NS}",
        str(REPO / "operators" / "bench_operator.py"),
    ]
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig(token, "operator"), **env}
    with host_process(args, log_path, env) as operator:
        yield operator


def test_the_operator_works_as_its_own_service_account(release, tmp_path):
    import kubernetes

    with api_server(tmp_path / "k8s") as cluster:
        token = install(cluster, OPERATOR_RBAC)

        # What the account may do, and not: read one Secret by name, but never list Secrets or pods.
        as_operator = kubernetes.client.CoreV1Api(cluster.client(token))
        as_operator.list_namespace()  # kopf's namespace observation
        for forbidden in (
            lambda: as_operator.list_namespaced_secret(NS),
            lambda: as_operator.list_namespaced_pod(NS),
            lambda: as_operator.list_namespaced_secret("kube-system"),
        ):
            with pytest.raises(kubernetes.client.ApiException) as e:
                forbidden()
            assert e.value.status == 403

        with local_agent(
            str(tmp_path / "cache"), read_prefixes=(str(release),), target="xavier-test"
        ) as bench:
            add_bench(cluster, "xavier-01", bench["address"], bench["token"])
            custom = kubernetes.client.CustomObjectsApi(cluster.client())
            with operator_process(
                cluster, token, tmp_path / "operator.log", AVFLEET_REPORTS_PREFIX=str(release)
            ):

                def bench_status() -> dict:
                    return custom.get_namespaced_custom_object(
                        GROUP, VERSION, NS, "xavierbenches", "xavier-01"
                    ).get("status", {})

                try:
                    wait_for(
                        "the bench to be probed healthy",
                        lambda: bench_status().get("health") == "Healthy",
                    )
                except AssertionError as e:
                    raise AssertionError(f"{e}: status {bench_status()}") from None
                add_object(cluster, "benchvalidations", "v1", validation_spec(release, "v1"))
                status = wait_for(
                    "the validation to finish",
                    lambda: (
                        s
                        if (
                            s := custom.get_namespaced_custom_object(
                                GROUP, VERSION, NS, "benchvalidations", "v1"
                            ).get("status", {})
                        ).get("phase")
                        in ("Succeeded", "Rejected", "Failed")
                        else None
                    ),
                    timeout_s=180,
                )
                assert status["phase"] == "Succeeded", status
                assert (release / "v1.json").exists()
            text = (tmp_path / "operator.log").read_text()
            assert "Forbidden" not in text and "APIForbiddenError" not in text, text[-3000:]


def test_without_its_cluster_read_access_the_operator_is_forbidden(release, tmp_path):
    """The same RBAC less the ClusterRole: what the operator met before it had one."""
    with api_server(tmp_path / "k8s") as cluster:
        token = install(cluster, ("ServiceAccount", "Role", "RoleBinding"))
        log_path = tmp_path / "operator.log"
        with operator_process(cluster, token, log_path):
            wait_for(
                "a Forbidden in the operator's log", lambda: "Forbidden" in log_path.read_text(), 60
            )


def test_two_benches_one_killed_every_validation_finishes_and_no_bench_is_leased_twice(
    release, tmp_path
):
    """kopf as the operator's ServiceAccount leases two bench agents (own processes, own
    tokens) to four validations; the agent of bench-a is killed while a validation runs on
    it. Every validation succeeds, the one on bench-a moves to bench-b, and no snapshot of
    the API server ever shows two validations Running on one bench."""
    import secrets
    import signal
    import threading

    import kubernetes

    from tests.integration.conftest import free_port
    from tests.integration.test_deploy import start_agent

    with api_server(tmp_path / "k8s") as cluster:
        token = install(cluster, OPERATOR_RBAC)
        custom = kubernetes.client.CustomObjectsApi(cluster.client())
        agents = {}
        try:
            for name in ("bench-a", "bench-b"):
                port, bench_token = free_port(), secrets.token_hex(16)
                agents[name] = start_agent(
                    str(tmp_path / name),
                    port,
                    str(release),
                    token=bench_token,
                    target="xavier-test",
                )
                add_bench(cluster, name, f"http://127.0.0.1:{port}", bench_token)
            with operator_process(
                cluster, token, tmp_path / "operator.log", AVFLEET_REPORTS_PREFIX=str(release)
            ):

                def benches() -> dict:
                    items = custom.list_namespaced_custom_object(
                        GROUP, VERSION, NS, "xavierbenches"
                    )["items"]
                    return {b["metadata"]["name"]: b.get("status", {}) for b in items}

                wait_for(
                    "both benches probed healthy",
                    lambda: all(s.get("health") == "Healthy" for s in benches().values()),
                )
                names = [f"v{i}" for i in range(4)]
                for name in names:
                    spec = validation_spec(release, name, runs=200, target="xavier-test")
                    add_object(cluster, "benchvalidations", name, spec)

                snapshots: list[dict[str, dict]] = []
                killed: list[str] = []
                stop = threading.Event()

                def watch() -> None:
                    """Snapshot every validation's status; kill bench-a's agent the first time a
                    validation runs on it."""
                    while not stop.is_set():
                        items = custom.list_namespaced_custom_object(
                            GROUP, VERSION, NS, "benchvalidations"
                        )["items"]
                        snap = {v["metadata"]["name"]: v.get("status", {}) for v in items}
                        snapshots.append(snap)
                        running_on_a = [
                            n
                            for n, s in snap.items()
                            if s.get("phase") == "Running" and s.get("bench") == "bench-a"
                        ]
                        if running_on_a and not killed:
                            agents["bench-a"].send_signal(signal.SIGKILL)
                            killed.append(running_on_a[0])
                        time.sleep(0.2)

                watcher = threading.Thread(target=watch, daemon=True)
                watcher.start()
                try:
                    final = wait_for(
                        "every validation to finish",
                        lambda: (
                            snapshots[-1]
                            if snapshots
                            and len(snapshots[-1]) == len(names)
                            and all(
                                s.get("phase") in ("Succeeded", "Rejected", "Failed")
                                for s in snapshots[-1].values()
                            )
                            else None
                        ),
                        timeout_s=300,
                    )
                finally:
                    stop.set()
                    watcher.join(timeout=10)
        finally:
            for proc in agents.values():
                proc.kill()
                proc.wait()
        assert killed, "no validation ever ran on bench-a"
        for snap in snapshots:
            running = [s["bench"] for s in snap.values() if s.get("phase") == "Running"]
            assert len(running) == len(set(running)), snap  # never one bench leased twice
        assert {n: s["phase"] for n, s in final.items()} == dict.fromkeys(names, "Succeeded")
        moved = final[killed[0]]
        assert moved["bench"] == "bench-b" and "bench-a" in moved["benchesLost"], moved
        text = (tmp_path / "operator.log").read_text()
        assert "Forbidden" not in text, text[-3000:]
