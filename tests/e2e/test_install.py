"""avfleet installed on the one-node cluster as a user installs it,
`kubectl apply --server-side -k manifests/overlays/local`, with its prerequisites' CRDs (Argo's
from the pinned module; the Spark operator's, Kubeflow's PyTorchJob and the Prometheus
operator's from ../shared/testdata), and its bench operator running from the CLI image."""

from __future__ import annotations

import json

import pytest

from tests.e2e import images
from tests.e2e.conftest import NS

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


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
