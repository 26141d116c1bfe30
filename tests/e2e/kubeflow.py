"""Kubeflow's training-operator on the one-node cluster (tests/e2e/cluster.py):
`training_operator(cluster)`.

The operator (v1.8.1, tools/kubeflow/go.mod) runs as a host process with the cluster's
kubeconfig, for PyTorchJobs. Its CRDs and its validating webhook configuration are the pinned
module's own manifests; the webhook's Service (`training-operator` in `kubeflow`, the name its
certificate is made for) has no selector, and its EndpointSlice points at this host, where the
operator serves the webhook: the API server calls it for every PyTorchJob created. Its
certificate rotator writes the certificate into a Secret, which in a pod the kubelet mounts
where the operator reads it; as a host process, `_mount_certificates` copies it there. The workers'
init container, which waits for the master's name in DNS, runs the shell image (busybox)
instead of the operator's default alpine, which no registry here serves, from avfleet's
template (infra/kubeflow/pytorch-init-container.yaml: restricted, the master by its full name).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import time
from collections.abc import Iterator

import yaml

from avfleet.core.net import free_port
from tests.conftest import REPO_ROOT, go_module_dir, tool_path
from tests.e2e.cluster import SHELL_IMAGE, Cluster, host_service
from tests.integration.kube import host_process, wait_http_ready

MODULE = "github.com/kubeflow/training-operator"
NAMESPACE = "kubeflow"
SERVICE = "training-operator"
CERT_DIR = pathlib.Path("/tmp/k8s-webhook-server")  # the operator's, fixed in its source
INIT_CONTAINER = REPO_ROOT / "infra" / "kubeflow" / "pytorch-init-container.yaml"
"""What docs/install.md asks a site to give its operator: the workers' init container under
Pod Security "restricted", looking the master up by its full name."""


def manifests_dir() -> pathlib.Path | None:
    """The pinned module's manifests/base (None without a go command or the module)."""
    return go_module_dir(MODULE, REPO_ROOT / "tools" / "kubeflow", "manifests", "base")


def missing() -> list[str]:
    out = [] if tool_path("training-operator") else ["training-operator (tools/build-e2e.sh)"]
    if manifests_dir() is None:
        out.append(f"the {MODULE} module (go mod download in tools/kubeflow)")
    return out


@contextlib.contextmanager
def training_operator(cluster: Cluster) -> Iterator[None]:
    base = manifests_dir()
    cluster.kubectl("apply", "--server-side", "-k", str(base / "crds"))
    cluster.wait_established("pytorchjobs.kubeflow.org")
    port = free_port()
    webhooks = [
        d for d in yaml.safe_load_all(cluster.kubectl("kustomize", str(base / "webhook"))) if d
    ]
    for doc in webhooks:
        for hook in doc.get("webhooks", []):
            hook["clientConfig"]["service"]["namespace"] = NAMESPACE
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    meta = {"name": SERVICE, "namespace": NAMESPACE}
    cluster.apply(
        "kubeflow-setup",
        ns,
        # the operator's certificate rotator fills this Secret and the webhooks' caBundle
        {"apiVersion": "v1", "kind": "Secret", "metadata": {**meta, "name": f"{SERVICE}-webhook-cert"}},
        *host_service(NAMESPACE, SERVICE, 443, port),
        *webhooks,
        flags=("--server-side",),
    )  # fmt: skip
    had_cert_dir = CERT_DIR.exists()
    probe = free_port()
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig, "MY_POD_NAMESPACE": NAMESPACE}
    args = [
        tool_path("training-operator"), "--enable-scheme=pytorchjob",
        f"--webhook-server-port={port}", f"--webhook-service-name={SERVICE}",
        f"--metrics-bind-address=127.0.0.1:{free_port()}",
        f"--health-probe-bind-address=127.0.0.1:{probe}",
        f"--pytorch-init-container-image={SHELL_IMAGE}",
        f"--pytorch-init-container-template-file={INIT_CONTAINER}",
    ]  # fmt: skip
    try:
        log = cluster.workdir / "training-operator.log"
        with host_process(args, log, env) as proc:
            _mount_certificates(cluster, proc)
            wait_http_ready(f"http://127.0.0.1:{probe}/readyz", proc, log, "the training-operator")
            yield
    finally:
        if not had_cert_dir:
            shutil.rmtree(CERT_DIR, ignore_errors=True)


def _mount_certificates(cluster: Cluster, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    """Do what the kubelet does for the operator's pod: put the webhook Secret's keys (once its
    certificate rotator has made them) where the operator reads its serving certificate."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        secret = json.loads(cluster.kubectl(
            "-n", NAMESPACE, "get", "secret", f"{SERVICE}-webhook-cert", "-o", "json"
        ))  # fmt: skip
        data = secret.get("data") or {}
        if {"ca.crt", "tls.crt", "tls.key"} <= set(data):
            certs = CERT_DIR / "serving-certs"
            certs.mkdir(parents=True, exist_ok=True)
            for key in ("ca.crt", "tls.crt", "tls.key"):
                (certs / key).write_bytes(base64.b64decode(data[key]))
            (certs / "tls.key").chmod(0o600)
            return
        time.sleep(1)
    raise RuntimeError(f"the training-operator made no webhook certificate in {timeout_s} s")
