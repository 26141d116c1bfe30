"""The model registry: release records and the promotion pointer, moved atomically.

    <registry>/
        promoted.json                  the pointer: which release runs on the cars
        releases/<release_id>.json     a promoted release: export, engine, bench report, verdict
        history/<time>-<release>.json  every promotion, in order

`promote` re-judges the bench report against the gates of the reviewed
promotion policy (promotion-policy.yaml, beside this module; no workflow
parameter sets a gate) itself (it trusts no verdict it did not compute), checks
that the report measured this release's model (its sha256), and a release that
misses any gate raises before anything is written: the previous promotion
stays as it was. A passing release
is published to the Triton model repository first (idempotent: a retry reuses
the version), then its record is written, and the pointer moves last in one
compare-and-swap (storage.swap_text: a lock locally, a conditional PUT on S3),
so two promotions racing from the same pointer cannot both win: the loser fails
transient, re-reads and tries again (the deploy workflow also serialises its
promote steps with an Argo mutex). A step that dies anywhere in between is
retried to the same end state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import importlib.resources
import json

from avfleet import taxonomy
from avfleet.bench.gates import Gates, Verdict, judge, policy_gates
from avfleet.core import storage
from avfleet.core.errors import PermanentError
from avfleet.core.metrics import JobMetrics, MetricsConfig
from avfleet.serve.repository import ServingConfig

POINTER = "promoted.json"


def promotion_policy(uri: str = "", config: storage.StorageConfig | None = None) -> Gates:
    """The gates of the promotion policy at `uri` ('' = the reviewed one shipped with avfleet)."""
    import yaml

    if uri:
        text, source = storage.read_bytes(uri, config).decode(), uri
    else:
        ref = importlib.resources.files("avfleet.deploy") / "promotion-policy.yaml"
        text, source = ref.read_text(), "avfleet/deploy/promotion-policy.yaml"
    return policy_gates(yaml.safe_load(text), source)


class NotPromoted(PermanentError):
    """The release missed a gate; the message lists every miss."""

    def __init__(self, release_id: str, verdict: Verdict) -> None:
        super().__init__(f"release {release_id} is not promoted: " + "; ".join(verdict.reasons))
        self.verdict = verdict


@dataclasses.dataclass(frozen=True, kw_only=True)
class PromoteConfig:
    release_uri: str
    """The release folder to judge (deploy export wrote it)."""
    report_uri: str
    """The bench report (written by the bench operator or the local validation)."""
    registry_uri: str
    """The model registry: releases, the promoted pointer and its history."""
    model_repo_uri: str
    """The Triton model repository that mining reads."""
    model_name: str = "dpe-scorer"
    """The scorer's name in the repository and the registry."""
    gates: Gates = dataclasses.field(default_factory=promotion_policy)
    """The promotion policy's gates (never a submitter's parameter)."""
    storage: storage.StorageConfig = storage.StorageConfig()
    triton_url: str = ""
    """The serving Triton (explicit model control): told to load the promoted version before
    the pointer moves to it; empty: none to tell (a local run)."""
    serving: ServingConfig = ServingConfig()
    """How Triton runs the published version (its instance kind: KIND_CPU where it has no GPU)."""
    metrics: MetricsConfig = MetricsConfig()
    """Where the verdict and the promoted engine's figures are pushed (job avfleet-deploy,
    grouped by model name)."""


def _push_verdict(config: PromoteConfig, release_id: str, report: dict, verdict: Verdict) -> None:
    """The promotion's outcome as metrics: each gate's check, and either the promoted engine's
    figures or the time of the rejection (a rejected release leaves the promoted one's)."""
    metrics = JobMetrics("deploy", {"model": config.model_name}, run_id=release_id)
    for gate, check in verdict.checks.items():
        metrics.set(
            "gate_passed",
            float(bool(check["passed"])),
            "Gate met (1) or missed (0)",
            {"gate": gate},
        )
    if verdict.passed:
        metrics.set("promoted_release_info", 1, "The promoted release", {"release": release_id})
        metrics.set("latency_p50_ms", report["latency"]["p50_ms"], "Promoted engine's bench p50")
        metrics.set("latency_p99_ms", report["latency"]["p99_ms"], "Promoted engine's bench p99")
        metrics.set("miou", report["accuracy"]["miou"], "Promoted engine's held-out mIoU")
        for name, iou in report["accuracy"].get("iou_per_class", {}).items():
            metrics.set(
                "class_iou",
                iou,
                "Promoted engine's held-out IoU of one class (hazard: a long-tail class)",
                {"class": name, "hazard": str(name in taxonomy.HAZARD_NAMES).lower()},
            )
        metrics.set("last_promotion_timestamp_seconds", _now_s(), "When a release was promoted")
    else:
        metrics.set("last_rejection_timestamp_seconds", _now_s(), "When a release was rejected")
    metrics.push_quietly(config.metrics)


