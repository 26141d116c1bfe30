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
import sys
import time

import pytest
import yaml

from avfleet.bench.local import local_agent
from avfleet.workflows.render import default_manifests_dir, repo_root
from tests.integration.kube import api_server, host_process

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
        str(repo_root() / "operators" / "bench_operator.py"),
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
            core = kubernetes.client.CoreV1Api(cluster.client())
            core.create_namespaced_secret(
                NS,
                {
                    "metadata": {"name": "xavier-01-token"},
                    "data": {"token": base64.b64encode(bench["token"].encode()).decode()},
                },
            )
            custom = kubernetes.client.CustomObjectsApi(cluster.client())
            custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                NS,
                "xavierbenches",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "XavierBench",
                    "metadata": {"name": "xavier-01"},
                    "spec": {
                        "address": bench["address"],
                        "target": "xavier-test",
                        "tokenSecret": "xavier-01-token",
                    },
                },
            )
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
                custom.create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    NS,
                    "benchvalidations",
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "BenchValidation",
                        "metadata": {"name": "v1"},
                        "spec": {
                            "modelUri": str(release / "model.onnx"),
                            "bundleUri": str(release / "bundle.npz"),
                            "reportUri": str(release / "v1.json"),
                            "precision": "fp32",
                            "runs": 20,
                            "warmup": 2,
                            "referenceMiou": 1.0,
                        },
                    },
                )
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
