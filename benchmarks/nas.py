"""Searched nets vs the hand-scaled family, measured on the same bench (issue 11).

One run, the same data (the training benchmarks' train / held-out sets) and the
same recipe for every net that is compared (10 epochs, batch 16 per rank, lr
0.05, 2 ranks under torchrun):

    family-W   the default net at width multiplier W (0.75 ... 2.0), seeds 0, 1 and 2: the
               baseline (the compression benchmark's runs where they exist: same recipe,
               same folders)
    search-T   a search at latency target T ms (FBNet on the bench's table, 10 epochs of
               the supernet), derived, then retrained from scratch with seeds 0, 1 and 2
    search-T'  a second search (seed 1) at the middle target: how stable is the search?
    search-T-30ep  a three times longer search at the first target: does searching longer
               separate the searched net from the family?

Every net is exported to ONNX and timed in one interleaved loop on this
machine (ONNX Runtime, one thread, batch 1, p50, best of rounds), the bench
the latency table was profiled on; mIoU is on the held-out set.

Goals: at >= 2 of 3 targets the searched net is at least as accurate as the
family at equal measured latency (the family's seed-mean mIoU interpolated at
the searched net's latency; the end family net where it lies outside); the
table's prediction of each searched net within +-10% of its measurement; the
search's cost in CPU-hours. Whether a difference is larger than the noise:
its ratio to the standard error from the seeds' pooled spread.

    python benchmarks/nas.py [--smoke] [--epochs N] [--targets 1.0,1.3,1.6]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import RESULTS, SMOKE, save  # noqa: E402
from _train_common import REPO, datasets, measured_rows, torchrun  # noqa: E402

from avfleet.latency.lut import build_table, local_profiler, save_table  # noqa: E402
from avfleet.latency.units import net_units  # noqa: E402
from avfleet.nas.latency import search_units  # noqa: E402
from avfleet.nas.space import default_space  # noqa: E402
from avfleet.train.export import INPUT_HW  # noqa: E402
from avfleet.train.loop import load_model  # noqa: E402

FAMILY = ("0.75", "1.0", "1.25", "1.5", "2.0")


def family_run(width: str, seed: int, epochs: int) -> str:
    name = "dense" if width == "2.0" else f"family-{width}"  # the compression benchmark's names
    return f"{name}-s{seed}-{epochs}ep"


def run_search(train: str, lut: str, out: pathlib.Path, target: float, seed: int, epochs: int):
    """A search under torchrun (skipped when finished), then `avfleet nas derive`."""
    if (
        not (out / "search.json").exists()
        or not json.loads((out / "search.json").read_text())["finished"]
    ):
        cmd = [str(pathlib.Path(sys.executable).parent / "torchrun"), "--standalone"]
        cmd += ["--nproc_per_node=2", str(REPO / "jobs" / "search.py"), "--dataset", train]
        cmd += ["--out", str(out), "--latency-lut", lut, "--target-latency-ms", str(target)]
        cmd += ["--epochs", str(epochs), "--seed", str(seed)]
        # The smoke set is 48 frames: half of them for alpha, small batches.
        cmd += ["--batch-size", "4", "--arch-split", "2"] if SMOKE else ["--batch-size", "16"]
        subprocess.run([*cmd, "--checkpoint-every", "200"], check=True, stdout=subprocess.DEVNULL)
    arch = out / "arch.json"
    subprocess.run(
        [sys.executable, "-m", "avfleet", "nas", "derive", "--search", str(out)]
        + ["--latency-lut", lut, "--target-ms", str(target), "--out", str(arch)],
        check=True,
    )
    return json.loads((out / "search.json").read_text()), json.loads(arch.read_text())


def family_at(latency_ms: float, family: list[tuple[float, float]]) -> float:
    """The family's mIoU at a latency: linear between its nets (sorted by latency), the end
    net's outside their range (a faster net than any family net meets the fastest one)."""
    xs, ys = zip(*sorted(family), strict=True)
    return float(np.interp(latency_ms, xs, ys))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--targets", default="1.0,1.3,1.6")
    args = parser.parse_args()
    epochs = 1 if SMOKE else args.epochs
    targets = [1.0] if SMOKE else [float(t) for t in args.targets.split(",")]
    family_widths = ("1.0",) if SMOKE else FAMILY
    seeds = (0,) if SMOKE else (0, 1, 2)
    train, test = datasets(*((64, 48) if SMOKE else (1500, 720)))
    runs = RESULTS / ("smoke-runs" if SMOKE else "runs")
    searches = RESULTS / ("smoke-nas" if SMOKE else "nas")
    space = default_space()
    lut = str(searches / "lut.json")
    cache = str(RESULTS / "cache" / "latency")
    if not pathlib.Path(lut).exists():
        save_table(build_table(search_units(space, INPUT_HW), INPUT_HW, local_profiler(cache)), lut)
    recipe = ["--batch-size", "16", "--lr", "0.05", "--checkpoint-every", "1000"]
    recipe += ["--epochs", str(epochs)]
    models, info = {}, {}
    for width in family_widths:
        for seed in seeds:
            run = runs / family_run(width, seed, epochs)
            print(f"family {width} seed {seed}", flush=True)
            torchrun(train, str(run), *recipe, "--seed", str(seed), "--width", width)
            models[(f"family-{width}", seed)] = load_model(f"{run}/model")
    plan = [(t, 0, epochs) for t in targets]  # (target, search seed, supernet epochs)
    if not SMOKE:
        plan.append((targets[len(targets) // 2], 1, epochs))  # a second search, middle target
        plan.append((targets[0], 0, 3 * epochs))  # a three times longer search
    for target, search_seed, search_epochs in plan:
        name = f"search-{target:g}ms" + (f"-search{search_seed}" if search_seed else "")
        name += f"-{search_epochs}ep" if search_epochs != epochs else ""
        print(f"{name}: searching", flush=True)
        found, derived = run_search(train, lut, searches / name, target, search_seed, search_epochs)
        info[name] = {
            "target_ms": target,
            "search_seed": search_seed,
            "search_epochs": search_epochs,
            "choice": derived["choice"],
            "predicted_ms": derived["predicted_ms"],
            "derive_changes": derived["changes"],
            "entropy_bits": derived["entropy_bits"],
            "search_cpu_hours": found["process_hours"],
            "search_seconds": found["seconds"],
            "search_steps": found["steps"],
        }
        digest = hashlib.sha256(json.dumps(derived["arch"], sort_keys=True).encode()).hexdigest()
        for seed in seeds if not search_seed else (0,):  # the longer search: every seed
            run = runs / f"{name}-{digest[:8]}-s{seed}-{epochs}ep"  # a new derivation retrains
            print(f"{name}: retraining, seed {seed}", flush=True)
            torchrun(
                train,
                str(run),
                *recipe,
                "--seed",
                str(seed),
                "--arch",
                str(searches / name / "arch.json"),
            )
            models[(name, seed)] = load_model(f"{run}/model")
    # Every net's units from the same cache (the family's odd widths too), so each has a prediction.
    units = search_units(space, INPUT_HW) + [
        u for m in models.values() for _, u in net_units(m.arch, INPUT_HW)
    ]
    table = build_table(units, INPUT_HW, local_profiler(cache))
    rows = list(measured_rows(models, table, test).values())
    out = {"epochs": epochs, "bench": table.bench, "rows": rows, "searches": info}
    out["comparison"] = compare(rows, info, epochs)
    save("nas", out)
    if not SMOKE:
        plot(rows)


def _mean(rows: list[dict], key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


def compare(rows: list[dict], info: dict, epochs: int) -> dict:
    """Per searched net: its mean mIoU vs the family's at its measured latency, and the LUT's
    error; the goal counts the first search at each target (`epochs` of supernet)."""
    by_net: dict[str, list[dict]] = {}
    for r in rows:
        by_net.setdefault(r["arm"], []).append(r)
    family = [
        (_mean(rs, "measured_ms"), _mean(rs, "miou"))
        for n, rs in by_net.items()
        if n.startswith("family-")
    ]
    # The seeds' spread, pooled over every net trained with more than one seed.
    variances = [np.var([r["miou"] for r in rs], ddof=1) for rs in by_net.values() if len(rs) > 1]
    pooled_sd = float(np.sqrt(np.mean(variances))) if variances else float("nan")
    family_seeds = min((len(rs) for n, rs in by_net.items() if n.startswith("family-")), default=1)
    out = {"seed_sd_miou": pooled_sd, "nets": {}}
    wins = 0
    for name in info:
        rs = by_net[name]
        ms, miou = _mean(rs, "measured_ms"), _mean(rs, "miou")
        baseline = family_at(ms, family)
        lut_error = rs[0]["predicted_ms"] / rs[0]["measured_ms"] - 1
        win = miou >= baseline
        if not info[name]["search_seed"] and info[name]["search_epochs"] == epochs:
            wins += win
        se = pooled_sd * np.sqrt(1 / len(rs) + 1 / family_seeds)
        out["nets"][name] = {
            "measured_ms": ms,
            "miou": miou,
            "miou_per_seed": [r["miou"] for r in rs],
            "family_miou_at_same_ms": baseline,
            "miou_vs_family": miou - baseline,
            "difference_in_standard_errors": float((miou - baseline) / se),
            "lut_error": lut_error,
            "as_accurate_at_equal_latency": bool(win),
        }
    out["targets_won"] = wins
    out["targets"] = sum(
        1 for v in info.values() if not v["search_seed"] and v["search_epochs"] == epochs
    )
    return out


def plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    fam = sorted(
        (r for r in rows if r["arm"].startswith("family-")), key=lambda r: r["measured_ms"]
    )
    ax.scatter(
        [r["measured_ms"] for r in fam],
        [100 * r["miou"] for r in fam],
        c="k",
        s=14,
        label="family (each seed)",
    )
    widths = sorted({r["arm"] for r in fam}, key=lambda n: float(n.split("-")[1]))
    means = [
        (
            _mean([r for r in fam if r["arm"] == w], "measured_ms"),
            100 * _mean([r for r in fam if r["arm"] == w], "miou"),
        )
        for w in widths
    ]
    ax.plot(*zip(*sorted(means), strict=True), "k:", lw=1, label="family, seed mean")
    for net in sorted({r["arm"] for r in rows if r["arm"].startswith("search-")}):
        pts = [r for r in rows if r["arm"] == net]
        ax.scatter([r["measured_ms"] for r in pts], [100 * r["miou"] for r in pts], s=26, label=net)
    ax.set(xlabel="measured latency, ORT 1 thread, batch 1 (ms)", ylabel="held-out mIoU (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "nas.png", dpi=120)


if __name__ == "__main__":
    main()
