"""Shared by the growth benchmarks: fit cost = a * size^k over sizes measured in one run, and plot.

A stage scales as designed when k stays near 1 for its cost (time, requests, bytes) and near 0
for the memory of whatever coordinates it (a driver, a selector's working set beyond its input).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable

from _common import RESULTS, SMOKE


def exponent(sizes: list[float], costs: list[float]) -> float:
    """k of the least-squares fit of log(cost) = log(a) + k log(size)."""
    xs = [math.log(s) for s in sizes]
    ys = [math.log(max(c, 1e-12)) for c in costs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def replot(name: str, figure: Callable[[dict], None]) -> bool:
    """With `--plot`, draw `figure` from RESULTS/<name>.json, the last run's saved result, instead
    of measuring again; True if it did."""
    if "--plot" not in sys.argv:
        return False
    figure(json.loads((RESULTS / f"{name}{'-smoke' if SMOKE else ''}.json").read_text()))
    return True


def plot(name: str, title: str, size_label: str, series: dict[str, tuple[list, list]]) -> None:
    """RESULTS/<name>.png: one panel per series label -> (sizes, values), with the fitted
    exponent; at most 3 panels a row. Sizes are on a log axis; costs on a log axis too, and
    memory (a label ending in "MiB") on a linear one from 0, so that a flat line looks flat."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    cols = min(3, len(series))
    rows = -(-len(series) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(series) :]:
        ax.set_visible(False)
    for ax, (label, (sizes, values)) in zip(axes.flat, series.items(), strict=False):
        ax.plot(sizes, values, "o-")
        ax.set_xscale("log")
        if label.endswith("MiB"):
            ax.set_ylim(0, max(values) * 1.15)
        else:
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{label}\nk = {exponent(sizes, values):.2f}", fontsize=9)
        ax.set_xlabel(size_label)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = RESULTS / f"{name}{'-smoke' if SMOKE else ''}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
