"""Kubeflow's spark-operator (v2.4.0, tools/spark-operator/go.mod) on the one-node cluster: its
controller and its webhook as host processes with the cluster's kubeconfig, as its chart runs
them as two Deployments.

The controller turns a SparkApplication into a `spark-submit` (cluster mode) that it runs
itself, from SPARK_HOME: here this host's pyspark, whose Kubernetes client reads the same
kubeconfig and the API server's address from KUBERNETES_SERVICE_HOST/PORT (as in a pod). The
webhook gives the driver and executor pods what spark-submit cannot (avfleet's Pod Security
"restricted" securityContext, volumes, envFrom): the API server reaches it through a Service
without a selector at this host. It makes its own certificate (a Secret in its namespace, the
files in its cert dir) and writes its CA into the webhook configurations, which are the chart's
(templates/webhook), limited to avfleet's namespace.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import urllib.parse
import urllib.request
from collections.abc import Iterator

import yaml

from avfleet.core.net import free_port
from tests.conftest import REPO_ROOT, go_module_dir, tool_path
from tests.e2e.cluster import Cluster, host_service
from tests.integration.kube import host_process, wait_http_ready

NAMESPACE = "spark-operator"
SERVICE = "spark-operator-webhook-svc"
WEBHOOK = "spark-operator-webhook"
"""The webhook configurations' name, which the webhook process keeps the CA of."""
MODULE = "github.com/kubeflow/spark-operator/v2"


def crds_dir() -> pathlib.Path | None:
    """The pinned module's CRDs (its chart's): its controller watches every kind in them."""
    return go_module_dir(MODULE, REPO_ROOT / "tools" / "spark-operator",
                         "charts", "spark-operator-chart", "crds")  # fmt: skip


def missing() -> list[str]:
    out = [] if tool_path("spark-operator") else ["spark-operator (tools/build-e2e.sh)"]
    if crds_dir() is None:
        out.append(f"the {MODULE} module (go mod download in tools/spark-operator)")
    try:
        import pyspark  # noqa: F401
    except ImportError:
        out.append("pyspark (its spark-submit)")
    return out


def _hook(resource: str, group: str, path: str, namespace: str, **extra: object) -> dict:
    version = "v1" if group == "" else "v1beta2"
    return {
        "name": f"{path.strip('/')}.sparkoperator.k8s.io",
        "admissionReviewVersions": ["v1"],
        "clientConfig": {"service": {"name": SERVICE, "namespace": NAMESPACE, "port": 443,
                                     "path": path}},
        "sideEffects": "NoneOnDryRun",
        "failurePolicy": "Fail",
        "namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace]}]},
        "rules": [{"apiGroups": [group], "apiVersions": [version], "resources": [resource],
                   "operations": ["CREATE"] if group == "" else ["CREATE", "UPDATE"]}],
        "timeoutSeconds": 10,
        **extra,
    }  # fmt: skip


def webhook_configurations(namespace: str) -> list[dict]:
    """The chart's webhooks for the pods the operator launches and its SparkApplications."""
    launched = {"matchLabels": {"sparkoperator.k8s.io/launched-by-spark-operator": "true"}}
    app = ("sparkapplications", "sparkoperator.k8s.io")
    mutating = [
        _hook("pods", "", "/mutate--v1-pod", namespace, objectSelector=launched),
        _hook(*app, "/mutate-sparkoperator-k8s-io-v1beta2-sparkapplication", namespace),
    ]
    validating = [_hook(*app, "/validate-sparkoperator-k8s-io-v1beta2-sparkapplication", namespace)]
    meta = {"name": WEBHOOK}
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": meta, "webhooks": mutating},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": meta, "webhooks": validating},
    ]  # fmt: skip


@contextlib.contextmanager
def spark_operator(cluster: Cluster, namespace: str) -> Iterator[None]:
    """The operator's webhook and controller for SparkApplications in `namespace`."""
    import pyspark

    # the operator's own CRDs over the ones avfleet's install applied (testdata's, older)
    crds = crds_dir()
    for path in sorted(crds.glob("*.yaml")):
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    cluster.wait_established()
    port = free_port()
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    cluster.apply("spark-operator-setup", ns, *host_service(NAMESPACE, SERVICE, 443, port),
                  *webhook_configurations(namespace), flags=("--server-side",))  # fmt: skip
    server = urllib.parse.urlsplit(
        yaml.safe_load(pathlib.Path(cluster.kubeconfig).read_text())["clusters"][0]["cluster"][
            "server"
        ]
    )
    env = {
        **os.environ,
        "KUBECONFIG": cluster.kubeconfig,
        # the controller's spark-submit: this host's pyspark, the API server as a pod sees it
        "SPARK_HOME": os.path.dirname(pyspark.__file__),
        "KUBERNETES_SERVICE_HOST": server.hostname or "",
        "KUBERNETES_SERVICE_PORT": str(server.port or 443),
    }
    binary = tool_path("spark-operator") or "spark-operator"
    common = [f"--namespaces={namespace}", "--metrics-bind-address=0", "--leader-election=false"]
    hook_probe, controller_probe = free_port(), free_port()
    certs = cluster.workdir / "spark-operator-certs"
    webhook = [binary, "webhook", "start", *common, f"--webhook-port={port}",
               f"--webhook-cert-dir={certs}", f"--webhook-svc-name={SERVICE}",
               f"--webhook-svc-namespace={NAMESPACE}", f"--webhook-secret-namespace={NAMESPACE}",
               f"--mutating-webhook-name={WEBHOOK}", f"--validating-webhook-name={WEBHOOK}",
               f"--health-probe-bind-address=127.0.0.1:{hook_probe}"]  # fmt: skip
    controller = [binary, "controller", "start", *common, "--enable-ui-service=false",
                  f"--health-probe-bind-address=127.0.0.1:{controller_probe}"]  # fmt: skip
    hook_log = cluster.workdir / "spark-operator-webhook.log"
    controller_log = cluster.workdir / "spark-operator-controller.log"
    with host_process(webhook, hook_log, env) as hook:
        wait_http_ready(f"http://127.0.0.1:{hook_probe}/readyz", hook, hook_log, "its webhook")
        with host_process(controller, controller_log, env) as proc:
            wait_http_ready(f"http://127.0.0.1:{controller_probe}/readyz", proc, controller_log,
                            "its controller")  # fmt: skip
            yield
