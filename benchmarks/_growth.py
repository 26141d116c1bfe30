"""Shared by the growth benchmarks: fit cost = a * size^k over sizes measured in one run, and plot.

A stage scales as designed when k stays near 1 for its cost (time, requests, bytes) and near 0
for the memory of whatever coordinates it (a driver, a selector's working set beyond its input).
"""

from __future__ import annotations

import math
import pathlib


def exponent(sizes: list[float], costs: list[float]) -> float:
    """k of the least-squares fit of log(cost) = log(a) + k log(size)."""
    xs = [math.log(s) for s in sizes]
    ys = [math.log(max(c, 1e-12)) for c in costs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def plot(
    path: pathlib.Path, title: str, size_label: str, series: dict[str, tuple[list, list]]
) -> None:
    """One log-log panel per series name -> (sizes, values), with the fitted exponent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.4), squeeze=False)
    for ax, (name, (sizes, values)) in zip(axes[0], series.items(), strict=True):
        ax.loglog(sizes, values, "o-")
        ax.set_title(f"{name}\nk = {exponent(sizes, values):.2f}", fontsize=9)
        ax.set_xlabel(size_label)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
