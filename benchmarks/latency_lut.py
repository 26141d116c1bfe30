"""Does the latency table predict whole nets? Sampled architectures, predicted vs measured, one bench.

For N architectures sampled from the SegNet family (width multiplier, every
prunable width on its grid, kernel 3 or 5, k x 1 / 1 x k decomposition or
not, dilation 1 or 2, expansion 1/3/6, some low-rank factored 1x1s), the
table's prediction (sum of the units measured alone, plus one call) against
the whole net exported to ONNX and measured on the same ONNX Runtime, batch 1,
one thread, p50, best of interleaved rounds. Goal: >= 90% of the nets within
+-10% (aim 95%); the worst error is reported.

    python benchmarks/latency_lut.py [--smoke]
"""

from __future__ import annotations

import pathlib
import random
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import RESULTS, SMOKE, best_p50_ms, save  # noqa: E402

from avfleet.bench.engines import ort_runner  # noqa: E402
from avfleet.latency.lut import build_table, local_profiler  # noqa: E402
from avfleet.latency.units import net_units  # noqa: E402
from avfleet.latency.widths import width_choices, width_variables, with_widths  # noqa: E402
from avfleet.train.export import INPUT_HW, export_onnx  # noqa: E402
from avfleet.train.models import build, default_arch  # noqa: E402


def sample_arch(rng: random.Random) -> dict:
    arch = default_arch(
        width=rng.choice([0.5, 1.0, 1.5, 2.0]),
        expansion=rng.choice([1, 3, 6]),
        decompose=rng.random() < 0.5,
    )
    for spec in arch["blocks"]:
        spec["kernel"] = rng.choice([3, 5])
        if spec["stride"] == 1:
            spec["dilation"] = rng.choice([1, 2])
    arch = with_widths(
        arch, {v.name: rng.choice(width_choices(v.size)) for v in width_variables(arch)}
    )
    for spec in arch["blocks"]:
        if rng.random() < 0.25:
            spec["project_rank"] = max(4, spec["hidden"] // 4)
    return arch


def main(smoke: bool = SMOKE) -> dict:
    import torch

    rng = random.Random(7)
    archs = [sample_arch(rng) for _ in range(3 if smoke else 24)]
    started = time.time()
    units = [u for a in archs for _, u in net_units(a, INPUT_HW)]
    table = build_table(units, INPUT_HW, local_profiler(str(RESULTS / "cache" / "latency")))
    profile_s = time.time() - started
    torch.manual_seed(0)
    runners = {i: ort_runner(export_onnx(build(a).eval(), *INPUT_HW)) for i, a in enumerate(archs)}
    frame = np.random.default_rng(0).random((1, 3, *INPUT_HW), dtype=np.float32)
    best = best_p50_ms(
        runners, frame, warmup=10, runs=30 if smoke else 200, rounds=2 if smoke else 3
    )
    measured = [best[i] for i in range(len(archs))]
    predicted = [table.predict(a).total_ms for a in archs]
    errors = [p / m - 1 for p, m in zip(predicted, measured, strict=True)]
    within = sum(abs(e) <= 0.10 for e in errors) / len(errors)
    result = {
        "nets": len(archs),
        "bench": table.bench,
        "units_in_table": len(table.entries),
        "profile_s": profile_s,
        "share_within_10pct": within,
        "worst_error": max(errors, key=abs),
        "mean_error": float(np.mean(errors)),
        "per_net": [
            {"predicted_ms": p, "measured_ms": m, "error": e}
            for p, m, e in zip(predicted, measured, errors, strict=True)
        ],
        "goal": ">= 90% of sampled nets within +-10% (aim 95%)",
    }
    save("latency_lut", result)
    if not smoke:
        _plot(measured, predicted)
    return result


def _plot(measured: list[float], predicted: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(measured, predicted, s=14)
    hi = max(measured + predicted) * 1.05
    ax.plot([0, hi], [0, hi], "k-", lw=0.8)
    ax.fill_between([0, hi], [0, 0.9 * hi], [0, 1.1 * hi], color="grey", alpha=0.2, label="+-10%")
    ax.set(
        xlabel="measured (ms)", ylabel="LUT-predicted (ms)", title="whole-net latency, ORT 1 thread"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "latency_lut.png", dpi=120)


if __name__ == "__main__":
    main()
