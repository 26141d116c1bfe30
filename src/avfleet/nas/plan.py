"""The items a map job fans out over: latency targets (nas) or a hyperparameter grid (sweep).

Both are a JSON list of flat objects with a `name` (Argo names each item's
node after it), so `nas` and `sweep` are one fan-out mechanism with two
plans. Values come from workflow parameters and end up in a job's argv:
only numbers pass, and only for the names below.
"""

from __future__ import annotations

import itertools
import math

from avfleet.core.errors import ConfigError

MAX_ITEMS = 64
SWEEPABLE = {"lr": "0.05", "group_sparsity": "0", "width": "1"}
"""What a sweep may vary (each a training flag of the deployable net), with the value an item
takes when the grid leaves it out: every item sets all of them, so the sweep's training
job is one manifest."""


def _number(text: str, what: str) -> str:
    try:
        value = float(text)
    except ValueError as e:
        raise ConfigError(what, f"{text!r} is not a number") from e
    if not math.isfinite(value) or value < 0:
        raise ConfigError(what, f"{text!r} must be a finite number >= 0")
    return f"{value:g}"


def plan_targets(text: str) -> list[dict]:
    """'1.0,1.5,2' -> [{"name": "t1", "target_ms": "1"}, ...] (ascending, no repeats)."""
    values = sorted({float(_number(t.strip(), "targets")) for t in text.split(",") if t.strip()})
    if not values or any(v <= 0 for v in values):
        raise ConfigError("targets", f"a comma-separated list of latencies > 0 ms, got {text!r}")
    if len(values) > MAX_ITEMS:
        raise ConfigError("targets", f"at most {MAX_ITEMS} targets, got {len(values)}")
    return [{"name": f"t{v:g}ms", "target_ms": f"{v:g}"} for v in values]


def plan_grid(text: str) -> list[dict]:
    """'lr=0.02,0.05;group_sparsity=0,0.005' -> every combination, named by the swept values."""
    axes: dict[str, list[str]] = {}
    for pair in (p for p in text.split(";") if p.strip()):
        name, sep, values = pair.partition("=")
        name = name.strip()
        if not sep or name not in SWEEPABLE:
            raise ConfigError(
                "grid", f"{pair!r}: expected NAME=v1,v2 with NAME one of {', '.join(SWEEPABLE)}"
            )
        axes[name] = [_number(v.strip(), f"grid.{name}") for v in values.split(",") if v.strip()]
        if not axes[name]:
            raise ConfigError("grid", f"{pair!r} has no values")
    if not axes:
        raise ConfigError("grid", "give at least one NAME=v1,v2")
    combos = list(itertools.product(*axes.values()))
    if len(combos) > MAX_ITEMS:
        raise ConfigError("grid", f"{len(combos)} combinations; at most {MAX_ITEMS}")
    return [
        {
            "name": "-".join(f"{k}{v}" for k, v in zip(axes, combo, strict=True)),
            **SWEEPABLE,
            **dict(zip(axes, combo, strict=True)),
        }
        for combo in combos
    ]
