"""Triton's production mode against the real tritonserver binary (the one PyTriton bundles):
explicit model control, the repository's version policy (the newest versions plus every
pinned one), and the load API that publish-model and promote call.

The server runs as `avfleet tritonserver` (serve/tritonserver.py), as the local overlay's
Triton pod runs it. The version-policy test uses a small Python-backend model; the scoring
graph's own config.pbtxt (`backend: "onnxruntime"`) is served by avfleet's Python-based
`onnxruntime` backend (serve/onnx_backend.py), compared with ONNX Runtime in process, from a
directory and from an S3 repository (moto's server).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest

from avfleet.core.errors import PermanentError, TransientError
from avfleet.core.net import free_port
from avfleet.serve import repository as R
from avfleet.serve.client import load_model
from avfleet.taxonomy import NUM_CLASSES

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
def tritonserver(  # noqa: ANN201
    repo: pathlib.Path | str, workdir: pathlib.Path, env: dict | None = None, load_all: bool = True
):
    """`avfleet tritonserver`: the real tritonserver from PyTriton's distribution, explicit model
    control, on 127.0.0.1; with `load_all` every model of the repository is loaded at start
    (`--load-model=*`, as the cluster's Deployment). Yields its gRPC URL and its HTTP URL."""
    from avfleet.serve.tritonserver import distribution

    if not (distribution()[0] / "bin" / "tritonserver").exists():
        pytest.skip("PyTriton's bundled tritonserver is not installed")
    http, grpc, metrics = free_port(), free_port(), free_port()
    args = [sys.executable, "-m", "avfleet", "tritonserver",
            "--backends-dir", str(workdir / "backends"), "--",
            f"--model-repository={repo}", "--model-control-mode=explicit",
            *(["--load-model=*"] if load_all else []), "--strict-readiness=true",
            "--http-address=127.0.0.1", f"--http-port={http}",
            "--grpc-address=127.0.0.1", f"--grpc-port={grpc}",
            "--metrics-address=127.0.0.1", f"--metrics-port={metrics}"]  # fmt: skip
    with open(workdir / "tritonserver.log", "w") as log:
        proc = subprocess.Popen(
            args, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            import tritonclient.grpc as g

            client = g.InferenceServerClient(f"127.0.0.1:{grpc}")
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.is_server_ready():
                        break
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
                assert proc.poll() is None, (workdir / "tritonserver.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "tritonserver was not ready in 60 s"
                time.sleep(0.3)
            yield f"grpc://127.0.0.1:{grpc}", f"http://127.0.0.1:{http}"
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
    with tritonserver(repo, tmp_path, load_all=False) as (url, _):
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


def publish_graph(repo: str, seed: int, config=None) -> int:  # noqa: ANN001
    """A random scoring graph of two members as the next version, for Triton's CPU instances."""
    import torch

    from avfleet.serve.graph import ScoringGraph, export_onnx
    from avfleet.train.models import build, default_arch

    torch.manual_seed(seed)
    onnx = export_onnx(ScoringGraph(build(default_arch(), members=2)), 64, 128)
    return R.publish(repo, "dpe", onnx, {}, num_classes=NUM_CLASSES, height=64, width=128,
                     serving=R.ServingConfig(kind="KIND_CPU"), config=config)  # fmt: skip


def assert_served_as_in_process(urls: tuple[str, str], repo: str, ref: str, config=None) -> None:  # noqa: ANN001
    """Scores through Triton (gRPC and HTTP, batches the dynamic batcher merges and splits)
    equal ONNX Runtime in process on the same version's model.onnx."""
    from avfleet.mining.job import InProcessScorer
    from avfleet.serve.client import TritonClientConfig, TritonScorer
    from avfleet.serve.outputs import OUTPUTS

    reference = InProcessScorer(R.load_version(repo, ref, config).onnx)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 255, (n, 64, 128, 3), dtype=np.uint8) for n in (16, 7, 1, 32)]
    want = list(reference.score_batches(batches))
    for url in urls:
        served = TritonScorer(TritonClientConfig(url=url, model=ref))
        served.wait_ready()
        for got, ref_out in zip(served.score_batches(batches), want, strict=True):
            for name in OUTPUTS:
                assert got[name].shape == ref_out[name].shape, (url, name)
                np.testing.assert_allclose(got[name], ref_out[name], rtol=0, atol=1e-6)


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_the_scoring_graph_is_served_by_the_onnxruntime_backend(tmp_path, monkeypatch, where):
    """The repository exactly as publish-model writes it (`backend: "onnxruntime"`), served by
    Triton's own server with avfleet's Python-based ONNX Runtime backend: what the local
    overlay's Triton pod runs. Then a new version, loaded through the load API."""
    env, config = {}, None
    repo = str(tmp_path / "repo")
    server = contextlib.nullcontext()
    if where == "s3":
        from moto.server import ThreadedMotoServer

        from avfleet.core import storage

        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
        server.start()
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "eu-west-1"}  # fmt: skip
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        config = storage.StorageConfig(s3_endpoint_url=f"http://127.0.0.1:{port}",
                                       s3_region="eu-west-1")  # fmt: skip
        storage.filesystem("s3://models", config).mkdir("models")
        repo = "s3://models/triton"
    try:
        assert publish_graph(repo, seed=0, config=config) == 1
        # Triton's S3 client takes a store's endpoint from the URL only
        served = repo if where == "folder" else f"s3://http://127.0.0.1:{port}/models/triton"
        with tritonserver(served, tmp_path, env) as urls:
            assert_served_as_in_process(urls, repo, "dpe:1", config)
            assert publish_graph(repo, seed=1, config=config) == 2
            load_model(urls[0], "dpe")
            assert_served_as_in_process(urls, repo, "dpe:2", config)
    finally:
        if where == "s3":
            server.stop()


def test_tritonserver_keeps_its_backend_directory(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "avfleet", "tritonserver", "--", "--backend-directory=/tmp/x",
         f"--model-repository={tmp_path}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0
    assert "--backend-directory is avfleet's to set" in done.stderr
