"""The bench agent: a small HTTP service on a bench device that builds, runs and measures engines.

On a Xavier it runs in the bench image (images/bench.Dockerfile) with the
TensorRT runtime; on this machine it runs on localhost with ONNX Runtime.

    GET  /healthz           liveness and what this bench is (no token: probes and the operator)
    POST /v1/jobs           {"model_uri", "bundle_uri", "precision", "warmup", "runs", "batch"}
                            -> 202 {"job_id"}; 409 while another job runs (one at a time)
    POST /v1/profile        {"units": [unit, ...]} -> 202 {"job_id"}: measure operator units
                            (avfleet.bench.profile) for a latency lookup table; the report
                            holds {"bench", "entries": [{"unit", "ms", "blocked_in",
                            "blocked_out"}], "measured"}; units already in the bench's cache
                            are not measured again
    GET  /v1/jobs/<job_id>  -> {"state": running|succeeded|failed, "report" | "error"}

Every /v1 call needs `Authorization: Bearer <token>` (401 otherwise). A request
that is not JSON, lacks a field, or names a model that is not a valid ONNX
model, or a bundle that does not load, gets a 4xx naming what was wrong, before
any job starts; the agent keeps serving. A job's id is the hash of what it
measures, so a caller that retries a submission gets the same job, not a
second one.
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
import traceback

from avfleet.bench.engines import (
    EngineSpec,
    build_engine,
    check_model,
    load_runner,
    runtime_version,
)
from avfleet.bench.measure import Bundle, load_bundle, measure, to_input
from avfleet.bench.profile import BadUnit, bench_id, cached_profile, check_unit, unit_key
from avfleet.core import storage
from avfleet.core.errors import AvfleetError, ConfigError, PermanentError

log = logging.getLogger("avfleet.bench")

MAX_BODY_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class AgentConfig:
    token: str
    """Shared secret callers present as `Authorization: Bearer <token>`."""
    cache_uri: str
    """Engine cache on the device (engines are built once per model, precision and runtime)."""
    host: str = "127.0.0.1"
    port: int = 8470
    runtime: str = "onnxruntime"
    """onnxruntime (CPU) or tensorrt (Jetson / GPU)."""
    target: str = ""
    """The bench's name for what it runs on, e.g. xavier-agx-jp5; '' = this machine."""
    threads: int = 1
    """Inference threads (ONNX Runtime intra-op)."""
    storage: storage.StorageConfig = storage.StorageConfig()

    def __post_init__(self) -> None:
        if len(self.token) < 16:
            raise ConfigError("token", "must be at least 16 characters")


class BadRequest(PermanentError):
    """The request itself is wrong (400); a model or bundle that does not load is a 422."""


@dataclasses.dataclass(frozen=True, kw_only=True)
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
        for name in ("warmup", "runs", "batch"):
            value = doc.get(name, fields[name].default)
            if not isinstance(value, int) or value < (0 if name == "warmup" else 1):
                raise BadRequest(f"request field {name!r} must be a positive integer")
        return cls(**doc)


MAX_PROFILE_UNITS = 4096
MAX_PROFILE_BODY_BYTES = 1 << 20  # a pruning grid is ~1,500 units of ~150 bytes


