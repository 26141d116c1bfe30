"""The bench operator (kopf): leases XavierBench devices to BenchValidation requests.

    kopf run operators/bench_operator.py --all-namespaces     (the image's CMD)

Handlers are thin: each reads what kopf hands it, calls one pure step of
avfleet.bench.scheduler and writes the returned patch into the status. They are
idempotent, because the step is computed from the resource's own status (phase,
bench, jobId) and the agent's answer, and an agent returns the same job for the
same request.

- every 15 s per XavierBench: a health probe -> status.health, busy, runtime
- every 5 s per unfinished BenchValidation: one transition (assign a free healthy
  bench, poll the job, move it off a dead bench, write the report and verdict)

Metrics (Prometheus, :$AVFLEET_OPERATOR_METRICS_PORT/metrics, 9464 by default):
avfleet_bench_healthy / _busy / _last_probe_timestamp_seconds per bench,
avfleet_validation_age_seconds per unfinished validation (by phase), and
avfleet_validations_finished_total by phase. The alerts on them are in
infra/prometheus/avfleet-rules.yaml, the panels in the deploy dashboard.

Each bench has its own token: its XavierBench names a Secret (spec.tokenSecret,
key `token`) in its namespace, read through the API server and sent only to that
bench's address. Reports are written only under $AVFLEET_REPORTS_PREFIX. No lock
is held across an HTTP call: the agent's own one-job-at-a-time check settles two
validations racing for one bench.
Tested: the pure steps in tests/unit/test_bench_scheduler.py, the same steps over
real agents (one killed) in tests/integration/test_deploy.py, these handlers called
as kopf calls them over in-memory indices in tests/integration/test_bench_operator.py,
and this file as a real kopf process against a real kube-apiserver with its own
ServiceAccount, two agents, one killed (tests/integration/test_operator_rbac.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
import time
from typing import Any

import kopf
import prometheus_client

from avfleet.bench import scheduler
from avfleet.bench.client import BenchClient

GROUP, VERSION = "avfleet.dev", "v1alpha1"
BENCHES, VALIDATIONS = "xavierbenches", "benchvalidations"
REPORTS_PREFIX_ENV = "AVFLEET_REPORTS_PREFIX"
TOKEN_TTL_S = 60.0
METRICS_PORT_ENV = "AVFLEET_OPERATOR_METRICS_PORT"

BENCH_HEALTHY = prometheus_client.Gauge(
    "avfleet_bench_healthy",
    "The bench's last probe: healthy (1) or not (0)",
    ["namespace", "bench"],
)
BENCH_BUSY = prometheus_client.Gauge(
    "avfleet_bench_busy", "The bench is running a job (1) or idle (0)", ["namespace", "bench"]
)
BENCH_PROBED = prometheus_client.Gauge(
    "avfleet_bench_last_probe_timestamp_seconds",
    "When the bench was last probed",
    ["namespace", "bench"],
)
VALIDATION_AGE = prometheus_client.Gauge(
    "avfleet_validation_age_seconds",
    "Seconds since an unfinished validation was created, by its phase",
    ["namespace", "validation", "phase"],
)
VALIDATIONS_FINISHED = prometheus_client.Counter(
    "avfleet_validations_finished",
    "Validations that reached a final phase",
    ["namespace", "phase"],
)

# Between a validation's assignment and kopf's index seeing its new status, the bench it
# took must not be handed out again: claims ((namespace, bench) -> validation) bridge that gap,
# passed to the scheduler as benches also leased.
_lock = threading.Lock()
_claims: dict[tuple[str, str], str] = {}
_tokens: dict[tuple[str, str], tuple[float, str]] = {}


def read_secret_token(namespace: str, secret: str) -> str:
    """The `token` key of Secret `secret` (the operator's ServiceAccount may get Secrets here)."""
    import base64

    import kubernetes

    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    try:
        doc = kubernetes.client.CoreV1Api().read_namespaced_secret(secret, namespace)
    except kubernetes.client.ApiException as e:
        if e.status != 404:
            raise
        # the site has not made it yet (docs/install.md): say so, and look again later
        raise kopf.TemporaryError(
            f"the bench's token Secret {secret!r} is not in namespace {namespace!r}: create it "
            "with its key `token` (docs/install.md)",
            delay=30,
        ) from None
    token = (doc.data or {}).get("token")
    if not token:
        raise kopf.TemporaryError(f"Secret {secret!r} has no key `token`", delay=30)
    return base64.b64decode(token).decode()


def token_for(namespace: str, bench_spec: dict) -> str:
    """The bench's own token, cached for TOKEN_TTL_S (a rotated Secret is picked up after it)."""
    secret = bench_spec.get("tokenSecret") or ""
    if not secret:
        raise kopf.PermanentError("the XavierBench names no tokenSecret")
    key = (namespace, secret)
    with _lock:
        cached = _tokens.get(key)
    if cached and time.monotonic() - cached[0] < TOKEN_TTL_S:
        return cached[1]
    token = read_secret_token(namespace, secret)
    with _lock:
        _tokens[key] = (time.monotonic(), token)
    return token


def clients_in(namespace: str):  # noqa: ANN201
    def client_for(bench_spec: dict) -> BenchClient:
        return BenchClient(bench_spec["address"], token_for(namespace, bench_spec))

    return client_for


def _in_namespace(index: Any, namespace: str) -> dict[str, dict]:
    """A kopf index of {"ns/name": {"spec", "status"}} -> {name: ...} for one namespace."""
    out = {}
    for key, store in index.items():
        ns, _, name = key.partition("/")
        if ns == namespace:
            out[name] = next(iter(store))
    return out


def _indexed(namespace: str, name: str, spec: Any, status: Any) -> dict:
    return {f"{namespace}/{name}": {"spec": dict(spec), "status": dict(status or {})}}


@kopf.on.startup()
def serve_metrics(**_: Any) -> None:
    prometheus_client.start_http_server(int(os.environ.get(METRICS_PORT_ENV) or 9464))


def _forget_validation(namespace: str, name: str) -> None:
    for phase in (scheduler.PENDING, scheduler.RUNNING):
        with contextlib.suppress(KeyError):
            VALIDATION_AGE.remove(namespace, name, phase)


def _record_validation(namespace: str, name: str, meta: Any, phase: str, change: dict) -> None:
    """The validation's age under its phase; once final, counted (on the step that ended it)."""
    _forget_validation(namespace, name)
    if phase in scheduler.TERMINAL:
        if change.get("phase") in scheduler.TERMINAL:
            VALIDATIONS_FINISHED.labels(namespace, phase).inc()
        return
    created = dt.datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00"))
    age = (dt.datetime.now(dt.UTC) - created).total_seconds()
    VALIDATION_AGE.labels(namespace, name, phase).set(age)


@kopf.on.delete(GROUP, VERSION, BENCHES, optional=True)
def forget_bench(namespace: str, name: str, **_: Any) -> None:
    for gauge in (BENCH_HEALTHY, BENCH_BUSY, BENCH_PROBED):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)


