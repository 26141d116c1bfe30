"""Triton adapter over tritonclient (gRPC or HTTP): readiness, timeouts, bounded retries, batches in flight.

Only unavailability is retried (connection refused or reset, gRPC
UNAVAILABLE, HTTP 502/503/504, timeouts), with exponential backoff; after the
last retry it becomes `TransientError` (exit 75: the step is retried later).
Anything else the server answers (a wrong input shape, an unknown model) is
permanent and raised at once. Up to `max_in_flight` batches are in flight,
each on its own thread with its own client (tritonclient's clients are not
shared across threads); results come back in submission order.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from avfleet.core.errors import ConfigError, PermanentError, TransientError
from avfleet.serve.outputs import OUTPUTS, SCORES
from avfleet.serve.repository import parse_ref

log = logging.getLogger(__name__)

_UNAVAILABLE_STATUS = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "502", "503", "504")


@dataclasses.dataclass(frozen=True)
class TritonClientConfig:
    url: str
    """grpc://HOST:PORT or http://HOST:PORT."""
    model: str
    """NAME:VERSION."""
    timeout_s: float = 30.0
    """Per request."""
    ready_timeout_s: float = 60.0
    """How long to wait for the server and the model version to be ready."""
    retries: int = 4
    backoff_s: float = 0.5
    """First retry delay; doubles each time."""
    max_in_flight: int = 4

    def __post_init__(self) -> None:
        if not self.url.startswith(("grpc://", "http://")):
            raise ConfigError(
                "triton_url", f"{self.url!r}: expected grpc://HOST:PORT or http://HOST:PORT"
            )
        name, version = parse_ref(self.model)
        if version is None:
            raise ConfigError("model", f"{self.model!r}: mining pins a version, NAME:VERSION")


def _connect(tc: Any, protocol: str, address: str, timeout_s: float) -> Any:
    """A tritonclient client (tc: tritonclient.grpc or .http); HTTP takes its timeouts here,
    gRPC per call."""
    timeouts = (
        {}
        if protocol == "grpc"
        else {"connection_timeout": timeout_s, "network_timeout": timeout_s}
    )
    return tc.InferenceServerClient(address, **timeouts)


def is_unavailable(error: BaseException) -> bool:
    """True for failures that may pass: the server is down, restarting or overloaded."""
    if isinstance(error, OSError):  # ConnectionError and TimeoutError among them
        return True
    status = getattr(error, "status", None)
    text = str(status() if callable(status) else status or "") + " " + str(error)
    if any(s in text for s in _UNAVAILABLE_STATUS):
        return True
    # Transport errors of geventhttpclient (HTTP) surface as their own types, e.g.
    # HTTPConnectionClosed when the server dies between or during requests.
    names = [t.__name__.lower() for t in type(error).__mro__]
    return any("connection" in n or "timeout" in n for n in names) or any(
        s in text.lower() for s in ("connection closed", "connection refused", "broken pipe")
    )


class TritonScorer:
    """Scores uint8 frame batches (N, H, W, 3) on a Triton server; returns OUTPUTS as numpy."""

    def __init__(self, config: TritonClientConfig) -> None:
        self.config = config
        self.name, version = parse_ref(config.model)
        self.version = str(version)
        self.protocol, self.address = config.url.split("://", 1)
        self._tc = importlib.import_module(f"tritonclient.{self.protocol}")  # grpc or http
        self._local = threading.local()
        self.requests = 0
        self.retried = 0
        self.latencies_s: list[float] = []
        self._lock = threading.Lock()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = _connect(self._tc, self.protocol, self.address, self.config.timeout_s)
            self._local.client = client
        return client

    def _reset_client(self) -> None:
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
                pass

    def wait_ready(self) -> None:
        """Until the server is live and the model version ready; TransientError after ready_timeout_s."""
        deadline = time.monotonic() + self.config.ready_timeout_s
        last: BaseException | None = None
        while time.monotonic() < deadline:
            try:
                client = self._client()
                if client.is_server_ready() and client.is_model_ready(self.name, self.version):
                    return
                last = None
            except Exception as e:  # noqa: BLE001 - not up yet: keep polling until the deadline
                last = e
                self._reset_client()
            time.sleep(0.5)
        raise TransientError(
            f"Triton at {self.config.url}: model {self.name}:{self.version} not ready after "
            f"{self.config.ready_timeout_s:.0f} s{f' ({last})' if last else ''}"
        )

    def _infer_once(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        tc = self._tc
        inp = tc.InferInput("frames", list(frames.shape), "UINT8")
        inp.set_data_from_numpy(np.ascontiguousarray(frames, dtype=np.uint8))
        outputs = [tc.InferRequestedOutput(o) for o in OUTPUTS]
        kwargs = {"client_timeout": self.config.timeout_s} if self.protocol == "grpc" else {}
        result = self._client().infer(
            self.name, [inp], model_version=self.version, outputs=outputs, **kwargs
        )
        out = {o: result.as_numpy(o) for o in OUTPUTS}
        for s in SCORES:
            out[s] = out[s].reshape(-1)
        return out

    def score(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """One batch, retried on unavailability with exponential backoff."""
        delay = self.config.backoff_s
        for attempt in range(self.config.retries + 1):
            started = time.perf_counter()
            try:
                out = self._infer_once(frames)
            except Exception as e:
                if not is_unavailable(e):
                    raise PermanentError(
                        f"Triton refused a batch of {len(frames)} frames: {e}"
                    ) from e
                self._reset_client()
                if attempt == self.config.retries:
                    raise TransientError(
                        f"Triton at {self.config.url} unavailable after {attempt + 1} attempts: {e}"
                    ) from e
                with self._lock:
                    self.retried += 1
                log.warning("Triton unavailable (%s); retry %d in %.1f s", e, attempt + 1, delay)
                time.sleep(delay)
                delay *= 2
                continue
            with self._lock:
                self.requests += 1
                self.latencies_s.append(time.perf_counter() - started)
            return out
        raise AssertionError("unreachable")

    def score_batches(self, batches: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """Scores each batch with up to max_in_flight requests outstanding, in submission order."""
        window = self.config.max_in_flight
        with concurrent.futures.ThreadPoolExecutor(window, thread_name_prefix="triton") as pool:
            pending: list[concurrent.futures.Future] = []
            for batch in batches:
                pending.append(pool.submit(self.score, batch))
                if len(pending) >= window:
                    yield pending.pop(0).result()
            for future in pending:
                yield future.result()


def load_model(url: str, name: str, timeout_s: float = 120.0) -> None:
    """Ask the Triton at `url` (explicit model-control mode) to load `name` as its repository's
    config.pbtxt now says: the versions its policy names, warmed up. Triton swaps versions
    without dropping requests to those it keeps. TransientError when the server is
    unreachable; PermanentError when it refuses the model (its message says why)."""
    if not url.startswith(("grpc://", "http://")):
        raise ConfigError("triton_url", f"{url!r}: expected grpc://HOST:PORT or http://HOST:PORT")
    protocol, address = url.split("://", 1)
    client = _connect(
        importlib.import_module(f"tritonclient.{protocol}"), protocol, address, timeout_s
    )
    try:
        if protocol == "grpc":
            client.load_model(name, client_timeout=timeout_s)
        else:
            client.load_model(name)
    except Exception as e:
        if is_unavailable(e):
            raise TransientError(f"Triton at {url}: loading {name} failed: {e}") from e
        raise PermanentError(f"Triton at {url} refused to load {name}: {e}") from e
    finally:
        client.close()
    log.info("Triton at %s loaded %s", url, name)
