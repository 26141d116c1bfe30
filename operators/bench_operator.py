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

The benches' token comes from $AVFLEET_BENCH_TOKEN (a Secret in the Deployment).
Tested without a cluster: the pure steps in tests/unit/test_bench_scheduler.py,
the same steps over real agents (one killed) in tests/integration/test_deploy.py,
and these handlers called as kopf calls them, over in-memory indices, in
tests/unit/test_bench_operator.py.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import kopf

from avfleet.bench import scheduler
from avfleet.bench.client import BenchClient

GROUP, VERSION = "avfleet.dev", "v1alpha1"
BENCHES, VALIDATIONS = "xavierbenches", "benchvalidations"

# Between a validation's assignment and kopf's index seeing its new status, the bench it
# took must not be handed out again: claims ((namespace, bench) -> validation) bridge that gap,
# passed to the scheduler as benches also leased.
_lock = threading.Lock()
_claims: dict[tuple[str, str], str] = {}


def client_for(bench_spec: dict) -> BenchClient:
    return BenchClient(bench_spec["address"], os.environ["AVFLEET_BENCH_TOKEN"])


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


@kopf.index(GROUP, VERSION, BENCHES)
def bench_index(namespace: str, name: str, spec: Any, status: Any, **_: Any) -> dict:
    return _indexed(namespace, name, spec, status)


@kopf.index(GROUP, VERSION, VALIDATIONS)
def validation_index(namespace: str, name: str, spec: Any, status: Any, **_: Any) -> dict:
    return _indexed(namespace, name, spec, status)


@kopf.timer(GROUP, VERSION, BENCHES, interval=15.0)
def probe_bench(spec: Any, patch: kopf.Patch, **_: Any) -> None:
    patch.status.update(scheduler.probe(dict(spec), client_for(dict(spec))))


def _unfinished(status: Any, **_: Any) -> bool:
    return (status or {}).get("phase") not in scheduler.TERMINAL


@kopf.timer(GROUP, VERSION, VALIDATIONS, interval=5.0, when=_unfinished)
def reconcile_validation(
    namespace: str,
    name: str,
    spec: Any,
    status: Any,
    patch: kopf.Patch,
    bench_index: kopf.Index,
    validation_index: kopf.Index,
    **_: Any,
) -> None:
    status = dict(status or {})
    with _lock:
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
            client_for,
            also_leased=claimed_by_others,
        )
        after = {**status, **change}
        _claims.pop(
            next((k for k, v in _claims.items() if k[0] == namespace and v == name), None), None
        )
        if after.get("phase") == scheduler.RUNNING:
            _claims[(namespace, after["bench"])] = name
    if change:
        patch.status.update(change)