@dataclasses.dataclass(frozen=True, kw_only=True)
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
        self.version = runtime_version(config.runtime)
        self.target = EngineSpec(runtime=config.runtime, target=config.target).resolved_target
        self.jobs: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.running: str | None = None

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
        model = storage.read_bytes(request.model_uri, self.config.storage)
        check_model(model)
        bundle_bytes = storage.read_bytes(request.bundle_uri, self.config.storage)
        bundle = load_bundle(bundle_bytes)
        job_id = hashlib.sha256(
            b"|".join(
                [
                    hashlib.sha256(model).hexdigest().encode(),
                    hashlib.sha256(bundle_bytes).hexdigest().encode(),
                    json.dumps(dataclasses.asdict(spec), sort_keys=True).encode(),
                    f"{request.warmup}|{request.runs}|{request.batch}".encode(),
                ]
            )
        ).hexdigest()[:20]
        refused = self._start(job_id, self._validate, model, bundle, spec, request)
        return refused or (202, {"job_id": job_id, "state": "running"})

    def _start(self, job_id: str, work: object, *args: object) -> tuple[int, dict] | None:
        """Claim the bench for a job (None when it now runs), or the reply that says why not."""
        with self.lock:
            if job_id in self.jobs and self.jobs[job_id]["state"] != "failed":
                return 200, {"job_id": job_id, "state": self.jobs[job_id]["state"]}
            if self.running is not None:
                return 409, {"error": f"busy with job {self.running}; one job at a time"}
            self.running = job_id
            self.jobs[job_id] = {"state": "running", "started_at": _now()}
        threading.Thread(target=self._guarded, args=(job_id, work, *args), daemon=True).start()
        return None

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
        refused = self._start(job_id, self._profile, bench, request)
        return refused or (202, {"job_id": job_id, "state": "running"})

    def _profile(self, job_id: str, bench: str, request: ProfileRequest) -> dict:
        found, measured = cached_profile(
            request.units,
            storage.join(self.config.cache_uri, "latency"),
            bench,
            threads=self.config.threads,
            config=self.config.storage,
        )
        return {
            "job_id": job_id,
            "bench": bench,
            "entries": [{"unit": u, **found[unit_key(u)]} for u in request.units],
            "measured": measured,
            "finished_at": _now(),
        }

    def _guarded(self, job_id: str, work, *args: object) -> None:  # noqa: ANN001
        """Run a job's work: its report, or its error; the bench is free again either way."""
        try:
            result = {"state": "succeeded", "report": work(job_id, *args)}
        except AvfleetError as e:
            result = {"state": "failed", "error": str(e)}
        except Exception as e:  # noqa: BLE001 - a job's bug must not take the bench down
            log.error("job %s failed: %s", job_id, traceback.format_exc())
            result = {"state": "failed", "error": f"{type(e).__name__}: {e}"}
        with self.lock:
            self.jobs[job_id] = {**self.jobs[job_id], **result}
            self.running = None

    def job(self, job_id: str) -> tuple[int, dict]:
        with self.lock:
            doc = self.jobs.get(job_id)
        if doc is None:
            return 404, {"error": f"no job {job_id!r} on this bench"}
        return 200, {"job_id": job_id, **doc}

    def _validate(
        self, job_id: str, model: bytes, bundle: Bundle, spec: EngineSpec, request: JobRequest
    ) -> dict:
        engine = build_engine(
            model,
            spec,
            self.config.cache_uri,
            calibration_NCHW=to_input(bundle.calibration_NHWC),
            storage_config=self.config.storage,
        )
        runner = load_runner(engine, self.config.threads, self.config.storage)
        measured = measure(
            runner, bundle, warmup=request.warmup, runs=request.runs, batch=request.batch
        )
        return {
            "job_id": job_id,
            "bench": self.target,
            "engine": {**engine.info, "cached": engine.cached},
            **measured,
            "request": dataclasses.asdict(request),
            "finished_at": _now(),
        }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


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
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self) -> bool:
            given = (self.headers.get("Authorization") or "").encode()
            if hmac.compare_digest(given, expected):
                return True
            self._reply(401, {"error": "missing or wrong bearer token"})
            return False

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/healthz":
                return self._reply(200, agent.health())
            if not self.path.startswith("/v1/"):
                return self._reply(404, {"error": f"no route {self.path}"})
            if not self._authorized():
                return None
            if self.path.startswith("/v1/jobs/"):
                return self._reply(*agent.job(self.path.removeprefix("/v1/jobs/")))
            return self._reply(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            routes = {
                "/v1/jobs": lambda doc: agent.submit(JobRequest.parse(doc)),
                "/v1/profile": lambda doc: agent.submit_profile(ProfileRequest.parse(doc)),
            }
            if self.path not in routes:
                return self._reply(404, {"error": f"no route {self.path}"})
            if not self._authorized():
                return None
            length = int(self.headers.get("Content-Length") or 0)
            cap = MAX_PROFILE_BODY_BYTES if self.path == "/v1/profile" else MAX_BODY_BYTES
            if length > cap:
                return self._reply(413, {"error": f"request over {cap} bytes"})
            try:
                doc = json.loads(self.rfile.read(length) or b"null")
            except json.JSONDecodeError as e:
                return self._reply(400, {"error": f"the request body is not JSON: {e}"})
            try:
                return self._reply(*routes[self.path](doc))
            except BadRequest as e:
                return self._reply(400, {"error": str(e)})
            except PermanentError as e:  # ConfigError (precision) too: nothing to retry
                return self._reply(422, {"error": str(e)})
            except AvfleetError as e:  # storage unavailable: the caller may retry
                return self._reply(503, {"error": str(e)})

    return Handler


def serve(config: AgentConfig) -> http.server.ThreadingHTTPServer:
    """A started server (serve_forever on the caller's thread or a daemon thread)."""
    server = http.server.ThreadingHTTPServer(
        (config.host, config.port), make_handler(Agent(config))
    )
    server.daemon_threads = True
    return server
