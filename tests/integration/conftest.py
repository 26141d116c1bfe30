"""Fixtures for integration tests: a real local Spark session and generated fleets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from avfleet.core.net import free_port  # noqa: F401 - the tests import it from here
from avfleet.fleet.corrupt import corrupt_fleet
from avfleet.fleet.generate import generate_fleet
from avfleet.fleet.world import FleetSpec

DATE = "2026-11-20"
SMALL = FleetSpec(seed=21, vehicles=3, minutes_per_day=2.0, segment_s=20.0, start_date=DATE)
CORRUPTIONS = {
    "truncated": 1,
    "bitflip-summary": 1,
    "bitflip-signals": 1,
    "bomb": 1,
    "bomb-lying": 1,
}

# Spark's Python workers inherit the environment the JVM started with: set S3 credentials for
# moto before the session exists (harmless for local-only tests).
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def spark():
    os.environ.update(S3_ENV)
    from avfleet.index.spark import spark_session

    session = spark_session("avfleet-tests", "local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def clean_fleet(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("fleet-clean"))
    generate_fleet(SMALL, root, workers=2)
    return root


@pytest.fixture(scope="session")
def corrupt_fleet_uri(clean_fleet, tmp_path_factory) -> str:
    """The small fleet with one recording of each hostile kind mixed in."""
    root = str(tmp_path_factory.mktemp("fleet-corrupt") / "fleet")
    shutil.copytree(clean_fleet, root)
    corrupt_fleet(root, DATE, CORRUPTIONS, seed=4)
    return root


def local_run(manifest: str, params: dict, workdir) -> subprocess.CompletedProcess:  # noqa: ANN001
    """`avfleet local-run manifests/<manifest> -p k=v ...` in a child process."""
    from avfleet.workflows.render import default_manifests_dir

    cmd = [sys.executable, "-m", "avfleet", "local-run", str(default_manifests_dir() / manifest)]
    cmd += ["--workdir", str(workdir)]
    for k, v in params.items():
        cmd += ["-p", f"{k}={v}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200)


@pytest.fixture
def release(tmp_path):
    """A small release folder: model.onnx (a quarter-width net) and bundle.npz whose labels
    are the model's own argmax (an engine must match it exactly)."""
    import numpy as np
    import torch

    from avfleet.bench.measure import Bundle, to_input
    from avfleet.train.export import export_onnx
    from avfleet.train.models import build, default_arch

    torch.manual_seed(0)
    net = build(default_arch(width=0.25)).eval()
    (tmp_path / "model.onnx").write_bytes(export_onnx(net, 32, 64))
    frames = np.random.default_rng(0).integers(0, 256, (8, 32, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        ref = net(torch.from_numpy(to_input(frames[:4]))).numpy()
    masks = ref.argmax(2)[:, 0].astype(np.uint8)
    bundle = Bundle(frames[:4], masks, np.array(["day/clear/urban"] * 4), ref, frames)
    (tmp_path / "bundle.npz").write_bytes(bundle.to_bytes())
    return tmp_path
