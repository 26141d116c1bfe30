"""The install overlays (manifests/overlays/*): each renders, and its site values reach every
place that uses them (workflow parameters, image enums, Triton, the operator), in its own
namespace."""

from __future__ import annotations

import pathlib
import shutil

import pytest
import yaml

from avfleet.workflows import install
from avfleet.workflows.render import default_manifests_dir, manifests_root
from tests.manifest_helpers import kustomize

OVERLAYS = ["local", "staging", "prod"]


def site_of(objects: list[dict]) -> dict[str, str]:
    return next(o for o in objects if o["metadata"]["name"] == install.SITE_CONFIGMAP)["data"]


def parameters_of(doc: dict) -> list[dict]:
    spec = doc["spec"].get("workflowSpec", doc["spec"])
    return spec.get("arguments", {}).get("parameters", [])


def check_site_values_everywhere(objects: list[dict]) -> int:
    """Assert every site-dependent value follows the site ConfigMap; returns how many."""
    site, seen = site_of(objects), 0
    buckets = {site["fleet-bucket"], site["data-bucket"]}
    for doc in objects:
        if doc["kind"] in ("WorkflowTemplate", "CronWorkflow"):
            for p in parameters_of(doc):
                value = str(p.get("value", ""))
                if p["name"] in install.SITE:
                    assert value == site[p["name"]], (doc["metadata"]["name"], p["name"])
                    if "enum" in p:
                        assert p["enum"] == [site[p["name"]]]
                    seen += 1
                elif value.startswith("s3://"):
                    assert value.split("/")[2] in buckets, (doc["metadata"]["name"], p)
                    seen += 1
        if doc["kind"] == "Deployment":
            container = doc["spec"]["template"]["spec"]["containers"][0]
            text = yaml.safe_dump(container)
            for uri in [w for w in text.split() if "s3://" in w]:
                rest = uri.split("s3://")[1]
                if rest.startswith(("http://", "https://")):
                    # Triton's S3 client takes a store's endpoint only in the URL
                    scheme, _, rest = rest.partition("://")
                    host, _, rest = rest.partition("/")
                    assert f"{scheme}://{host}" == site["s3-endpoint-url"], uri
                assert rest.split("/")[0] == site["data-bucket"], uri
                seen += 1
            if doc["metadata"]["name"] == "avfleet-bench-operator":
                assert container["image"] == site["image"]
    return seen


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_with_its_site_values_everywhere(overlay):
    objects = kustomize(str(manifests_root() / "overlays" / overlay))
    assert check_site_values_everywhere(objects) > 60
    namespace = next(o for o in objects if o["kind"] == "Namespace")["metadata"]["name"]
    for doc in objects:
        meta = doc["metadata"]
        if doc["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole") and (
            doc["kind"] != "ClusterRoleBinding"
        ):
            assert meta.get("namespace") == namespace, (doc["kind"], meta["name"])
        for subject in doc.get("subjects", []):  # RoleBindings and ClusterRoleBindings
            assert subject["namespace"] == namespace, (doc["kind"], meta["name"])
    if namespace != "avfleet":  # no address still names the base's namespace
        text = yaml.safe_dump_all(objects)
        assert ".avfleet.svc" not in text


def test_overlays_differ_where_sites_differ():
    sites = {o: site_of(kustomize(str(manifests_root() / "overlays" / o))) for o in OVERLAYS}
    assert sites["staging"]["data-bucket"] != sites["prod"]["data-bucket"]
    assert sites["local"]["s3-endpoint-url"].startswith("http://")  # moto's server
    assert sites["prod"]["s3-endpoint-url"] == ""  # AWS's own


def test_an_overlay_pins_images_by_digest_everywhere(tmp_path):
    """What the release job writes into prod: a digest reaches every image parameter, its
    one-value enum, and the operator's Deployment."""
    digest = "ghcr.io/avfleet/avfleet@sha256:" + "ab" * 32
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../prod"],
        "configMapGenerator": [
            {"name": install.SITE_CONFIGMAP, "behavior": "merge", "literals": [f"image={digest}"]}
        ],
        "generatorOptions": {"disableNameSuffixHash": True},
        "components": ["../../components/site"],
    }
    root = tmp_path / "manifests"
    shutil.copytree(manifests_root(), root)
    (root / "overlays" / "release").mkdir()
    (root / "overlays" / "release" / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    objects = kustomize(str(root / "overlays" / "release"))
    images = [
        p
        for doc in objects
        if doc["kind"] in ("WorkflowTemplate", "CronWorkflow")
        for p in parameters_of(doc)
        if p["name"] == "image"
    ]
    assert len(images) == 7 and all(p["value"] == digest and p["enum"] == [digest] for p in images)
    operator = next(
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "avfleet-bench-operator"
    )
    assert operator["spec"]["template"]["spec"]["containers"][0]["image"] == digest
    check_site_values_everywhere(objects)


def test_the_site_component_names_every_parameter_that_holds_a_bucket():
    """A parameter added with an s3:// default is copied from the site (the component is
    rendered from the builders), so no overlay can miss it."""
    component = yaml.safe_load(
        (manifests_root() / "components" / "site" / "kustomization.yaml").read_text()
    )
    paths = {
        path for r in component["replacements"] for t in r["targets"] for path in t["fieldPaths"]
    }
    for f in sorted((default_manifests_dir() / "workflows").glob("*.yaml")):
        doc = yaml.safe_load(f.read_text())
        base = "spec.workflowSpec" if doc["kind"] == "CronWorkflow" else "spec"
        for p in parameters_of(doc):
            if str(p.get("value", "")).startswith("s3://") or p["name"] in install.SITE:
                assert f"{base}.arguments.parameters.[name={p['name']}].value" in paths, (
                    f.name,
                    p["name"],
                )


def test_install_doc_names_every_prerequisite():
    doc = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "install.md").read_text()
    for needed in (
        "Argo Workflows",
        "spark-operator",
        "training-operator",
        "kube-prometheus-stack",
        "Pushgateway",
        "NVIDIA device plugin",
        "overlays/local",
        "overlays/staging",
        "overlays/prod",
    ):
        assert needed in doc, needed
