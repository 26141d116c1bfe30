"""Selection's cost as the candidates grow: 10k -> 1M candidates (smoke: 1k -> 8k), budget fixed.

`mining.select.select` with the default strategy (temporal de-duplication, domain quotas,
k-center inside each domain's pool) on synthetic candidates: 8 domains with skewed shares,
recordings of 600 frames at 10 Hz, random scores and class-probability embeddings. Measured in
one run at each size: wall time and the peak memory Python allocates during the call
(tracemalloc: numpy and pandas buffers included), beside the candidates' own size. Fitted cost
exponents: time and working memory should grow no faster than the candidates (k <= 1.05); the
k-center step's memory is its pool's, which the budget bounds, not the candidate count.
"""

from __future__ import annotations

import pathlib
import sys
import time
import tracemalloc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _common import SMOKE, save  # noqa: E402
from _growth import exponent, plot, replot  # noqa: E402

from avfleet.mining.select import SelectionConfig, select  # noqa: E402

SIZES = (1_000, 2_000, 4_000, 8_000) if SMOKE else (10_000, 30_000, 100_000, 300_000, 1_000_000)
BUDGET = 100 if SMOKE else 2_000
CLASSES = 8
DOMAINS = [
    ("day", "clear", "urban"),
    ("day", "clear", "freeway"),
    ("day", "rain", "urban"),
    ("night", "clear", "urban"),
    ("twilight", "clear", "urban"),
    ("day", "fog", "freeway"),
    ("day", "snow", "urban"),
    ("night", "rain", "urban"),
]
SHARES = np.array([0.40, 0.25, 0.12, 0.08, 0.06, 0.04, 0.03, 0.02])


def candidates(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames_per_recording = 600
    recording = np.arange(n) // frames_per_recording
    domain = rng.choice(len(DOMAINS), size=recording.max() + 1, p=SHARES)[recording]
    probs = rng.dirichlet(np.ones(CLASSES), size=n).astype(np.float32)
    scores = rng.random((n, 3))
    return pd.DataFrame(
        {
            "frame_id": [f"f{i:08d}" for i in range(n)],
            "recording_id": [f"r{r:06d}" for r in recording],
            "log_time_ns": (np.arange(n) % frames_per_recording) * 100_000_000,
            "time_of_day": [DOMAINS[d][0] for d in domain],
            "weather": [DOMAINS[d][1] for d in domain],
            "road_type": [DOMAINS[d][2] for d in domain],
            "mutual_information": scores[:, 0],
            "predictive_entropy": scores[:, 1],
            "variation_ratio": scores[:, 2],
            "class_probability": list(probs),
        }
    )


def measure(n: int) -> dict:
    frames = candidates(n)
    input_bytes = int(frames.memory_usage(deep=True).sum()) + n * CLASSES * 4
    config = SelectionConfig(budget=BUDGET)
    tracemalloc.start()
    started = time.perf_counter()
    picked = select(frames, config)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "candidates": n,
        "selected": len(picked),
        "seconds": seconds,
        "candidates_per_s": n / seconds,
        "peak_traced_bytes": peak,
        "input_bytes": input_bytes,
        "peak_over_input": peak / input_bytes,
    }


def main() -> None:
    runs = []
    for n in SIZES:
        runs.append(measure(n))
        print(
            f"{n:>9,} candidates: {runs[-1]['seconds']:.2f} s, peak {runs[-1]['peak_traced_bytes'] / 2**20:.0f} MiB",
            flush=True,
        )
    sizes = [r["candidates"] for r in runs]
    fits = {
        "time": exponent(sizes, [r["seconds"] for r in runs]),
        "peak_memory": exponent(sizes, [r["peak_traced_bytes"] for r in runs]),
    }
    save(
        "selection_growth",
        {
            "goal": "time and peak memory exponents <= 1.05",
            "budget": BUDGET,
            "runs": runs,
            "exponents": fits,
            "met": all(k <= 1.05 for k in fits.values()),
        },
    )
    figure({"budget": BUDGET, "runs": runs})


def figure(result: dict) -> None:
    runs = result["runs"]
    sizes = [r["candidates"] for r in runs]
    plot(
        "selection_growth",
        f"selection at budget {result['budget']}: cost vs candidates",
        "candidates",
        {
            "seconds": (sizes, [r["seconds"] for r in runs]),
            "peak traced MiB": (sizes, [r["peak_traced_bytes"] / 2**20 for r in runs]),
        },
    )


if __name__ == "__main__" and not replot("selection_growth", figure):
    main()
