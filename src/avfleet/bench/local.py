"""A bench validation on one machine: local agents and the operator's loop, without a cluster.

What the local executor runs for a BenchValidation resource, and what the
demo and tests use: the same `probe` and `step` the kopf operator calls,
driven here by a plain loop over in-memory resources.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator

from avfleet.bench import scheduler
from avfleet.bench.agent import AgentConfig, serve
from avfleet.bench.client import BenchClient
from avfleet.core import storage
from avfleet.core.errors import TransientError
from avfleet.core.net import free_port


@contextlib.contextmanager
def local_agent(
    cache_uri: str,
    read_prefixes: tuple[str, ...],
    token: str | None = None,
    target: str = "",
    threads: int = 1,
    storage_config: storage.StorageConfig | None = None,
) -> Iterator[dict]:
    """A bench agent on localhost (ONNX Runtime) in this process; yields its XavierBench spec.

    `read_prefixes`: where it may read models and bundles from (the releases' folder)."""
    config = AgentConfig(
        token=token or secrets.token_hex(16),
        cache_uri=cache_uri,
        read_prefixes=tuple(read_prefixes),
        port=free_port(),
        target=target,
        threads=threads,
        storage=storage_config or storage.StorageConfig(),
    )
    server = serve(config)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "address": f"http://127.0.0.1:{config.port}",
            "target": target,
            "token": config.token,
        }
    finally:
        server.shutdown()
        server.server_close()


def run_validation(
    name: str,
    spec: dict,
    benches: dict[str, dict],
    *,
    poll_s: float = 0.5,
    timeout_s: float = 1800.0,
    storage_config: storage.StorageConfig | None = None,
    reports_prefix: str | None = None,
    on_status=None,  # noqa: ANN001 - a callback for progress lines
) -> dict:
    """Drive validation `name` to a terminal phase over `benches` (name -> spec with a token).

    `reports_prefix`: where reports may go (default: the folder of the spec's reportUri,
    as the local executor writes its own manifest)."""
    if reports_prefix is None:
        reports_prefix = spec["reportUri"].rsplit("/", 1)[0]

    def client_for(bench_spec: dict) -> BenchClient:
        return BenchClient(bench_spec["address"], bench_spec["token"])

    bench_states = {n: {"spec": s, "status": {}} for n, s in benches.items()}
    validation = {"spec": spec, "status": {}}
    deadline = time.monotonic() + timeout_s
    while True:
        for bench in bench_states.values():
            bench["status"] = scheduler.probe(bench["spec"], client_for(bench["spec"]))
        patch = scheduler.step(
            name,
            spec,
            validation["status"],
            bench_states,
            {name: validation},
            client_for,
            storage_config,
            reports_prefix=reports_prefix,
        )
        if patch:
            validation["status"] = {**validation["status"], **patch}
            if on_status:
                on_status(validation["status"])
        if validation["status"].get("phase") in scheduler.TERMINAL:
            return validation["status"]
        if time.monotonic() > deadline:
            raise TransientError(
                f"validation {name} did not finish in {timeout_s:.0f} s "
                f"(last: {validation['status'].get('message')})"
            )
        time.sleep(poll_s)
