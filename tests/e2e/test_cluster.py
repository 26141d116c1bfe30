"""A real one-node Kubernetes (tests/e2e/cluster.py): a pod runs on the kubelet, and teardown
leaves nothing behind. The first step of issue 17: avfleet's workflows on this cluster come next.
"""

from __future__ import annotations

import ipaddress
import json
import pathlib
import subprocess
import time

import pytest

from tests.e2e.cluster import BRIDGE, PAUSE_IMAGE, POD_SUBNET, missing, one_node_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "sandbox", "namespace": "default"},
    "spec": {
        "containers": [
            {
                "name": "pause",
                "image": PAUSE_IMAGE,
                "imagePullPolicy": "Never",  # there is no registry: images are imported
                "resources": {"limits": {"memory": "32Mi", "cpu": "100m"}},
            }
        ]
    },
}


def wait_for(ok, timeout_s: float = 90):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := ok():
            return value
        time.sleep(1)
    raise AssertionError(f"not within {timeout_s} s")


def test_a_pod_runs_on_the_kubelet_and_teardown_leaves_nothing(tmp_path):
    lacking = missing()
    if lacking:
        pytest.skip("a one-node cluster needs " + ", ".join(lacking) + " (`make e2e` builds them)")
    workdir = tmp_path / "cluster"
    with one_node_cluster(workdir) as cluster:
        manifest = tmp_path / "pod.json"
        manifest.write_text(json.dumps(POD))
        cluster.kubectl("apply", "-f", str(manifest))

        def running() -> dict | None:
            pod = json.loads(cluster.kubectl("get", "pod", "sandbox", "-o", "json"))
            return pod if pod["status"].get("phase") == "Running" else None

        pod = wait_for(running)
        assert pod["spec"]["nodeName"] == "e2e-node"  # placed by the real scheduler
        assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(POD_SUBNET)
        container = pod["status"]["containerStatuses"][0]["containerID"].removeprefix(
            "containerd://"
        )
        assert "RUNNING" in cluster.ctr("tasks", "list")  # a real container under runc
        assert container in cluster.ctr("containers", "list", "-q")
        cluster.kubectl("delete", "pod", "sandbox", "--wait=true")
        socket = cluster.containerd_socket
    # nothing of the cluster is left: processes, mounts, the bridge
    assert not subprocess.run(["pgrep", "-f", socket], capture_output=True).stdout
    mounts = pathlib.Path("/proc/mounts").read_text()
    assert str(workdir.resolve()) not in mounts
    assert subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0
