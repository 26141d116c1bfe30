"""avfleet installed on the one-node cluster as a user installs it,
`kubectl apply --server-side -k manifests/overlays/local`, with its prerequisites' CRDs (Argo's
from the pinned module; the Spark operator's, Kubeflow's PyTorchJob and the Prometheus
operator's from ../shared/testdata), and its bench operator running from the CLI image."""

from __future__ import annotations

import json

import pytest

from avfleet.workflows.render import manifests_root
from tests.conftest import TESTDATA
from tests.e2e import images
from tests.e2e.argo import crds_dir
from tests.integration.test_install_cluster import CRD_FILES

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NS = "avfleet"


@pytest.fixture(scope="module")
def installed(images_loaded):
    cluster = images_loaded
    cluster.kubectl("apply", "--server-side", "-k", str(crds_dir()))
    for rel in CRD_FILES:
        if not rel.startswith("argo/"):  # Argo's come from the controller's own module
            cluster.kubectl("apply", "--server-side", "-f", str(TESTDATA / rel))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=120s", "crd", "--all")
    local = manifests_root() / "overlays" / "local"
    cluster.kubectl("apply", "--server-side", "-k", str(local))
    cluster.kubectl("apply", "--server-side", "-k", str(local / "benches"))
    yield cluster
    # The benches first, while the operator still runs to take its finalizers off them; a
    # namespace deleted with them in it would wait for it forever.
    cluster.kubectl("delete", "-k", str(local / "benches"), "--wait=true", timeout=180)
    cluster.kubectl("delete", "namespace", NS, "--wait=true", timeout=300)


def test_the_bench_operator_runs_from_the_cli_image(installed):
    installed.kubectl("-n", NS, "wait", "--for=condition=Available", "--timeout=300s",
                      "deployment/avfleet-bench-operator", timeout=330)  # fmt: skip
    pods = json.loads(installed.kubectl(
        "-n", NS, "get", "pods", "-l", "app.kubernetes.io/name=avfleet-bench-operator", "-o", "json"
    ))["items"]  # fmt: skip
    (pod,) = pods
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] and status["image"].endswith(images.IMAGES["avfleet"].ref)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    logs = installed.kubectl("-n", NS, "logs", pod["metadata"]["name"])
    assert "Traceback" not in logs, logs
