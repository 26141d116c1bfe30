"""Triton's production mode against the real tritonserver binary (the one PyTriton bundles):
explicit model control, the repository's version policy (the newest versions plus every
pinned one), and the load API that publish-model and promote call.

The bundled server has only Triton's Python backend (no ONNX Runtime backend), so the model
here is a small Python-backend model; the config.pbtxt header differs from the scoring
graph's, the version policy and the load path are avfleet's own (serve.repository,
serve.client.load_model).
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import time

import numpy as np
import pytest

from avfleet.core.errors import PermanentError, TransientError
from avfleet.core.net import free_port
from avfleet.serve import repository as R
from avfleet.serve.client import load_model

MODEL_PY = """
import triton_python_backend_utils as pb


class TritonPythonModel:
    def initialize(self, args):
        self.version = float(args["model_version"])

    def execute(self, requests):
        return [
            pb.InferenceResponse([pb.Tensor("y", pb.get_input_tensor_by_name(r, "x").as_numpy()
                                            * 0 + self.version)])
            for r in requests
        ]
"""

HEADER = """name: "toy"
backend: "python"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


def add_version(repo: pathlib.Path, version: int) -> None:
    """A complete version (model.onnx marks it complete for serve.repository)."""
    vdir = repo / "toy" / str(version)
    vdir.mkdir(parents=True)
    (vdir / "model.py").write_text(MODEL_PY)
    (vdir / R.MODEL_FILE).write_bytes(b"python backend: unused")


@contextlib.contextmanager
def tritonserver(repo: pathlib.Path, workdir: pathlib.Path):  # noqa: ANN201
    """The real tritonserver from PyTriton's distribution, explicit model control, on
    127.0.0.1; yields its gRPC URL."""
    import pytriton

    dist = pathlib.Path(pytriton.__file__).parent / "tritonserver"
    libs = pathlib.Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not (dist / "bin" / "tritonserver").exists() or not stub.exists():
        pytest.skip("PyTriton's bundled tritonserver is not installed")
    server = workdir / "tritonserver"
    shutil.copytree(dist, server, ignore=shutil.ignore_patterns("python_backend_stubs"))
    shutil.copy(stub, server / "backends" / "python" / "triton_python_backend_stub")
    http, grpc, metrics = free_port(), free_port(), free_port()
    env = {
        "PATH": f"{pathlib.Path(sys.executable).parent}:/usr/bin:/bin",
        # the Python backend's stub must find this interpreter's libpython (DEPENDENCIES.md)
        "LD_LIBRARY_PATH": f"{sysconfig.get_config_var('LIBDIR')}:{libs}",
    }
    args = [
        str(server / "bin" / "tritonserver"),
        f"--model-repository={repo}",
        "--model-control-mode=explicit",
        f"--backend-directory={server / 'backends'}",
        "--http-address=127.0.0.1",
        f"--http-port={http}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics}",
    ]
    with open(workdir / "tritonserver.log", "w") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            import tritonclient.grpc as g

            client = g.InferenceServerClient(f"127.0.0.1:{grpc}")
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.is_server_live():
                        break
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
                assert proc.poll() is None, (workdir / "tritonserver.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "tritonserver did not start in 60 s"
                time.sleep(0.3)
            yield f"grpc://127.0.0.1:{grpc}"
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def ready(url: str) -> dict[int, bool]:
    import tritonclient.grpc as g

    client = g.InferenceServerClient(url.split("://", 1)[1])
    return {v: client.is_model_ready("toy", str(v)) for v in range(1, 6)}


def infer(url: str, version: int) -> float:
    import tritonclient.grpc as g

    client = g.InferenceServerClient(url.split("://", 1)[1])
    x = g.InferInput("x", [1, 1], "FP32")
    x.set_data_from_numpy(np.zeros((1, 1), np.float32))
    return float(client.infer("toy", [x], model_version=str(version)).as_numpy("y")[0, 0])


def test_explicit_mode_serves_the_newest_and_the_pinned_versions(tmp_path):
    repo = tmp_path / "repo"
    for version in (1, 2, 3):
        add_version(repo, version)
    (repo / "toy" / R.CONFIG_FILE).write_text(
        HEADER + R.version_policy(R.served_versions(str(repo), "toy")) + "\n"
    )
    with tritonserver(repo, tmp_path) as url:
        # Explicit mode: nothing is loaded until asked.
        assert not any(ready(url).values())
        load_model(url, "toy")
        assert ready(url) == {1: False, 2: True, 3: True, 4: False, 5: False}
        # A backfill pins version 1: after the load call Triton serves it too.
        assert R.set_pins(str(repo), "toy", {1: "backfill 2026-11-01"}) == [1, 2, 3]
        load_model(url, "toy")
        assert ready(url)[1] and infer(url, 1) == 1.0
        # A new version: the newest two and the pin stay, version 2 is unloaded.
        add_version(repo, 4)
        assert R.set_pins(str(repo), "toy", {}) == [1, 3, 4]
        load_model(url, "toy")
        assert ready(url) == {1: True, 2: False, 3: True, 4: True, 5: False}
        assert infer(url, 4) == 4.0
        # A model the repository lacks is refused with Triton's reason; nothing else changes.
        with pytest.raises(PermanentError, match="nope"):
            load_model(url, "nope")
        assert ready(url)[4]
    with pytest.raises(TransientError):
        load_model(f"grpc://127.0.0.1:{free_port()}", "toy", timeout_s=5)
