"""Job metrics with prometheus-client.

Batch jobs do not live long enough to be scraped, so each job fills its own
registry and, at the end, pushes it to a Pushgateway when one is configured
(grouped by job and run) and always writes it as a text file next to its
outputs (the node-exporter textfile format), so a run's figures survive
either way.
"""

from __future__ import annotations

import dataclasses
import logging
import time

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
    """A registry of gauges for one job run, labelled by job name."""

    def __init__(self, job: str, run_id: str) -> None:
        from prometheus_client import CollectorRegistry

        self.job = job
        self.run_id = run_id
        self.registry = CollectorRegistry()
        self._gauges: dict[str, object] = {}
        self.started_s = time.time()

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

    def push(self, config: MetricsConfig) -> None:
        from prometheus_client import push_to_gateway

        assert config.pushgateway_url
        try:
            push_to_gateway(
                config.pushgateway_url,
                job=f"avfleet-{self.job}",
                grouping_key={"run_id": self.run_id},
                registry=self.registry,
                timeout=config.push_timeout_s,
            )
        except OSError as e:
            raise TransientError(f"push to {config.pushgateway_url} failed") from e
