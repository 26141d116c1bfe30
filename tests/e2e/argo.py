"""Argo Workflows on the one-node cluster (tests/e2e/cluster.py): `argo_controller(cluster)`.

Argo's own workflow-controller runs as a host process with the cluster's kubeconfig, watching
one namespace; its executor is `argoexec` (tools/build-e2e.sh) in an image packed here, so
every step's pod runs Argo's real `init` and `wait` containers beside the step. The CRDs are
the pinned module's own (argo-workflows' manifests/base/crds/full in the Go module cache, the
same version as the controller), which include WorkflowTaskResult, where the executor reports
a step's outputs.
"""

from __future__ import annotations

import contextlib
import pathlib
import subprocess
from collections.abc import Iterator

import yaml

from avfleet.core.net import free_port
from tests.conftest import REPO_ROOT, go_module_dir, tool_path
from tests.e2e.cluster import Cluster, static_image
from tests.integration.kube import argo_cli, argo_controller_env, host_process

ARGOEXEC_IMAGE = "avfleet.local/argoexec:e2e"
ARGO_MODULE = "github.com/argoproj/argo-workflows/v4"

# What a step's executor (its `wait` container, as the namespace's default account) does:
# report outputs as WorkflowTaskResults and read its own pod.
EXECUTOR_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "Role",
    "metadata": {"name": "argo-executor"},
    "rules": [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflowtaskresults"],
            "verbs": ["create", "patch", "get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "watch"]},
    ],
}


def crds_dir() -> pathlib.Path | None:
    """The pinned argo-workflows module's CRDs (None without a go command or the module)."""
    return go_module_dir(ARGO_MODULE, REPO_ROOT / "tools", "manifests", "base", "crds", "full")


def missing() -> list[str]:
    out = [name for name in ("workflow-controller", "argo", "argoexec") if not tool_path(name)]
    if crds_dir() is None:
        out.append(f"the {ARGO_MODULE} module (go mod download in tools/)")
    return out


@contextlib.contextmanager
def argo_controller(
    cluster: Cluster, namespace: str = "default", config: dict[str, str] | None = None
) -> Iterator[None]:
    """The workflow-controller watching `namespace`, with `config` as its ConfigMap's data
    (Argo's defaults without it)."""
    crds = crds_dir()
    cluster.kubectl("apply", "--server-side", "-k", str(crds))  # a kustomization
    cluster.wait_established("workflows.argoproj.io", "workflowtaskresults.argoproj.io")
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "argo-executor"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "argo-executor"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
    }  # fmt: skip
    # the controller waits for its configuration
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "workflow-controller-configmap"},
        "data": config or {},
    }
    cluster.apply("argo-setup", EXECUTOR_ROLE, binding, config_map, flags=("-n", namespace))
    image = static_image(
        cluster.workdir, "argoexec", {"/bin/argoexec": tool_path("argoexec")}, ["/bin/argoexec"]
    )
    cluster.import_image(image, ARGOEXEC_IMAGE)
    args = [
        tool_path("workflow-controller"), "--kubeconfig", cluster.kubeconfig,
        "--namespaced", "--managed-namespace", namespace, "-n", namespace,
        "--executor-image", ARGOEXEC_IMAGE, "--executor-image-pull-policy", "Never",
    ]  # fmt: skip
    log = cluster.workdir / "workflow-controller.log"
    with host_process(args, log, argo_controller_env()):
        yield


def avfleet_config() -> dict[str, str]:
    """infra/argo/workflow-controller-configmap.yaml's data, what avfleet's docs/install.md asks
    a site to merge into its controller's configuration; its metrics on a free port here."""
    path = REPO_ROOT / "infra" / "argo" / "workflow-controller-configmap.yaml"
    data = yaml.safe_load(path.read_text())["data"]
    metrics = yaml.safe_load(data["metricsConfig"])
    metrics["port"] = free_port()
    return {**data, "metricsConfig": yaml.safe_dump(metrics)}


def argo(
    cluster: Cluster, *args: str, namespace: str = "default", timeout: float = 120
) -> subprocess.CompletedProcess:
    """Argo's CLI against the cluster."""
    return argo_cli(cluster.kubeconfig, namespace, *args, timeout=timeout)