def _serve(config: PromoteConfig, model_ref: str, current: dict | None, release_id: str) -> None:
    """Keep the version being promoted and the one it replaces (the rollback target) served,
    let older promoted versions go, and have Triton load that before the pointer moves."""
    from avfleet.serve import repository
    from avfleet.serve.client import load_model

    name, version = repository.parse_ref(model_ref)
    previous = repository.parse_ref(current["model_ref"])[1] if current else None
    pinned = repository.pins(config.model_repo_uri, name, config.storage)
    change: dict[int, str | None] = {
        v: None
        for v, why in pinned.items()
        if why.startswith(PROMOTED_PIN) and v not in (version, previous)
    }
    change[version] = f"{PROMOTED_PIN} {release_id}"
    repository.set_pins(config.model_repo_uri, name, change, config.storage)
    if config.triton_url:
        load_model(config.triton_url, name)


PROMOTED_PIN = "promoted release"
"""How promotion marks its pins (a backfill's pins are never touched here)."""


def _now_s() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def promoted(registry_uri: str, config: storage.StorageConfig | None = None) -> dict | None:
    text = _pointer_text(registry_uri, config)
    return None if text is None else json.loads(text)


def _pointer_text(registry_uri: str, config: storage.StorageConfig | None) -> str | None:
    uri = storage.join(registry_uri, POINTER)
    return storage.read_bytes(uri, config).decode() if storage.exists(uri, config) else None


def record_uri(registry_uri: str, release_id: str) -> str:
    return storage.join(registry_uri, "releases", f"{release_id}.json")


def release_record(
    registry_uri: str, release_id: str, config: storage.StorageConfig | None = None
) -> dict:
    """What `promote` wrote for a release (export, engine, bench figures, verdict, Triton ref)."""
    uri = record_uri(registry_uri, release_id)
    if not storage.exists(uri, config):
        raise PermanentError(f"{registry_uri}: no release {release_id!r}")
    return json.loads(storage.read_bytes(uri, config))


def scorer_model(export: dict, config: storage.StorageConfig | None = None) -> str:
    """What mining should score with once this release is promoted.

    The train workflow trains the deployable net and a DPE ensemble on the same
    dataset (<run>/deployable, <run>/ensemble); mining needs the ensemble's
    disagreement, so a promoted net brings its sibling ensemble into mining. A
    model without one (an ensemble itself, or a lone net) is published as is.
    """
    model_uri = export["model_uri"].rstrip("/")
    run_root = model_uri.rsplit("/", 2)[0]
    sibling = storage.join(run_root, "ensemble", "model")
    if sibling != model_uri and storage.exists(storage.join(sibling, "arch.json"), config):
        return sibling
    return model_uri


def promote(config: PromoteConfig) -> dict:
    """The new pointer (or the current one, when this release is already promoted)."""
    from avfleet.serve.publish import publish_model

    st = config.storage
    from avfleet.deploy.export import read_export  # torch: only where a release is judged

    export = read_export(config.release_uri, st)
    release_id = export["release_id"]
    report = json.loads(storage.read_bytes(config.report_uri, st))
    model = storage.read_bytes(storage.join(config.release_uri, "model.onnx"), st)
    release_sha = hashlib.sha256(model).hexdigest()
    measured_sha = (report.get("engine") or {}).get("model_sha256")
    if measured_sha != release_sha:
        raise PermanentError(
            f"release {release_id} is not promoted: the bench report {config.report_uri} measured "
            f"a model with sha256 {measured_sha}, the release's model.onnx has {release_sha}"
        )
    verdict = judge(report, export["reference_miou"], config.gates)
    if not verdict.passed:
        _push_verdict(config, release_id, report, verdict)
        raise NotPromoted(release_id, verdict)
    current_text = _pointer_text(config.registry_uri, st)
    current = None if current_text is None else json.loads(current_text)
    if current and current["release_id"] == release_id:
        return current
    scorer = scorer_model(export, st)
    model_ref = publish_model(
        scorer, config.model_repo_uri, config.model_name, storage_config=st, serving=config.serving
    )
    _serve(config, model_ref, current, release_id)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    record = {
        "release_id": release_id,
        "release_uri": config.release_uri,
        "export": export,
        "engine": report["engine"],
        "bench_report_uri": config.report_uri,
        "latency": report["latency"],
        "parity": report["parity"],
        "miou": report["accuracy"]["miou"],
        "gates": dataclasses.asdict(config.gates),
        "verdict": dataclasses.asdict(verdict),
        "scorer_model_uri": scorer,
        "model_ref": model_ref,
        "model_repo_uri": config.model_repo_uri,
        "promoted_at": now,
    }
    record_at = record_uri(config.registry_uri, release_id)
    storage.atomic_write_text(record_at, json.dumps(record, indent=2), st)
    pointer = {
        "release_id": release_id,
        "record_uri": record_at,
        "model_ref": model_ref,
        "promoted_at": now,
        "previous": None
        if current is None
        else {k: v for k, v in current.items() if k != "previous"},
    }
    stamp = now.replace(":", "").replace("-", "").replace("+0000", "Z")
    history_uri = storage.join(config.registry_uri, "history", f"{stamp}-{release_id}.json")
    storage.atomic_write_text(history_uri, json.dumps(pointer, indent=2), st)
    storage.swap_text(
        storage.join(config.registry_uri, POINTER), current_text, json.dumps(pointer, indent=2), st
    )
    _push_verdict(config, release_id, report, verdict)
    return pointer
