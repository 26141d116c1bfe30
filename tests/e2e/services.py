"""The local overlay's site services on the one-node cluster: `site_services(cluster)`.

manifests/overlays/local points avfleet at `s3.avfleet-local.svc.cluster.local:5000` (moto's
S3 server) and `pushgateway.avfleet-local.svc.cluster.local:9091` (Prometheus's Pushgateway).
Here both run as host processes on the node's address, behind those names: a Service without
a selector and an EndpointSlice at this host each (cluster.host_service), as a site would
point them at services outside the cluster. moto's server runs in this process (a thread);
the Pushgateway is Debian's binary.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from avfleet.core.net import free_port
from tests.e2e.cluster import Cluster, host_service, node_ip
from tests.integration.test_monitoring import start_pushgateway

NAMESPACE = "avfleet-local"
BUCKETS = ("avfleet-fleet", "avfleet-data")
"""The local overlay's buckets (its avfleet-site ConfigMap)."""
S3_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
"""moto accepts any keys; the overlay's Secret avfleet-s3 gives the pods these."""


@dataclasses.dataclass(frozen=True)
class Site:
    s3_url: str
    """moto's server as this host reaches it (the pods use the Service's name)."""
    pushgateway: str

    def env(self) -> dict[str, str]:
        """What a process on this host needs to use the site's S3 (the local executor's)."""
        return {**S3_KEYS, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": self.s3_url}


@contextlib.contextmanager
def site_services(cluster: Cluster) -> Iterator[Site]:
    from moto.server import ThreadedMotoServer

    ip, port = node_ip(), free_port()
    s3 = ThreadedMotoServer(ip_address=ip, port=port)
    s3.start()
    try:
        with start_pushgateway(ip) as pushgateway:
            site = Site(s3_url=f"http://{ip}:{port}", pushgateway=pushgateway)
            _make_buckets(site)
            cluster.apply(
                "site-services",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
                *host_service(NAMESPACE, "s3", 5000, port),
                *host_service(NAMESPACE, "pushgateway", 9091, int(pushgateway.rsplit(":")[1])),
            )
            try:
                yield site
            finally:
                cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=true", timeout=180)
    finally:
        s3.stop()


BENCH_TOKEN = "e2e-bench-token-0123456789abcdef"
BENCH = "xavier-01"
"""The local overlay's one bench (overlays/local/benches): its agent at
bench.avfleet-local.svc.cluster.local:8470, its token in the Secret xavier-01-token."""


def bench_agent(cluster: Cluster, image: str, avfleet_namespace: str) -> None:
    """The local bench's agent as a pod (a Deployment and its Service `bench`): ONNX Runtime
    on the CPU, standing in for a Xavier, which cannot run here; it reads models and bundles
    from the site's data bucket only. Its token, and the copy the bench operator reads."""
    labels = {"app.kubernetes.io/name": "bench-agent"}
    meta = {"name": "bench-agent", "namespace": NAMESPACE, "labels": labels}
    restricted = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                  "capabilities": {"drop": ["ALL"]}}  # fmt: skip
    s3 = {
        **S3_KEYS,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://s3.{NAMESPACE}.svc.cluster.local:5000",
    }
    container = {
        "name": "agent",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["avfleet", "bench", "agent", "--host", "0.0.0.0", "--port", "8470",
                    "--cache", "/tmp/engines", "--allow", f"s3://{BUCKETS[1]}/",
                    "--target", "xavier-agx-jp5"],
        "env": [{"name": "AVFLEET_BENCH_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": "bench-token", "key": "token"}}}],
        "envFrom": [{"secretRef": {"name": "bench-s3"}}],
        "ports": [{"containerPort": 8470}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8470}, "periodSeconds": 2},
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                      "limits": {"cpu": "1", "memory": "2Gi"}},
        "securityContext": restricted,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }  # fmt: skip
    pod = {
        "metadata": {"labels": labels},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001},
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }
    cluster.apply(
        "bench-agent",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bench-token", "namespace": NAMESPACE},
         "stringData": {"token": BENCH_TOKEN}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bench-s3", "namespace": NAMESPACE},
         "stringData": s3},
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": f"{BENCH}-token", "namespace": avfleet_namespace},
         "stringData": {"token": BENCH_TOKEN}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": pod}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {**meta, "name": "bench"},
         "spec": {"selector": labels, "ports": [{"port": 8470, "targetPort": 8470}]}},
    )  # fmt: skip
    cluster.kubectl("-n", NAMESPACE, "wait", "--for=condition=Available", "--timeout=180s",
                    "deployment/bench-agent", timeout=200)  # fmt: skip


def _make_buckets(site: Site) -> None:
    import boto3

    env = site.env()
    client = boto3.client(
        "s3",
        endpoint_url=site.s3_url,
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    for bucket in BUCKETS:
        client.create_bucket(Bucket=bucket)
