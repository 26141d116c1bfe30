"""avfleet's own images (tests/e2e/images.py: debootstrap, uv and umoci, no registry) run on
the cluster: the CLI image's entrypoint answers as the Dockerfile's user, and each image holds
exactly the packages requirements.txt pins."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e import images
from tests.e2e.test_cluster import pod, run_pod

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REQUIREMENTS = images.REPO / "requirements.txt"

# Prints {distribution: version} for every installed distribution, and the user it runs as.
LIST = (
    "import importlib.metadata as m, json, os; "
    "print(json.dumps({'uid': os.getuid(), 'dists': "
    "{d.metadata['Name'].lower(): d.version for d in m.distributions()}}))"
)


def pins() -> dict[str, str]:
    out = {}
    for line in REQUIREMENTS.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", line)
        if match:
            out[match.group(1).lower().replace("_", "-")] = match.group(2)
    return out


def big_pod(name: str, image: str, args: list[str], command: list[str] | None = None) -> dict:
    doc = pod(name, image, command)
    container = doc["spec"]["containers"][0]
    container["args"] = args
    container["resources"] = {"limits": {"memory": "1Gi", "cpu": "1"}}
    return doc


def test_the_cli_image_runs_avfleet_as_its_user(images_loaded, tmp_path):
    image = images.IMAGES["avfleet"]
    got = run_pod(images_loaded, tmp_path, big_pod("cli", image.ref, ["--version"]),
                  ("Succeeded", "Failed"), timeout_s=180)  # fmt: skip
    logs = images_loaded.kubectl("logs", "cli")
    assert got["status"]["phase"] == "Succeeded", (logs, got["status"])
    assert re.search(r"avfleet \d+\.\d+\.\d+", logs), logs
    images_loaded.kubectl("delete", "pod", "cli", "--wait=true")


@pytest.mark.parametrize("name", sorted(images.IMAGES))
def test_the_image_holds_the_pinned_packages(images_loaded, tmp_path, name):
    image = images.IMAGES[name]
    pod_name = f"dists-{name}"
    doc = big_pod(pod_name, image.ref, ["-c", LIST], command=["python3"])
    got = run_pod(images_loaded, tmp_path, doc, ("Succeeded", "Failed"), timeout_s=180)
    logs = images_loaded.kubectl("logs", pod_name)
    assert got["status"]["phase"] == "Succeeded", (logs, got["status"])
    report = json.loads(logs.strip().splitlines()[-1])
    assert report["uid"] == 10001  # the Dockerfile's USER
    dists = {k.replace("_", "-"): v for k, v in report["dists"].items()}
    wrong = {k: (v, dists.get(k)) for k, v in pins().items() if dists.get(k) != v}
    assert not wrong, f"{name}: pinned vs installed: {wrong}"
    assert dists["torch"].startswith("2.13.0")
    assert "avfleet" in dists
    images_loaded.kubectl("delete", "pod", pod_name, "--wait=true")
