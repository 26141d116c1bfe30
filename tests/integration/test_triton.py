"""A real Triton server (PyTriton's tritonserver, started as `avfleet serve`) and the client adapter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from avfleet.core.errors import PermanentError, TransientError
from avfleet.serve.client import TritonClientConfig, TritonScorer
from avfleet.serve.graph import OUTPUTS, ScoringGraph, export_onnx, score_in_process
from avfleet.serve.repository import publish
from avfleet.taxonomy import NUM_CLASSES
from avfleet.train.models import build, default_arch
from tests.integration.conftest import free_port

H, W = 32, 64


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(graph, ports, server process) for a 4-member ensemble published as dpe-scorer:1."""
    torch.manual_seed(0)
    graph = ScoringGraph(build(default_arch(), members=4))
    repo = str(tmp_path_factory.mktemp("repo"))
    publish(
        repo, "dpe-scorer", export_onnx(graph, H, W), {}, num_classes=NUM_CLASSES, height=H, width=W
    )
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    proc = start_server(repo, ports)
    yield graph, ports, proc
    stop(proc)


def start_server(repo: str, ports: dict, model: str = "dpe-scorer:1") -> subprocess.Popen:
    cmd = [sys.executable, "-m", "avfleet", "serve", "--repo", repo, "--model", model]
    cmd += ["--http-port", str(ports["http"]), "--grpc-port", str(ports["grpc"])]
    cmd += ["--metrics-port", str(ports["metrics"])]
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, H, W, 3), dtype=np.uint8)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_scores_match_in_process_and_rank_the_same(served, protocol):
    graph, ports, _ = served
    scorer = TritonScorer(
        TritonClientConfig(url=f"{protocol}://127.0.0.1:{ports[protocol]}", model="dpe-scorer:1")
    )
    scorer.wait_ready()
    batches = [frames(16, seed) for seed in range(6)]
    got = list(scorer.score_batches(batches))  # 4 in flight, results in order
    for batch, out in zip(batches, got, strict=True):
        ref = score_in_process(graph, batch)
        for name in OUTPUTS:
            assert np.allclose(out[name], ref[name], atol=1e-5, rtol=1e-5), name
        # Same ranking, up to ties: the served order, read off the in-process
        # scores, never goes up by more than the float tolerance.
        order = np.argsort(-out["mutual_information"], kind="stable")
        ranked = ref["mutual_information"][order]
        assert np.all(np.diff(ranked) <= 1e-5), ranked
    assert scorer.requests == 6 and scorer.retried == 0


def test_a_malformed_batch_is_permanent(served):
    _, ports, _ = served
    scorer = TritonScorer(
        TritonClientConfig(url=f"grpc://127.0.0.1:{ports['grpc']}", model="dpe-scorer:1")
    )
    bad = np.zeros((2, H + 1, W, 3), dtype=np.uint8)
    with pytest.raises(PermanentError, match="refused"):
        scorer.score(bad)
    assert scorer.retried == 0


def test_killed_server_is_retried_then_transient(served, tmp_path):
    _, ports, proc = served
    config = TritonClientConfig(
        url=f"http://127.0.0.1:{ports['http']}",
        model="dpe-scorer:1",
        retries=2,
        backoff_s=0.2,
        timeout_s=5.0,
    )
    scorer = TritonScorer(config)
    scorer.wait_ready()
    stop(proc)  # the server dies mid-run
    started = time.monotonic()
    with pytest.raises(TransientError, match="unavailable after 3 attempts"):
        scorer.score(frames(4))
    assert scorer.retried == 2 and time.monotonic() - started >= 0.6  # backoff 0.2 + 0.4
    with pytest.raises(TransientError, match="not ready"):
        TritonScorer(TritonClientConfig(**{**config.__dict__, "ready_timeout_s": 1.0})).wait_ready()
