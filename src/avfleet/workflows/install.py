"""What `kubectl apply -k manifests/overlays/<site>` installs besides the workflows.

A site differs from another in a few values: the two buckets, the S3 endpoint,
the Pushgateway and Triton addresses, the images (by digest where a release was
built). They live in one ConfigMap, `avfleet-site` (manifests/base/site.yaml),
and a kustomize Component (manifests/components/site) copies them into every
place that uses them: the WorkflowTemplates' parameter defaults (and the image
parameters' one-value `enum`), Triton's model repository, the bench operator's
reports prefix. An overlay changes the ConfigMap with a `configMapGenerator`
(`behavior: merge`) and lists the Component again, so the copy runs after its
own values are in. Both files are rendered here from the workflow builders,
so a new parameter that names a bucket cannot be missed (`make render`; the
drift test fails otherwise).

The PrometheusRule is rendered from infra/prometheus/avfleet-rules.yaml, the
file promtool tests, so the cluster runs exactly the rules the tests cover. The Grafana
dashboards (avfleet.dashboards) ship as ConfigMaps labelled `grafana_dashboard: "1"`, which
kube-prometheus-stack's Grafana sidecar loads from any namespace it watches.
"""

from __future__ import annotations

import pathlib

import yaml

from avfleet.workflows import common as c

SITE_CONFIGMAP = "avfleet-site"
SITE: dict[str, str] = {
    "fleet-bucket": "avfleet-fleet",
    "data-bucket": "avfleet-data",
    "s3-endpoint-url": "",
    "pushgateway": "prometheus-pushgateway.monitoring:9091",
    "triton-url": "grpc://triton.avfleet.svc.cluster.local:8001",
    "triton-instance-kind": "KIND_GPU",
    "image": c.DEFAULT_IMAGE,
    "spark-image": c.DEFAULT_SPARK_IMAGE,
    "train-image": c.DEFAULT_TRAIN_IMAGE,
}
"""The base's site values (what `kubectl apply -k manifests/base` would install)."""

BUCKET_OF_PREFIX = {
    f"s3://{SITE['fleet-bucket']}/": "fleet-bucket",
    f"s3://{SITE['data-bucket']}/": "data-bucket",
}

# Non-workflow places that name a site value: (kind, name, fieldPath, site key, whole value?).
OTHER_TARGETS = [
    (
        "Deployment",
        "triton",
        "spec.template.spec.containers.[name=tritonserver].args.0",
        "data-bucket",
    ),
    (
        "Deployment",
        "avfleet-bench-operator",
        "spec.template.spec.containers.[name=operator].env.[name=AVFLEET_REPORTS_PREFIX].value",
        "data-bucket",
    ),
    (
        "Deployment",
        "avfleet-bench-operator",
        "spec.template.spec.containers.[name=operator].image",
        "image",
    ),
]

HEADER = "# Rendered by `avfleet workflows render --write` (src/avfleet/workflows/install.py). Do not edit.\n"


def _parameters(doc: dict) -> tuple[str, list[dict]]:
    spec = doc["spec"]
    if doc["kind"] == "CronWorkflow":
        return "spec.workflowSpec.arguments.parameters", spec["workflowSpec"]["arguments"][
            "parameters"
        ]
    return "spec.arguments.parameters", spec.get("arguments", {}).get("parameters", [])


def _targets(workflows: dict[str, dict]) -> dict[str, list[dict]]:
    """site key -> replacement targets, from every workflow's parameters and OTHER_TARGETS."""
    out: dict[str, list[dict]] = {k: [] for k in SITE}

    def add(key: str, kind: str, name: str, paths: list[str], bucket: bool) -> None:
        target = {"select": {"kind": kind, "name": name}, "fieldPaths": paths}
        if bucket:  # s3://BUCKET/rest: replace the third "/"-separated part only
            target["options"] = {"delimiter": "/", "index": 2}
        out[key].append(target)

    for doc in workflows.values():
        base, params = _parameters(doc)
        kind, name = doc["kind"], doc["metadata"]["name"]
        by_key: dict[tuple[str, bool], list[str]] = {}
        for p in params:
            path = f"{base}.[name={p['name']}]"
            if p["name"] in SITE:
                by_key.setdefault((p["name"], False), []).append(f"{path}.value")
                if p.get("enum"):
                    by_key[(p["name"], False)].append(f"{path}.enum.0")
                continue
            for prefix, key in BUCKET_OF_PREFIX.items():
                if str(p.get("value", "")).startswith(prefix):
                    by_key.setdefault((key, True), []).append(f"{path}.value")
        for (key, bucket), paths in by_key.items():
            add(key, kind, name, paths, bucket)
    for kind, name, path, key in OTHER_TARGETS:
        add(key, kind, name, [path], key.endswith("-bucket"))
    return out


def site_configmap() -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": SITE_CONFIGMAP},
        "data": dict(SITE),
    }
    return HEADER + yaml.safe_dump(doc, sort_keys=False, width=120)


def site_component(workflows: dict[str, dict]) -> str:
    replacements = [
        {
            "source": {"kind": "ConfigMap", "name": SITE_CONFIGMAP, "fieldPath": f"data.{key}"},
            "targets": targets,
        }
        for key, targets in _targets(workflows).items()
        if targets
    ]
    doc = {
        "apiVersion": "kustomize.config.k8s.io/v1alpha1",
        "kind": "Component",
        "replacements": replacements,
    }
    return HEADER + yaml.safe_dump(doc, sort_keys=False, width=120)


def prometheus_rule(rules_file: pathlib.Path) -> str:
    """The alert and recording rules as a prometheus-operator PrometheusRule."""
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "avfleet",
            # kube-prometheus-stack's Prometheus selects rules by its release label.
            "labels": {"release": "kube-prometheus-stack"},
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.safe_dump(doc, sort_keys=False, width=120)


def grafana_dashboards(rendered: dict[str, str]) -> str:
    """One ConfigMap per dashboard (uid -> JSON), for Grafana's dashboard sidecar."""
    docs = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"grafana-dashboard-{uid}",
                "labels": {"grafana_dashboard": "1"},
                # the sidecar files them into this Grafana folder
                "annotations": {"grafana_folder": "avfleet"},
            },
            "data": {f"{uid}.json": text},
        }
        for uid, text in sorted(rendered.items())
    ]
    return HEADER + yaml.safe_dump_all(docs, sort_keys=False, width=120)
