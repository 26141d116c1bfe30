"""Job metrics with prometheus-client.

Batch jobs do not live long enough to be scraped, so each job fills its own
registry and, at the end, pushes it to a Pushgateway when one is configured
and always writes it as a text file next to its outputs (the node-exporter
textfile format), so a run's figures survive either way.

Grouping (docs/operations.md): a Pushgateway group is what a new push replaces, so it is
the unit whose latest state matters: `{job, date}` for the index and mining (a rerun of a
date replaces that date's figures, and an old bad date stops mattering once it is rerun),
`{job, run}` for training (`<run-name>-<ensemble|deployable>`), `{job, model}` for deploy.
The run's own id is a label of `avfleet_<job>_run_info`. The Pushgateway never forgets a
group by itself: `forget_stale` (`avfleet metrics forget`, the nightly CronWorkflow's last
step) deletes avfleet's groups pushed longer ago than the retention, 8 days by default.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import time
import urllib.parse
import urllib.request

from avfleet.core import storage
from avfleet.core.errors import TransientError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    pushgateway_url: str | None = None
    """Pushgateway address (host:port or http://host:port); None: only the text file."""
    push_timeout_s: float = 10.0
    """Timeout of the push; a failed push is logged, it does not fail the job."""


class JobMetrics:
    """A registry of gauges for one job run: pushed as job `avfleet-<job>`, grouped by `group`
    (e.g. {"date": "2026-11-20"}), the run's id on `avfleet_<job>_run_info`."""

    def __init__(self, job: str, group: dict[str, str], run_id: str = "") -> None:
        from prometheus_client import CollectorRegistry

        self.job = job
        self.group = dict(group)
        self.run_id = run_id
        self.registry = CollectorRegistry()
        self._gauges: dict[str, object] = {}
        self.started_s = time.time()
        if run_id:
            self.set("run_info", 1, "The run that pushed this group", {"run_id": run_id})

    def set(self, name: str, value: float, doc: str, labels: dict[str, str] | None = None) -> None:
        """Set gauge `avfleet_<job>_<name>` (with optional labels) to `value`."""
        from prometheus_client import Gauge

        full_name = f"avfleet_{self.job}_{name}"
        label_names = tuple(sorted(labels)) if labels else ()
        gauge = self._gauges.get(full_name)
        if gauge is None:
            gauge = Gauge(full_name, doc, labelnames=label_names, registry=self.registry)
            self._gauges[full_name] = gauge
        (gauge.labels(**labels) if labels else gauge).set(value)  # type: ignore[attr-defined]

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def finish(
        self,
        config: MetricsConfig,
        textfile_uri: str | None,
        storage_config: storage.StorageConfig | None = None,
    ) -> None:
        """Record duration and completion time, then write and push."""
        self.set("duration_seconds", time.time() - self.started_s, "Wall time of the run")
        self.set("last_completion_timestamp_seconds", time.time(), "When the run finished")
        if textfile_uri:
            storage.atomic_write_bytes(textfile_uri, self.exposition(), storage_config)
        if config.pushgateway_url:
            try:
                self.push(config)
            except TransientError as e:
                log.warning("metrics push failed, kept in %s: %s", textfile_uri, e.__cause__ or e)

    def push(self, config: MetricsConfig, *, replace: bool = False) -> None:
        """Push to the group: by default only these metrics change in it (POST), so progress
        pushed during a run and the figures pushed at its end live side by side;
        `replace` swaps the whole group (PUT)."""
        from prometheus_client import push_to_gateway, pushadd_to_gateway

        assert config.pushgateway_url
        send = push_to_gateway if replace else pushadd_to_gateway
        try:
            send(
                config.pushgateway_url,
                job=f"avfleet-{self.job}",
                grouping_key=self.group,
                registry=self.registry,
                timeout=config.push_timeout_s,
            )
        except OSError as e:
            raise TransientError(f"push to {config.pushgateway_url} failed") from e

    def push_quietly(self, config: MetricsConfig) -> None:
        """Push progress if a Pushgateway is configured; a failure is logged, not raised."""
        if not config.pushgateway_url:
            return
        try:
            self.push(config)
        except TransientError as e:
            log.warning("metrics push failed: %s", e.__cause__ or e)


def _base_url(pushgateway_url: str) -> str:
    return pushgateway_url if "://" in pushgateway_url else f"http://{pushgateway_url}"


def groups(pushgateway_url: str, timeout_s: float = 10.0) -> list[dict]:
    """The Pushgateway's groups: [{"labels": {...}, "push_time_seconds": float}]."""
    url = f"{_base_url(pushgateway_url)}/api/v1/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            doc = json.load(response)
    except OSError as e:
        raise TransientError(f"{url}: {e}") from e
    out = []
    for group in doc.get("data", []):
        pushed = group.get("push_time_seconds", {}).get("metrics", [{}])[0].get("value", "0")
        out.append({"labels": group.get("labels", {}), "push_time_seconds": float(pushed)})
    return out


def forget_stale(
    pushgateway_url: str, max_age_s: float, now: float | None = None, timeout_s: float = 10.0
) -> list[dict[str, str]]:
    """Delete avfleet's groups (job avfleet-*) last pushed more than `max_age_s` ago; returns
    the deleted groups' labels."""
    now = time.time() if now is None else now
    deleted = []
    for group in groups(pushgateway_url, timeout_s):
        labels = dict(group["labels"])
        job = labels.pop("job", "")
        if not job.startswith("avfleet-") or now - group["push_time_seconds"] <= max_age_s:
            continue
        path = f"/metrics/job/{urllib.parse.quote(job, safe='')}"
        for key, value in sorted(labels.items()):
            encoded = base64.urlsafe_b64encode(value.encode()).decode() or "="
            path += f"/{key}@base64/{encoded}"
        request = urllib.request.Request(_base_url(pushgateway_url) + path, method="DELETE")
        try:
            urllib.request.urlopen(request, timeout=timeout_s).close()
        except OSError as e:
            raise TransientError(f"deleting {path}: {e}") from e
        deleted.append({"job": job, **labels})
    return deleted
