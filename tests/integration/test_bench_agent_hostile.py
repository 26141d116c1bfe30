"""Hostile traffic at a running bench agent: every request gets an answer, /healthz keeps answering.

Each case is one finding of the security review (docs/security.md): stalled
connections, malformed lengths and bodies, unbounded counts, URIs outside the
agent's prefixes, a zip-bomb bundle, fetching while busy, jobs that never end,
and job results that were never forgotten.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

from avfleet.bench.agent import AgentConfig, serve
from avfleet.core.net import free_port

pytestmark = pytest.mark.integration

TOKEN = "hostile-test-token-0123456789"
SLOTS = 8
DEADLINE_S = 2.0


@pytest.fixture
def agent(release, tmp_path):
    config = AgentConfig(
        token=TOKEN,
        cache_uri=str(tmp_path / "cache"),
        port=free_port(),
        read_prefixes=(str(release),),
        max_connections=SLOTS,
        io_timeout_s=1.0,
        request_deadline_s=DEADLINE_S,
        job_timeout_s=1.0,  # the longest job the bounds allow runs ~3 s on a fast core
        job_retention_s=1.0,
    )
    server = serve(config)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield config.port, release
    server.shutdown()
    server.server_close()


def raw(port: int, data: bytes, timeout: float = 5.0) -> tuple[int, dict]:
    """Send raw bytes, read the whole answer: (status, JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def request(port: int, method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: bench", f"Authorization: Bearer {TOKEN}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def post(port: int, doc: object) -> tuple[int, dict]:
    body = json.dumps(doc).encode()
    return raw(port, request(port, "POST", "/v1/jobs", body, Content_Length=str(len(body))))


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict]:
    return raw(port, request(port, method, path))


def healthz(port: int) -> tuple[int, float]:
    started = time.monotonic()
    try:
        code, _ = raw(port, b"GET /healthz HTTP/1.0\r\n\r\n", timeout=2.0)
    except OSError:
        code = 0
    return code, time.monotonic() - started


def test_stalled_connections_cost_a_slot_for_a_bounded_time(agent):
    port, _ = agent
    before = threading.active_count()
    stalled = []
    for _ in range(151):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /v1/jobs HTTP/1.1\r\nContent-Length: 100\r\n")  # and never more
        stalled.append(s)
    try:
        probes = []
        started = time.monotonic()
        while time.monotonic() - started < DEADLINE_S + 2.0:
            probes.append(healthz(port))
            time.sleep(0.1)
        # Every probe got an answer within a bound (503 while the slots were full) ...
        assert all(code in (200, 503) and took < 1.0 for code, took in probes), probes
        # ... and /healthz was itself again once the stalled clients' deadline passed.
        assert probes[-1][0] == 200
        assert threading.active_count() <= before + 2 * SLOTS + 2  # a thread and timer per slot
    finally:
        for s in stalled:
            s.close()


@pytest.mark.parametrize(
    ("length", "body", "code", "says"),
    [
        ("-1", b"{}", 400, "non-negative decimal integer"),
        ("12abc", b"{}", 400, "non-negative decimal integer"),
        ("99999999999", b"{}", 400, "non-negative decimal integer"),
        (str(1 << 20), b"", 413, "request over"),
        ("4", b"\xff\xfe{}", 400, "not UTF-8"),
        (None, b"", 411, "Content-Length is required"),
    ],
)
def test_malformed_lengths_and_bodies_get_a_4xx(agent, length, body, code, says):
    port, _ = agent
    headers = {} if length is None else {"Content_Length": length}
    got, doc = raw(port, request(port, "POST", "/v1/jobs", body, **headers))
    assert got == code and says in doc["error"]
    assert healthz(port)[0] == 200


def test_deep_nesting_and_unbounded_counts_are_refused(agent):
    port, release = agent
    deep = b"[" * 30_000 + b"]" * 30_000  # under the 64 KiB cap
    code, doc = raw(port, request(port, "POST", "/v1/jobs", deep, Content_Length=str(len(deep))))
    assert code == 400 and "nests deeper" in doc["error"]
    job = {"model_uri": f"{release}/model.onnx", "bundle_uri": f"{release}/bundle.npz"}
    for field, value in [("runs", True), ("runs", 10**8), ("runs", 1e8), ("batch", 65),
                         ("warmup", -1), ("warmup", 10**6)]:  # fmt: skip
        code, doc = post(port, {**job, field: value})
        assert code == 400 and field in doc["error"], (field, value, doc)


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:1/model.onnx",
        "simplecache::http://127.0.0.1:1/model.onnx",
        "/dev/zero",
        "file:///etc/passwd",
        "{release}/../../../etc/passwd",
        "{release}/missing.onnx",
        "s3://somebody-elses-bucket/model.onnx",
        "memory://model.onnx",
    ],
)
def test_uris_outside_the_prefixes_are_refused_alike(agent, uri):
    port, release = agent
    uri = uri.format(release=release)
    code, doc = post(port, {"model_uri": uri, "bundle_uri": f"{release}/bundle.npz"})
    if uri.endswith("missing.onnx"):  # allowed, absent: the same words whether absent or not
        assert code == 422 and doc["error"] == (
            "model_uri is missing, unreadable or over 536870912 bytes"
        )
    else:
        assert code == 403 and doc["error"] == (
            "model_uri is not under a location this bench reads from"
        )


