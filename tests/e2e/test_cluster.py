"""A real one-node Kubernetes (tests/e2e/cluster.py): pods run on the kubelet and reach the
API server through its Service (teardown is checked in conftest.py).
"""

from __future__ import annotations

import ipaddress
import json
import time

import pytest

from tests.e2e.cluster import PAUSE_IMAGE, POD_SUBNET, SHELL_IMAGE

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def pod(name: str, image: str, command: list[str] | None = None) -> dict:
    container = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",  # there is no registry: images are imported
        "resources": {"limits": {"memory": "32Mi", "cpu": "100m"}},
    }
    if command:
        container["command"] = command
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [container], "restartPolicy": "Never"},
    }


def run_pod(cluster, tmp_path, doc: dict, phases: tuple[str, ...], timeout_s: float = 90) -> dict:
    cluster.apply(f"pod-{doc['metadata']['name']}", doc)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = json.loads(cluster.kubectl("get", "pod", doc["metadata"]["name"], "-o", "json"))
        if got["status"].get("phase") in phases:
            return got
        time.sleep(1)
    raise AssertionError(f"pod {doc['metadata']['name']} not {phases} in {timeout_s} s: {got}")


def test_a_pod_is_scheduled_and_runs_under_runc(cluster, tmp_path):
    got = run_pod(cluster, tmp_path, pod("sandbox", PAUSE_IMAGE), ("Running",))
    assert got["spec"]["nodeName"] == "e2e-node"  # placed by the real scheduler
    assert ipaddress.ip_address(got["status"]["podIP"]) in ipaddress.ip_network(POD_SUBNET)
    container = got["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    assert container in cluster.ctr("containers", "list", "-q")
    assert "RUNNING" in cluster.ctr("tasks", "list")
    cluster.kubectl("delete", "pod", "sandbox", "--wait=true")


def test_a_pod_reaches_the_api_server_through_its_service(cluster, tmp_path):
    # A TCP connection to the kubernetes Service's cluster IP, which only kube-proxy's rules
    # forward to the API server. (busybox's TLS client and the API server share no cipher
    # suite, so the handshake itself is left to the Go clients of the next steps.)
    connect = (
        "nc -w 5 $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT -e /bin/true && echo connected"
    )
    got = run_pod(cluster, tmp_path, pod("asks", SHELL_IMAGE, ["/bin/sh", "-c", connect]),
                  ("Succeeded", "Failed"))  # fmt: skip
    logs = cluster.kubectl("logs", "asks")
    assert got["status"]["phase"] == "Succeeded" and "connected" in logs, logs
    service = json.loads(cluster.kubectl("get", "service", "kubernetes", "-o", "json"))
    assert service["spec"]["clusterIP"] == "10.96.0.1"  # what the kubelet put in the pod's env
    cluster.kubectl("delete", "pod", "asks", "--wait=true")


def test_a_pod_finds_services_by_name_through_the_cluster_dns(cluster, tmp_path):
    lookup = "nslookup kubernetes.default.svc.cluster.local"
    got = run_pod(cluster, tmp_path, pod("names", SHELL_IMAGE, ["/bin/sh", "-c", lookup]),
                  ("Succeeded", "Failed"))  # fmt: skip
    logs = cluster.kubectl("logs", "names")
    assert got["status"]["phase"] == "Succeeded" and "10.96.0.1" in logs, logs
    cluster.kubectl("delete", "pod", "names", "--wait=true")
