"""The bench operator's logic, as pure steps over resources (no Kubernetes, no kopf).

Two resources (CRDs in manifests/base/bench/):

- `XavierBench` (one per device): spec {address, target}; status {health, busy,
  runtime, runtimeVersion, lastProbe, message}, refreshed by `probe`.
- `BenchValidation`: spec {modelUri, bundleUri, reportUri, target, precision,
  warmup, runs, referenceMiou, gates, maxAttempts}; status {phase, bench, jobId,
  attempts, benchesLost, message, verdict, summary}.

`step` is one status transition of a validation, given every bench and every
validation (for the leases):

    Pending  --free healthy bench, job accepted-->  Running(bench, jobId)
    Running  --bench unhealthy / gone / lost the job-->  Pending (another bench next)
    Running  --job succeeded, gates pass-->  Succeeded   (report written to reportUri)
    Running  --job succeeded, a gate missed-->  Rejected (the verdict names the misses)
    Running  --job failed on the device (model does not build)-->  Failed
    Running  --still running after timeoutSeconds-->  Pending (job cancelled; another bench next)
    Pending  --the agent refuses the model, or maxAttempts reached-->  Failed
    Pending  --reportUri outside the operator's reports prefix-->  Failed

A bench holds one validation at a time: it is leased while a validation is
Running on it. The kopf handlers (operators/bench_operator.py) and the local
executor's BenchValidation engine call these same functions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Collection

from avfleet.bench.client import BenchBusy, BenchClient, BenchUnavailable
from avfleet.bench.gates import Gates, judge
from avfleet.bench.policy import Forbidden, ReadPolicy
from avfleet.core import storage
from avfleet.core.errors import PermanentError

HEALTHY, UNHEALTHY = "Healthy", "Unhealthy"
PENDING, RUNNING = "Pending", "Running"
SUCCEEDED, REJECTED, FAILED = "Succeeded", "Rejected", "Failed"
TERMINAL = (SUCCEEDED, REJECTED, FAILED)

ClientFor = Callable[[dict], BenchClient]
"""A bench resource's spec -> a client for its agent."""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def probe(spec: dict, client: BenchClient) -> dict:
    """A bench's status from one health check."""
    try:
        health = client.health()
    except (BenchUnavailable, PermanentError) as e:
        return {"health": UNHEALTHY, "busy": None, "lastProbe": now(), "message": str(e)}
    problem = ""
    if spec.get("target") and health.get("target") != spec["target"]:
        problem = f"agent reports target {health.get('target')!r}, resource says {spec['target']!r}"
    return {
        "health": UNHEALTHY if problem else HEALTHY,
        "busy": bool(health.get("busy")),
        "runtime": health.get("runtime"),
        "runtimeVersion": health.get("runtime_version"),
        "lastProbe": now(),
        "message": problem or "ok",
    }


def leased(validations: dict[str, dict]) -> dict[str, str]:
    """bench name -> the validation running on it."""
    return {
        v["status"]["bench"]: name
        for name, v in validations.items()
        if (v.get("status") or {}).get("phase") == RUNNING and v["status"].get("bench")
    }


def free_benches(
    benches: dict[str, dict],
    validations: dict[str, dict],
    target: str,
    also_leased: Collection[str] = (),
) -> list[str]:
    """Healthy, unleased benches of `target`, in name order.

    `also_leased`: benches taken by assignments the caller knows of but `validations`
    does not show yet (the operator's index lags its own patches).
    """
    taken = set(leased(validations)) | set(also_leased)
    return sorted(
        name
        for name, b in benches.items()
        if (b.get("status") or {}).get("health") == HEALTHY
        and name not in taken
        and (not target or b["spec"].get("target") == target)
    )


DEFAULT_TIMEOUT_S = 1800


def job_request(spec: dict) -> dict:
    return {
        "model_uri": spec["modelUri"],
        "bundle_uri": spec["bundleUri"],
        "precision": spec.get("precision", "fp32"),
        "warmup": int(spec.get("warmup", 20)),
        "runs": int(spec.get("runs", 200)),
        "batch": int(spec.get("batch", 1)),
    }


def step(
    name: str,
    spec: dict,
    status: dict,
    benches: dict[str, dict],
    validations: dict[str, dict],
    client_for: ClientFor,
    storage_config: storage.StorageConfig | None = None,
    also_leased: Collection[str] = (),
    *,
    reports_prefix: str,
) -> dict:
    """The status patch of validation `name` ({} = nothing to change); see `free_benches`.

    `reports_prefix`: the only place reports may be written (a validation naming
    another `reportUri` fails before any bench is used).
    """
    phase = status.get("phase") or PENDING
    if phase in TERMINAL:
        return {}
    try:
        ReadPolicy(prefixes=(reports_prefix,)).check("reportUri", spec.get("reportUri") or "")
    except (Forbidden, ValueError):
        return {
            "phase": FAILED,
            "message": f"reportUri is not under the reports prefix {reports_prefix!r}",
        }
    if phase == RUNNING:
        return _check_running(spec, status, benches, client_for, storage_config)
    return _assign(name, spec, status, benches, validations, client_for, also_leased)