def test_a_zip_bomb_bundle_is_refused_before_inflating(agent):
    port, release = agent
    buf = io.BytesIO()
    np.savez_compressed(buf, frames_NHWC=np.zeros((600, 1024, 1024), np.uint8))  # 600 MiB
    (release / "bomb.npz").write_bytes(buf.getvalue())
    assert len(buf.getvalue()) < 1 << 20
    code, doc = post(
        port, {"model_uri": f"{release}/model.onnx", "bundle_uri": f"{release}/bomb.npz"}
    )
    assert code == 422 and "unpacks to more than" in doc["error"]


def wait_state(port: int, job_id: str, bound_s: float) -> dict:
    deadline = time.monotonic() + bound_s
    while (doc := get(port, f"/v1/jobs/{job_id}")[1])["state"] in ("running", "cancelling"):
        assert time.monotonic() < deadline, doc
        time.sleep(0.05)
    return doc


def test_busy_is_answered_before_fetching_and_jobs_end_by_cancel_or_time_limit(agent):
    port, release = agent
    job = {"model_uri": f"{release}/model.onnx", "bundle_uri": f"{release}/bundle.npz"}
    code, doc = post(port, {**job, "runs": 10_000, "warmup": 1000, "batch": 64})
    assert code == 202
    long_id = doc["job_id"]
    # A second job naming a missing model: 409, not "missing": nothing was fetched.
    code, doc = post(port, {**job, "model_uri": f"{release}/missing.onnx"})
    assert code == 409 and "one job at a time" in doc["error"]
    assert get(port, f"/v1/jobs/{long_id}", "DELETE")[0] == 202
    assert wait_state(port, long_id, 2.0)["state"] == "cancelled"
    # The bench is free again; the next long job stops at its time limit with the reason.
    code, doc = post(port, {**job, "runs": 10_000, "warmup": 999, "batch": 64})
    assert code == 202
    ended = wait_state(port, doc["job_id"], 6.0)
    assert ended["state"] == "failed" and "time limit of 1 s" in ended["error"]
    # Finished jobs are forgotten after the retention period.
    time.sleep(1.1)
    assert get(port, f"/v1/jobs/{doc['job_id']}")[0] == 404
    assert healthz(port)[0] == 200


def test_https_bench_is_verified_against_its_ca(release, tmp_path):
    from avfleet.bench.client import BenchClient, BenchUnavailable

    cert, key = tmp_path / "bench.pem", tmp_path / "bench.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],  # fmt: skip
        check=True,
        capture_output=True,
    )
    config = AgentConfig(
        token=TOKEN,
        cache_uri=str(tmp_path / "cache"),
        port=free_port(),
        read_prefixes=(str(release),),
        tls_cert=str(cert),
        tls_key=str(key),
    )
    server = serve(config)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        address = f"https://127.0.0.1:{config.port}"
        assert BenchClient(address, TOKEN, ca_file=str(cert)).health()["status"] == "ok"
        with pytest.raises(BenchUnavailable):  # not signed by a CA the client trusts
            BenchClient(address, TOKEN, ca_file=None).health()
        with pytest.raises(BenchUnavailable):  # plain HTTP to an HTTPS bench: no answer
            BenchClient(f"http://127.0.0.1:{config.port}", TOKEN, timeout_s=2).health()
    finally:
        server.shutdown()
        server.server_close()