@kopf.on.delete(GROUP, VERSION, VALIDATIONS, optional=True)
def forget_validation(namespace: str, name: str, **_: Any) -> None:
    _forget_validation(namespace, name)


@kopf.index(GROUP, VERSION, BENCHES)
def bench_index(namespace: str, name: str, spec: Any, status: Any, **_: Any) -> dict:
    return _indexed(namespace, name, spec, status)


@kopf.index(GROUP, VERSION, VALIDATIONS)
def validation_index(namespace: str, name: str, spec: Any, status: Any, **_: Any) -> dict:
    return _indexed(namespace, name, spec, status)


@kopf.timer(GROUP, VERSION, BENCHES, interval=15.0)
def probe_bench(namespace: str, name: str, spec: Any, patch: kopf.Patch, **_: Any) -> None:
    spec = dict(spec)
    status = scheduler.probe(spec, clients_in(namespace)(spec))
    patch.status.update(status)
    BENCH_HEALTHY.labels(namespace, name).set(float(status["health"] == scheduler.HEALTHY))
    BENCH_BUSY.labels(namespace, name).set(float(bool(status["busy"])))
    BENCH_PROBED.labels(namespace, name).set_to_current_time()


def _unfinished(status: Any, **_: Any) -> bool:
    return (status or {}).get("phase") not in scheduler.TERMINAL


@kopf.timer(GROUP, VERSION, VALIDATIONS, interval=5.0, when=_unfinished)
def reconcile_validation(
    namespace: str,
    name: str,
    meta: Any,
    spec: Any,
    status: Any,
    patch: kopf.Patch,
    bench_index: kopf.Index,
    validation_index: kopf.Index,
    **_: Any,
) -> None:
    status = dict(status or {})
    with _lock:  # a snapshot only: the step below calls benches over HTTP, without the lock
        benches = _in_namespace(bench_index, namespace)
        validations = _in_namespace(validation_index, namespace)
        claimed_by_others = [
            bench for (ns, bench), holder in _claims.items() if ns == namespace and holder != name
        ]
    change = scheduler.step(
        name,
        dict(spec),
        status,
        benches,
        validations,
        clients_in(namespace),
        also_leased=claimed_by_others,
        reports_prefix=os.environ.get(REPORTS_PREFIX_ENV, ""),
    )
    after = {**status, **change}
    with _lock:
        mine = next((k for k, v in _claims.items() if k[0] == namespace and v == name), None)
        taken = after.get("phase") == scheduler.RUNNING and _claims.get(
            (namespace, after["bench"]), name
        ) not in (name,)
        if taken:  # another validation claimed this bench while we talked to it: keep its claim
            return
        _claims.pop(mine, None)
        if after.get("phase") == scheduler.RUNNING:
            _claims[(namespace, after["bench"])] = name
    if change:
        patch.status.update(change)
    _record_validation(namespace, name, meta, after.get("phase") or scheduler.PENDING, change)