def _assign(
    name: str,
    spec: dict,
    status: dict,
    benches: dict[str, dict],
    validations: dict[str, dict],
    client_for: ClientFor,
    also_leased: Collection[str],
) -> dict:
    attempts = int(status.get("attempts", 0))
    max_attempts = int(spec.get("maxAttempts", 3))
    if attempts >= max_attempts:
        return {
            "phase": FAILED,
            "message": f"no bench finished the validation in {attempts} attempts "
            f"(benches lost: {status.get('benchesLost') or []}; last: {status.get('message')})",
        }
    others = {k: v for k, v in validations.items() if k != name}
    candidates = free_benches(benches, others, spec.get("target", ""), also_leased)
    lost = status.get("benchesLost") or []
    candidates.sort(key=lambda b: b in lost)  # a bench that died on this validation goes last
    if not candidates:
        return {"phase": PENDING, "message": "waiting for a free healthy bench"}
    skipped = []
    for bench in candidates:
        try:
            job_id = client_for(benches[bench]["spec"]).submit(job_request(spec))
        except (BenchBusy, BenchUnavailable) as e:
            skipped.append(f"{bench}: {e}")
            continue
        except PermanentError as e:  # the agent refused the model or the request
            return {"phase": FAILED, "bench": bench, "message": str(e)}
        return {
            "phase": RUNNING,
            "bench": bench,
            "jobId": job_id,
            "attempts": attempts + 1,
            "startedAt": now(),
            "message": f"running on {bench}",
        }
    return {"phase": PENDING, "message": "no bench took the job: " + "; ".join(skipped)}


def _lost(status: dict, why: str) -> dict:
    bench = status.get("bench")
    return {
        "phase": PENDING,
        "bench": None,
        "jobId": None,
        "benchesLost": [*(status.get("benchesLost") or []), bench],
        "message": f"bench {bench} lost the validation ({why}); moving it to another bench",
    }


def _check_running(
    spec: dict,
    status: dict,
    benches: dict[str, dict],
    client_for: ClientFor,
    storage_config: storage.StorageConfig | None,
) -> dict:
    bench = benches.get(status.get("bench") or "")
    if bench is None:
        return _lost(status, "the XavierBench resource is gone")
    if (bench.get("status") or {}).get("health") != HEALTHY:
        return _lost(status, (bench.get("status") or {}).get("message") or "unhealthy")
    try:
        job = client_for(bench["spec"]).job(status["jobId"])
    except BenchUnavailable as e:
        return _lost(status, str(e))
    except PermanentError as e:  # e.g. 404: the agent restarted and forgot the job
        return _lost(status, str(e))
    if job["state"] == "running":
        limit = int(spec.get("timeoutSeconds", DEFAULT_TIMEOUT_S))
        started = dt.datetime.fromisoformat(status.get("startedAt") or now())
        if (dt.datetime.now(dt.UTC) - started).total_seconds() > limit:
            try:
                client_for(bench["spec"]).cancel(status["jobId"])
            except (BenchUnavailable, PermanentError):
                pass  # the agent's own time limit ends it anyway
            return _lost(status, f"still running after timeoutSeconds={limit}")
        return {}
    if job["state"] == "failed":
        return {"phase": FAILED, "message": f"on {status['bench']}: {job['error']}"}
    report = job["report"]
    gates = Gates.from_dict(spec.get("gates") or {})
    verdict = dataclasses.asdict(judge(report, float(spec["referenceMiou"]), gates))
    storage.atomic_write_text(
        spec["reportUri"],
        json.dumps({**report, "verdict": verdict, "validation": spec}, indent=2),
        storage_config,
    )
    return {
        "phase": SUCCEEDED if verdict["passed"] else REJECTED,
        "verdict": verdict,
        "summary": summary(report),
        "finishedAt": now(),
        "message": "all gates passed" if verdict["passed"] else "; ".join(verdict["reasons"]),
    }


def summary(report: dict) -> dict:
    return {
        "p50Ms": round(report["latency"]["p50_ms"], 3),
        "p99Ms": round(report["latency"]["p99_ms"], 3),
        "maxAbsError": report["parity"]["max_abs_error"],
        "argmaxAgreement": report["parity"]["argmax_agreement"],
        "miou": round(report["accuracy"]["miou"], 4),
        "engineKey": report["engine"]["key"],
        "engineCached": report["engine"]["cached"],
    }
