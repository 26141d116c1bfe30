"""`argo submit` on the one-node cluster: Argo's own controller turns a workflow into real pods
(its executor's init and wait containers beside each step), and the run succeeds or fails as
its steps do.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.e2e.argo import argo, argo_controller, missing
from tests.e2e.cluster import SHELL_IMAGE

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def controller(cluster):
    lacking = missing()
    if lacking:
        pytest.skip("Argo on the cluster needs " + ", ".join(lacking) + " (`make e2e`)")
    with argo_controller(cluster):
        yield cluster


def workflow(name: str, script: str) -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": f"{name}-"},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "steps": [
                        [{"name": "first", "template": "say"}],
                        [{"name": "second", "template": "say"}],
                    ],
                },
                {
                    "name": "say",
                    "container": {
                        "image": SHELL_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["sh", "-c", script],
                    },
                },
            ],
        },
    }


def submit(cluster, tmp_path, doc: dict) -> dict:
    path = tmp_path / "workflow.yaml"
    path.write_text(yaml.safe_dump(doc))
    done = argo(cluster, "submit", str(path), "--wait", "-o", "name")  # exits 1 if it failed
    assert done.stdout.strip(), done.stderr
    name = done.stdout.strip().splitlines()[-1]
    return json.loads(argo(cluster, "get", name, "-o", "json").stdout)


def test_argo_submit_runs_steps_on_real_pods(controller, tmp_path):
    run = submit(controller, tmp_path, workflow("hello", "echo hello from a real pod"))
    assert run["status"]["phase"] == "Succeeded", run["status"].get("message")
    pods = [n for n in run["status"]["nodes"].values() if n["type"] == "Pod"]
    assert len(pods) == 2 and all(n["phase"] == "Succeeded" for n in pods)
    logs = argo(controller, "logs", run["metadata"]["name"]).stdout
    assert logs.count("hello from a real pod") == 2


def test_a_failing_step_fails_the_run_and_stops_it(controller, tmp_path):
    run = submit(controller, tmp_path, workflow("fails", "echo about to fail; exit 3"))
    assert run["status"]["phase"] == "Failed"
    pods = [n for n in run["status"]["nodes"].values() if n["type"] == "Pod"]
    assert len(pods) == 1  # the second step never ran
    assert "exit code 3" in pods[0]["message"]
