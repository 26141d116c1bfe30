"""The bench agent: a small HTTP service on a bench device that builds, runs and measures engines.

On a Xavier it runs in the bench image (images/bench.Dockerfile) with the
TensorRT runtime on JetPack 5's own Python 3.8 (its TensorRT bindings exist for
no other), started by `python3 -m avfleet.bench.agent_main`: that module and
everything it imports stay runnable there (tests/unit/test_images.py checks them with vermin). On this
machine it runs on localhost with ONNX Runtime (`avfleet bench agent`, the same
arguments).

    GET  /healthz           liveness and what this bench is (no token: probes and the operator)
    POST /v1/jobs           {"model_uri", "bundle_uri", "precision", "warmup", "runs", "batch"}
                            -> 202 {"job_id"}; 409 while another job runs (one at a time)
    POST /v1/profile        {"units": [unit, ...]} -> 202 {"job_id"}: measure operator units
                            (avfleet.bench.profile) for a latency lookup table; the report
                            holds {"bench", "entries": [{"unit", "ms", "blocked_in",
                            "blocked_out"}], "measured"}; units already in the bench's cache
                            are not measured again
    GET  /v1/jobs/<job_id>  -> {"state": running|succeeded|failed|cancelled, "report" | "error"}
    DELETE /v1/jobs/<job_id> -> 202 while it stops (cancelled), 200 when it had finished

Every /v1 call needs `Authorization: Bearer <token>` (401 otherwise). A request
that is not JSON, lacks a field, or names a model that is not a valid ONNX
model, or a bundle that does not load, gets a 4xx naming what was wrong, before
any job starts; the agent keeps serving. A job's id is the hash of what it
measures, so a caller that retries a submission gets the same job, not a
second one.

Hostile callers (docs/security.md): connections are bounded in number and time
(avfleet.bench.wire); bodies are parsed strictly; numbers are bounded; models
and bundles are read only under the prefixes the agent was started with, within
size caps, after the busy check (avfleet.bench.policy); a job stops at its time
limit or on DELETE; finished jobs are forgotten after a retention period.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import http.server
import json
import logging
import threading
import time
import traceback

from avfleet.bench.engines import (
    EngineSpec,
    build_engine,
    check_model,
    load_runner,
    runtime_version,
)
from avfleet.bench.measure import Bundle, load_bundle, measure, to_input
from avfleet.bench.policy import Forbidden, ReadPolicy
from avfleet.bench.profile import BadUnit, bench_id, cached_profile, check_unit, unit_key
from avfleet.bench.wire import BoundedServer, HttpError, read_json
from avfleet.core import storage
from avfleet.core.errors import AvfleetError, ConfigError, PermanentError

log = logging.getLogger("avfleet.bench")

MAX_BODY_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    token: str
    """Shared secret callers present as `Authorization: Bearer <token>`."""
    cache_uri: str
    """Engine cache on the device (engines are built once per model, precision and runtime)."""
    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = 8470
    """Port to listen on."""
    runtime: str = "onnxruntime"
    """onnxruntime (CPU) or tensorrt (Jetson / GPU)."""
    target: str = ""
    """The bench's name for what it runs on, e.g. xavier-agx-jp5; '' = this machine."""
    threads: int = 1
    """Inference threads (ONNX Runtime intra-op)."""
    storage: storage.StorageConfig = storage.StorageConfig()
    read_prefixes: tuple[str, ...] = ()
    """Where models and bundles may come from (e.g. s3://avfleet-releases/); nothing else is read."""
    max_connections: int = 32
    """Connections served at once; one more gets 503 at once."""
    io_timeout_s: float = 10.0
    """Longest wait for one read or write on a connection."""
    request_deadline_s: float = 30.0
    """Longest a connection may take from accept to the end of its reply."""
    job_timeout_s: float = 1800.0
    """A job still running after this fails with the reason (the bench is free again)."""
    job_retention_s: float = 3600.0
    """Finished jobs are forgotten this long after they end (404 afterwards)."""
    tls_cert: str = ""
    """PEM certificate (chain) to serve HTTPS with; '' serves plain HTTP (a lab network only)."""
    tls_key: str = ""

    def __post_init__(self) -> None:
        if len(self.token) < 16:
            raise ConfigError("token", "must be at least 16 characters")
        if not self.read_prefixes:
            raise ConfigError("read_prefixes", "name at least one prefix models are read from")
        for name in ("max_connections", "io_timeout_s", "request_deadline_s", "job_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, "must be positive")

    @property
    def policy(self) -> ReadPolicy:
        return ReadPolicy(prefixes=self.read_prefixes)


class BadRequest(PermanentError):
    """The request itself is wrong (400); a model or bundle that does not load is a 422."""


class JobStopped(PermanentError):
    """A job ran past its time limit or was cancelled."""


LIMITS = {"warmup": (0, 1000), "runs": (1, 10_000), "batch": (1, 64)}
"""Bounds of a job's counts: enough for p99 at batch 64, never a bench locked for hours."""


@dataclasses.dataclass(frozen=True)
class JobRequest:
    model_uri: str
    bundle_uri: str
    precision: str = "fp32"
    warmup: int = 20
    runs: int = 200
    batch: int = 1

    @classmethod
    def parse(cls, doc: object) -> JobRequest:
        if not isinstance(doc, dict):
            raise BadRequest("the request body must be a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - set(fields))
        if unknown:
            raise BadRequest(f"unknown request fields {unknown} (known: {sorted(fields)})")
        for name in ("model_uri", "bundle_uri"):
            if not isinstance(doc.get(name), str) or not doc[name]:
                raise BadRequest(f"request field {name!r} is required (a URI)")
            if len(doc[name]) > 2048:
                raise BadRequest(f"request field {name!r} is longer than 2048 characters")
        if not isinstance(doc.get("precision", "fp32"), str):
            raise BadRequest("request field 'precision' must be a string")
        for name, (low, high) in LIMITS.items():
            value = doc.get(name, fields[name].default)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise BadRequest(f"request field {name!r} must be an integer in [{low}, {high}]")
        return cls(**doc)

    def key(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


MAX_PROFILE_UNITS = 4096
MAX_PROFILE_BODY_BYTES = 1 << 20  # a pruning grid is ~1,500 units of ~150 bytes


@dataclasses.dataclass(frozen=True)
class ProfileRequest:
    units: tuple[dict, ...]

    @classmethod
    def parse(cls, doc: object) -> ProfileRequest:
        if not isinstance(doc, dict):
            raise BadRequest("the request body must be a JSON object")
        unknown = sorted(set(doc) - {"units"})
        if unknown:
            raise BadRequest(f"unknown request fields {unknown} (known: ['units'])")
        units = doc.get("units")
        if not isinstance(units, list) or not 1 <= len(units) <= MAX_PROFILE_UNITS:
            raise BadRequest(
                f"request field 'units' must be a list of 1 to {MAX_PROFILE_UNITS} units"
            )
        checked = {}
        for i, unit in enumerate(units):
            try:
                unit = check_unit(unit)
            except BadUnit as e:
                raise BadRequest(f"units[{i}]: {e}") from e
            checked[unit_key(unit)] = unit
        return cls(units=tuple(checked[k] for k in sorted(checked)))


class Agent:
    """The jobs of one bench: validation up front, then one job at a time on a worker thread."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.policy = config.policy
        self.version = runtime_version(config.runtime)
        self.target = EngineSpec(runtime=config.runtime, target=config.target).resolved_target
        self.jobs: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.running: str | None = None
        self.running_request: str | None = None
        self.cancel: dict[str, threading.Event] = {}

    def health(self) -> dict:
        return {
            "status": "ok",
            "busy": self.running is not None,
            "target": self.target,
            "runtime": self.config.runtime,
            "runtime_version": self.version,
        }

    def submit(self, request: JobRequest) -> tuple[int, dict]:
        spec = EngineSpec(
            runtime=self.config.runtime, precision=request.precision, target=self.config.target
        )
        for field in ("model_uri", "bundle_uri"):  # 403 before anything else is learnt
            self.policy.check(field, getattr(request, field))
        with self.lock:  # busy: refused before fetching anything
            if self.running is not None:
                if self.running_request == request.key():
                    return 200, {"job_id": self.running, "state": "running"}
                return 409, {"error": f"busy with job {self.running}; one job at a time"}
        policy, st = self.policy, self.config.storage
        model = policy.read("model_uri", request.model_uri, policy.max_model_bytes, st)
        check_model(model)
        bundle_bytes = policy.read("bundle_uri", request.bundle_uri, policy.max_bundle_bytes, st)
        bundle = load_bundle(bundle_bytes, policy.max_bundle_unpacked_bytes)
        model_sha256 = hashlib.sha256(model).hexdigest()
        job_id = hashlib.sha256(
            b"|".join(
                [
                    model_sha256.encode(),
                    hashlib.sha256(bundle_bytes).hexdigest().encode(),
                    json.dumps(dataclasses.asdict(spec), sort_keys=True).encode(),
                    f"{request.warmup}|{request.runs}|{request.batch}".encode(),
                ]
            )
        ).hexdigest()[:20]
        refused = self._start(
            job_id, request.key(), self._validate, model, model_sha256, bundle, spec, request
        )
        return refused or (202, {"job_id": job_id, "state": "running"})

    def _start(
        self, job_id: str, request_key: str, work: object, *args: object
    ) -> tuple[int, dict] | None:
        """Claim the bench for a job (None when it now runs), or the reply that says why not."""
        with self.lock:
            self._prune()
            if job_id in self.jobs and self.jobs[job_id]["state"] in ("running", "succeeded"):
                return 200, {"job_id": job_id, "state": self.jobs[job_id]["state"]}
            if self.running is not None:
                return 409, {"error": f"busy with job {self.running}; one job at a time"}
            self.running, self.running_request = job_id, request_key
            self.jobs[job_id] = {"state": "running", "started_at": _now()}
            self.cancel[job_id] = stop = threading.Event()
        deadline = time.monotonic() + self.config.job_timeout_s
        threading.Thread(
            target=self._guarded, args=(job_id, stop, deadline, work, *args), daemon=True
        ).start()
        return None

    def _prune(self) -> None:
        """Forget finished jobs older than the retention period (under the lock)."""
        now = time.monotonic()
        for job_id in [
            j
            for j, doc in self.jobs.items()
            if doc["state"] != "running"
            and now - doc.get("ended", now) >= self.config.job_retention_s
        ]:
            del self.jobs[job_id]

    def submit_profile(self, request: ProfileRequest) -> tuple[int, dict]:
        bench = bench_id(self.config.runtime, self.version, self.target, self.config.threads)
        if self.config.runtime != "onnxruntime":
            raise BadRequest(
                f"profiling runs on onnxruntime benches; this one runs {self.config.runtime}"
            )
        job_id = (
            "p"
            + hashlib.sha256(
                "|".join([bench, *(unit_key(u) for u in request.units)]).encode()
            ).hexdigest()[:19]
        )
        refused = self._start(job_id, job_id, self._profile, bench, request)
        return refused or (202, {"job_id": job_id, "state": "running"})

    def _profile(self, job_id: str, check, bench: str, request: ProfileRequest) -> dict:  # noqa: ANN001
        found, measured = cached_profile(
            request.units,
            storage.join(self.config.cache_uri, "latency"),
            bench,
            threads=self.config.threads,
            config=self.config.storage,
            progress=_Checkpoints(check),  # the time limit and cancel act between chunks
        )
        return {
            "job_id": job_id,
            "bench": bench,
            "entries": [{"unit": u, **found[unit_key(u)]} for u in request.units],
            "measured": measured,
            "finished_at": _now(),
        }

    def _guarded(
        self,
        job_id: str,
        stop: threading.Event,
        deadline: float,
        work,
        *args: object,  # noqa: ANN001
    ) -> None:
        """Run a job's work: its report, or its error; the bench is free again either way."""
        limit = self.config.job_timeout_s

        def check() -> None:
            if stop.is_set():
                raise JobStopped("cancelled")
            if time.monotonic() > deadline:
                raise JobStopped(f"over the job time limit of {limit:.0f} s")

        try:
            result = {"state": "succeeded", "report": work(job_id, check, *args)}
        except JobStopped as e:
            state = "cancelled" if stop.is_set() else "failed"
            result = {"state": state, "error": str(e)}
        except AvfleetError as e:
            result = {"state": "failed", "error": str(e)}
        except Exception as e:  # noqa: BLE001 - a job's bug must not take the bench down
            log.error("job %s failed: %s", job_id, traceback.format_exc())
            result = {"state": "failed", "error": f"{type(e).__name__}: {e}"}
        with self.lock:
            self.jobs[job_id] = {**self.jobs[job_id], **result, "ended": time.monotonic()}
            self.cancel.pop(job_id, None)
            self.running = self.running_request = None

    def job(self, job_id: str) -> tuple[int, dict]:
        with self.lock:
            self._prune()
            doc = self.jobs.get(job_id)
        if doc is None:
            return 404, {"error": "no such job on this bench"}
        return 200, {"job_id": job_id, **{k: v for k, v in doc.items() if k != "ended"}}

    def cancel_job(self, job_id: str) -> tuple[int, dict]:
        """Stop a running job (202: it stops at its next check) or say how it ended (200)."""
        with self.lock:
            stop = self.cancel.get(job_id)
            if stop is not None:
                stop.set()
                return 202, {"job_id": job_id, "state": "cancelling"}
        return self.job(job_id)

    def _validate(
        self,
        job_id: str,
        check,  # noqa: ANN001
        model: bytes,
        model_sha256: str,
        bundle: Bundle,
        spec: EngineSpec,
        request: JobRequest,
    ) -> dict:
        engine = build_engine(
            model,
            spec,
            self.config.cache_uri,
            calibration_NCHW=to_input(bundle.calibration_NHWC),
            storage_config=self.config.storage,
        )
        check()
        runner = load_runner(engine, self.config.threads, self.config.storage)
        measured = measure(
            runner,
            bundle,
            warmup=request.warmup,
            runs=request.runs,
            batch=request.batch,
            check=check,
        )
        return {
            "job_id": job_id,
            "bench": self.target,
            "engine": {**engine.info, "cached": engine.cached, "model_sha256": model_sha256},
            **measured,
            "request": dataclasses.asdict(request),
            "finished_at": _now(),
        }


class _Checkpoints:
    """A progress sink that checks a job's stop conditions each time work advances."""

    def __init__(self, check) -> None:  # noqa: ANN001
        self.check = check

    def advance(self, amount: float = 1) -> None:
        self.check()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")  # noqa: UP017 - Python 3.8 on the bench


def make_handler(agent: Agent) -> type[http.server.BaseHTTPRequestHandler]:
    expected = f"Bearer {agent.config.token}".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "avfleet-bench/1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            log.debug("%s %s", self.address_string(), format % args)

        def _reply(self, code: int, doc: dict) -> None:
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if code >= 400:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self) -> bool:
            given = (self.headers.get("Authorization") or "").encode()
            if hmac.compare_digest(given, expected):
                return True
            self._reply(401, {"error": "missing or wrong bearer token"})
            return False

        def _answer(self, route) -> None:  # noqa: ANN001
            """Every request gets an answer: its route's, a 4xx naming the fault, or a 500."""
            try:
                self._reply(*route())
            except HttpError as e:
                self._reply(e.status, {"error": str(e)})
            except BadRequest as e:
                self._reply(400, {"error": str(e)})
            except Forbidden as e:
                self._reply(403, {"error": str(e)})
            except PermanentError as e:  # ConfigError (precision), Unreadable: nothing to retry
                self._reply(422, {"error": str(e)})
            except AvfleetError as e:  # storage unavailable: the caller may retry
                self._reply(503, {"error": str(e)})
            except (ConnectionError, TimeoutError, OSError):
                self.close_connection = True  # the client went away or stalled: nothing to say
            except Exception:  # noqa: BLE001 - a bug answers 500, the agent keeps serving
                log.error("request %s failed: %s", self.path, traceback.format_exc())
                self._reply(500, {"error": "internal error"})

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/healthz":
                return self._reply(200, agent.health())
            if not self.path.startswith("/v1/jobs/"):
                return self._reply(404, {"error": "no such route"})
            if not self._authorized():
                return None
            return self._answer(lambda: agent.job(self.path.removeprefix("/v1/jobs/")))

        def do_DELETE(self) -> None:  # noqa: N802
            if not self.path.startswith("/v1/jobs/"):
                return self._reply(404, {"error": "no such route"})
            if not self._authorized():
                return None
            return self._answer(lambda: agent.cancel_job(self.path.removeprefix("/v1/jobs/")))

        def do_POST(self) -> None:  # noqa: N802
            routes = {
                "/v1/jobs": (MAX_BODY_BYTES, lambda doc: agent.submit(JobRequest.parse(doc))),
                "/v1/profile": (
                    MAX_PROFILE_BODY_BYTES,
                    lambda doc: agent.submit_profile(ProfileRequest.parse(doc)),
                ),
            }
            if self.path not in routes:
                return self._reply(404, {"error": "no such route"})
            if not self._authorized():
                return None
            cap, route = routes[self.path]
            return self._answer(lambda: route(read_json(self, cap)))

    return Handler


def serve(config: AgentConfig) -> BoundedServer:
    """A started server (serve_forever on the caller's thread or a daemon thread).

    With a certificate it speaks HTTPS only; the TLS handshake runs on the
    connection's own thread (under its deadline), never on the accepting one.
    """
    server = BoundedServer(
        (config.host, config.port),
        make_handler(Agent(config)),
        max_connections=config.max_connections,
        io_timeout_s=config.io_timeout_s,
        request_deadline_s=config.request_deadline_s,
    )
    if config.tls_cert:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(config.tls_cert, config.tls_key or None)
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    return server
