"""Compression judged by measured latency: pruning, the hand-scaled family, ExpandNets, low rank.

One run, the same data (the train/held-out sets of the training benchmarks)
and the same epoch budget for every arm; every net exported to ONNX and timed
on ONNX Runtime, batch 1, one thread, p50, best of interleaved rounds.

    dense         the width-2 net
    family-W      the hand-scaled family: width multiplier W, trained from scratch
    pruned-Sx     width 2, latency-aware joint training + pruning, budget = dense / S
                  (predicted by the bench's latency table)
    expand-w1     the width-1 net trained as ExpandNets (r = 2), contracted
    lowrank       width 2 with the nuclear-norm term and the SVD reload
    lowrank+pruned-2x

Goals (issue 10): vs dense >= 50% parameters removed, <= 1 mIoU lost, >= 1.5x
measured latency; pruned >= the family at equal measured latency; ExpandNets
>= +1 mIoU for the compact net; several seeds for the headline arms.

    python benchmarks/compression.py [--smoke] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _common import RESULTS, SMOKE, save  # noqa: E402
from _train_common import datasets, measured_rows, torchrun  # noqa: E402

from avfleet.latency.lut import build_table, load_table, local_profiler, pruning_units, save_table  # noqa: E402
from avfleet.latency.units import net_units  # noqa: E402
from avfleet.train.export import INPUT_HW  # noqa: E402
from avfleet.train.loop import load_model  # noqa: E402
from avfleet.train.models import build, default_arch, num_parameters  # noqa: E402


def arms(smoke: bool) -> list[tuple[str, int, list[str]]]:
    """(name, seed, extra train args). LAT:S: a latency budget, the dense net's table-predicted
    latency / S; PARAMS:F: a parameter budget, F of the dense net's parameters."""
    if smoke:
        return [
            ("dense", 0, ["--width", "1.0"]),
            ("pruned-2x", 0, ["--width", "1.0", "LAT:2", "PARAMS:0.5"]),
        ]
    seeds = (0, 1)
    out = [("dense", s, ["--width", "2.0"]) for s in seeds]
    out += [("family-0.75", 0, ["--width", "0.75"])]
    out += [(f"family-{w}", s, ["--width", w]) for w in ("1.0", "1.25", "1.5") for s in seeds]
    out += [
        (f"pruned-{b}x", s, ["--width", "2.0", f"LAT:{b}"]) for b in ("1.5", "2") for s in seeds
    ]
    out += [("pruned-3x", 0, ["--width", "2.0", "LAT:3"])]
    out += [
        ("pruned-1.5x+params-0.5", s, ["--width", "2.0", "LAT:1.5", "PARAMS:0.5"]) for s in seeds
    ]
    out += [("expand-w1", s, ["--width", "1.0", "--expand-ratio", "2"]) for s in seeds]
    out += [("lowrank", 0, ["--width", "2.0", "--low-rank", "0.1"])]
    out += [
        ("lowrank+pruned-2x", s, ["--width", "2.0", "--low-rank", "0.1", "LAT:2"]) for s in seeds
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    smoke = SMOKE  # --smoke, taken out of argv by _common
    epochs = 1 if smoke else args.epochs
    train, test = datasets(*((64, 48) if smoke else (1500, 720)))
    runs = RESULTS / ("smoke-runs" if smoke else "runs")
    lut_uri = str(runs / "lut.json")
    widths = {"1.0"} if smoke else {"2.0", "1.0"}
    if not pathlib.Path(lut_uri).exists():
        units = [u for w in widths for u in pruning_units(default_arch(width=float(w)), INPUT_HW)]
        save_table(
            build_table(units, INPUT_HW, local_profiler(str(RESULTS / "cache" / "latency"))),
            lut_uri,
        )
    table = load_table(lut_uri)
    recipe = [
        "--batch-size",
        "16",
        "--lr",
        "0.05",
        "--checkpoint-every",
        "1000",
        "--epochs",
        str(epochs),
    ]
    models = {}
    for name, seed, extra in arms(smoke):
        train_args = []
        width = float(extra[extra.index("--width") + 1])
        dense = default_arch(width=width)
        for a in extra:
            if a.startswith("LAT:"):
                target = table.predict(dense).total_ms / float(a.split(":")[1])
                train_args += ["--target-latency-ms", f"{target:.4f}", "--latency-lut", lut_uri]
            elif a.startswith("PARAMS:"):
                params = int(num_parameters(build(dense)) * float(a.split(":")[1]))
                train_args += ["--target-params", str(params)]
            else:
                train_args.append(a)
        run = str(runs / f"{name}-s{seed}-{epochs}ep")
        print(f"training {name} seed {seed}", flush=True)
        result = torchrun(train, run, *recipe, "--seed", str(seed), *train_args)
        models[(name, seed)] = (load_model(f"{run}/model"), result)
    # Every final net's own units too (the family's odd widths, the low-rank ranks), from the
    # same cache, so each arm gets a prediction beside its measurement.
    final_units = [u for m, _ in models.values() for _, u in net_units(m.arch, INPUT_HW)]
    table = build_table(
        [*final_units, *(json.loads(k) for k in table.entries)],
        INPUT_HW,
        local_profiler(str(RESULTS / "cache" / "latency")),
    )
    measured = measured_rows({k: m for k, (m, _) in models.items()}, table, test)
    rows = [
        {**measured[key], "budget": (result.get("compression") or {}).get("budget")}
        for key, (_, result) in models.items()
    ]
    out = {"epochs": epochs, "bench": table.bench, "rows": rows}
    save("compression", out)
    if not smoke:
        _plot(rows)


def _plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for arm in sorted({r["arm"] for r in rows}):
        pts = [r for r in rows if r["arm"] == arm]
        ax.scatter([r["measured_ms"] for r in pts], [100 * r["miou"] for r in pts], label=arm, s=20)
    fam = sorted(
        (r for r in rows if r["arm"].startswith("family") or r["arm"] == "dense"),
        key=lambda r: r["measured_ms"],
    )
    ax.plot([r["measured_ms"] for r in fam], [100 * r["miou"] for r in fam], "k:", lw=0.8)
    ax.set(xlabel="measured latency, ORT 1 thread, batch 1 (ms)", ylabel="held-out mIoU")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "compression.png", dpi=120)


if __name__ == "__main__":
    main()
