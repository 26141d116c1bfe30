"""Helpers over rendered manifests shared by unit and integration tests."""

from __future__ import annotations

import subprocess

import yaml

from tests.conftest import tool


def resource_docs(doc: dict):
    """The resource manifests a workflow creates, parameters filled with the defaults."""
    from avfleet.workflows.local.expressions import substitute

    spec = doc["spec"].get("workflowSpec", doc["spec"])
    scope = {
        f"workflow.parameters.{p['name']}": p.get("value", "1")
        for p in spec.get("arguments", {}).get("parameters", [])
    }
    scope["workflow.name"] = "wf"
    for template in spec.get("templates", []):
        if "resource" not in template:
            continue
        text = template["resource"]["manifest"]
        local = dict(scope)
        for p in template.get("inputs", {}).get("parameters", []):
            local[f"inputs.parameters.{p['name']}"] = "1"
        yield template["name"], yaml.safe_load(substitute(text, local, template["name"]))


def kustomize(path: str) -> list[dict]:
    """The objects `kubectl kustomize path` renders."""
    out = subprocess.run(
        [tool("kubectl"), "kustomize", path], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]
