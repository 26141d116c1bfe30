"""One machine's Triton: the real tritonserver bundled with PyTriton, serving repository versions.

In the cluster, Triton's own ONNX Runtime backend loads model.onnx from the
model repository (manifests/base/triton/). Here PyTriton starts the same server
binary (HTTP, gRPC, dynamic batching, readiness, metrics) and hands each
batch to ONNX Runtime running that same model.onnx, so a client cannot tell
the two apart: same model name and version, same inputs and outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from avfleet.core.net import free_port
from avfleet.serve.client import TritonClientConfig, TritonScorer
from avfleet.serve.outputs import OUTPUTS, SCORES
from avfleet.serve.repository import ModelVersion, ServingConfig, load_version

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LocalServerConfig:
    repo_uri: str
    """Triton model repository."""
    models: tuple[str, ...]
    """NAME:VERSION refs to serve (NAME alone: the newest version)."""
    http_port: int = 8000
    """Triton's HTTP/REST port."""
    grpc_port: int = 8001
    """Triton's gRPC port."""
    metrics_port: int = 8002
    """Triton's Prometheus metrics port (/metrics)."""
    threads: int = 2
    """ONNX Runtime intra-op threads per model."""
    serving: ServingConfig = ServingConfig(kind="KIND_CPU")
    """Where the models run (instance kind and count)."""
    workspace: str | None = None
    """PyTriton's workspace folder; None: a temporary one."""
    access_token: str | None = None
    """Token for Triton's restricted endpoints (model repository, statistics, shared memory,
    trace, logging): a client sends it as the triton-access-token header. None: PyTriton makes
    one no client knows, so only inference and health are reachable."""


def _infer_func(model: ModelVersion, threads: int) -> Any:
    from pytriton.decorators import batch

    from avfleet.bench.engines import ort_session

    session = ort_session(model.onnx, threads=threads)

    @batch
    def infer(frames: np.ndarray) -> dict[str, np.ndarray]:
        outs = session.run(list(OUTPUTS), {"frames": frames})
        result = dict(zip(OUTPUTS, outs, strict=True))
        for name in SCORES:  # per-frame scalars travel as (N, 1), as config.pbtxt declares
            result[name] = result[name].reshape(-1, 1)
        return result

    return infer


def _fix_stub_libpython() -> None:
    """Triton's Python stub must load this interpreter's libpython, not another one on the system."""
    from avfleet.serve.tritonserver import prepend, stub_libdir

    os.environ["LD_LIBRARY_PATH"] = prepend(os.environ.get("LD_LIBRARY_PATH", ""), stub_libdir())


class LocalTriton:
    """Context manager: a running Triton server with each requested version bound and ready."""

    def __init__(self, config: LocalServerConfig) -> None:
        self.config = config
        self._triton: Any = None
        self.versions: list[ModelVersion] = []

    def __enter__(self) -> LocalTriton:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

        _fix_stub_libpython()
        c = self.config
        self._triton = Triton(
            config=TritonConfig(
                http_port=c.http_port,
                grpc_port=c.grpc_port,
                metrics_port=c.metrics_port,
                exit_timeout_secs=5,
            ),
            workspace=c.workspace,
            security_config=TritonSecurityConfig(access_token=c.access_token),
        )
        for ref in c.models:
            model = load_version(c.repo_uri, ref)
            height, width, _ = model.info["frame_shape"]
            classes = int(model.info["num_classes"])
            self._triton.bind(
                model_name=model.name,
                model_version=model.version,
                infer_func=_infer_func(model, c.threads),
                inputs=[Tensor(name="frames", dtype=np.uint8, shape=(height, width, 3))],
                outputs=[
                    *(Tensor(name=s, dtype=np.float32, shape=(1,)) for s in SCORES),
                    Tensor(name="class_probability", dtype=np.float32, shape=(classes,)),
                ],
                config=ModelConfig(
                    max_batch_size=c.serving.max_batch_size,
                    batcher=DynamicBatcher(
                        max_queue_delay_microseconds=c.serving.max_queue_delay_us,
                        preferred_batch_size=list(c.serving.preferred_batch_sizes),
                    ),
                ),
                strict=True,
            )
            self.versions.append(model)
            log.info("serving %s:%d", model.name, model.version)
        self._triton.run()
        return self

    def serve_forever(self) -> None:
        self._triton.serve()

    def __exit__(self, *exc: object) -> None:
        if self._triton is not None:
            self._triton.stop()
            self._triton = None


ACCESS_TOKEN_ENV = "AVFLEET_TRITON_ACCESS_TOKEN"
"""`avfleet serve` takes the restricted endpoints' token from here (not a flag: command lines
are readable by every user of the machine)."""


@contextlib.contextmanager
def local_triton(
    repo: str,
    model_ref: str,
    max_in_flight: int = 4,
    metrics_port: int = 0,
    access_token: str | None = None,
) -> Iterator[TritonScorer]:
    """`avfleet serve` in a child process; a ready client scorer; the server stopped after.
    Triton's metrics are served on `metrics_port` (0: any free port); `access_token` opens its
    restricted endpoints (statistics, model repository) to whoever holds it, e.g. perf_analyzer."""
    ports = [free_port(), free_port(), metrics_port or free_port()]
    cmd = [sys.executable, "-m", "avfleet", "serve", "--repo", repo, "--model", model_ref]
    cmd += ["--http-port", str(ports[0]), "--grpc-port", str(ports[1])]
    cmd += ["--metrics-port", str(ports[2])]
    env = dict(os.environ)
    env.pop(ACCESS_TOKEN_ENV, None)
    if access_token:
        env[ACCESS_TOKEN_ENV] = access_token
    server = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    try:
        scorer = TritonScorer(
            TritonClientConfig(
                url=f"grpc://127.0.0.1:{ports[1]}", model=model_ref, max_in_flight=max_in_flight
            )
        )
        scorer.wait_ready()
        yield scorer
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
