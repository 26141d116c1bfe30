"""Shared by the benchmarks: a cached generated fleet and result output."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import platform
import re
import shutil
import sys
import tempfile
import time

from avfleet.fleet.generate import generate_fleet
from avfleet.fleet.world import FleetSpec
from avfleet.recording import layout

RESULTS = pathlib.Path(
    os.environ.get("AVFLEET_BENCH_RESULTS") or pathlib.Path(__file__).resolve().parent / "results"
)
"""Where results, plots and caches go; the smoke tests point it at a temporary folder."""

SMOKE = "--smoke" in sys.argv
"""`--smoke`: tiny sizes (a fleet of 2 vehicles x 1 minute, 48 training frames, 1 epoch), so the
test suite runs every benchmark end to end and none can rot. Taken out of sys.argv here, before
the scripts read their positional arguments."""
if SMOKE:
    sys.argv.remove("--smoke")


def cached_fleet(spec: FleetSpec, **layout_options: int) -> str:
    """Generate `spec` once under benchmarks/results/cache and reuse it (tiny in smoke mode).

    `layout_options` go to `recording_bytes` (format_version, signal_zstd_level).
    """
    if SMOKE:
        spec = dataclasses.replace(
            spec, vehicles=min(spec.vehicles, 2), minutes_per_day=min(spec.minutes_per_day, 1.0)
        )
    options = {"format_version": layout.FORMAT_VERSION, **layout_options}
    key = hashlib.sha1(f"{spec.to_json()}|{sorted(options.items())}".encode()).hexdigest()[:12]
    root = RESULTS / "cache" / f"fleet-{key}"
    done = root / ".complete"
    if not done.exists():
        started = time.time()
        generate_fleet(spec, str(root), workers=2, show_progress=True, **options)
        done.write_text(f"{time.time() - started:.1f}s\n")
    return str(root)


@contextlib.contextmanager
def scratch_dir(prefix: str):  # noqa: ANN201 (a generator context manager)
    """A temporary folder removed on the way out, even when the run fails: the growth runs
    write hundreds of MB each, and leaked folders once filled the disk under CI."""
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def proc_memory_bytes(field: str, pid: int | str = "self") -> int:
    """A process's VmRSS or VmHWM (its peak since start or the last reset) from /proc, bytes."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def in_fresh_process(script: str, *args: str) -> dict:
    """`python script args...` in a new process (so its peak memory is its own): the JSON
    object its last line of output prints."""
    import subprocess

    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(
            f"{script} {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def save(name: str, result: dict) -> None:
    """RESULTS/<name>.json (<name>-smoke.json in smoke mode: a smoke run never overwrites a result)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"{name}-smoke" if SMOKE else name
    result = {
        "benchmark": name,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        **result,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def best_p50_ms(runners: dict, frame: object, *, warmup: int, runs: int, rounds: int) -> dict:
    """Each runner's p50 milliseconds on `frame`: the best of `rounds` rounds, interleaved over
    the runners so that drift on the machine hits them all alike."""
    from avfleet.bench.measure import latency_ms

    best = {key: float("inf") for key in runners}
    for _ in range(rounds):
        for key, run in runners.items():
            best[key] = min(best[key], latency_ms(run, frame, warmup, runs)["p50_ms"])
    return best


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


@contextlib.contextmanager
def counted_s3(bucket: str):  # noqa: ANN201
    """moto's S3 server in this process with `bucket` made: yields (StorageConfig, counts), where
    counts is a Counter of the requests the server has answered, by method (clear it to start a
    measurement). Counted on the server's side, from werkzeug's request log, so every client
    (this process, Spark's workers) is seen. Sets the AWS variables first: start Spark inside."""
    from moto.server import ThreadedMotoServer

    from avfleet.core import storage
    from avfleet.core.net import free_port

    os.environ.update(S3_ENV)
    counter = _RequestCounter()
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.addHandler(counter)
    werkzeug.setLevel(logging.INFO)
    werkzeug.propagate = False
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        st = storage.StorageConfig(
            s3_endpoint_url=f"http://127.0.0.1:{port}", s3_region=S3_ENV["AWS_DEFAULT_REGION"]
        )
        storage.filesystem(f"s3://{bucket}", st).mkdir(
            bucket, region_name=S3_ENV["AWS_DEFAULT_REGION"]
        )
        yield st, counter.counts
    finally:
        server.stop()
        werkzeug.removeHandler(counter)


class _RequestCounter(logging.Handler):
    """Counts the requests moto's server answers, by method, from werkzeug's request log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        # '... "GET /bucket/key HTTP/1.1" 206 -', coloured with ANSI codes for some statuses
        found = re.search(r"(GET|PUT|POST|HEAD|DELETE) /", record.getMessage())
        if found:
            self.counts[found.group(1)] += 1


def difference_lines(summary: dict) -> list[str]:
    """One line per paired difference in a summary (entries with beyond_2_std): mean ± std over
    seeds, and whether the mean exceeds twice the spread."""
    return [
        f"- {key}: {value['mean']:+.1f} ± {value['std']:.1f} points over {value['n']} seeds"
        + (" (beyond 2 std)" if value["beyond_2_std"] else " (within 2 std)")
        for key, value in summary.items()
        if isinstance(value, dict) and "beyond_2_std" in value
    ]
