"""Fan-in of a search (or sweep): each candidate's measured latency and accuracy -> the Pareto front.

A candidate's record (`record`) joins what its steps left: the bench's report
(p50 / p99 at batch 1, mIoU of the engine on the held-out frames), the
release's export (parameters, the framework model's mIoU), and, for a searched
net, the table's prediction and the search's cost. The front is the set of
candidates no other candidate beats on both measured latency and mIoU.
`pick` takes the most accurate candidate of the front under a latency budget.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from avfleet.core import storage
from avfleet.core.errors import ConfigError, PermanentError

FIELDS = ("name", "p50_ms", "p99_ms", "miou", "predicted_ms", "parameters", "target_ms")


def record(
    *,
    name: str,
    model_uri: str,
    release_uri: str,
    report_uri: str,
    target_ms: float | None = None,
    predicted_ms: float | None = None,
    search_uri: str = "",
    settings: dict | None = None,
    config: storage.StorageConfig | None = None,
) -> dict:
    from avfleet.deploy.export import read_export

    try:
        report = json.loads(storage.read_bytes(report_uri, config))
        p50, p99 = report["latency"]["p50_ms"], report["latency"]["p99_ms"]
        miou = report["accuracy"]["miou"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PermanentError(f"{report_uri}: not a bench report: {e}") from e
    export = read_export(release_uri, config)
    out = {
        "name": name,
        "model_uri": model_uri,
        "release_uri": release_uri,
        "report_uri": report_uri,
        "bench": report.get("bench"),
        "p50_ms": float(p50),
        "p99_ms": float(p99),
        "miou": float(miou),
        "reference_miou": float(export["reference_miou"]),
        "parameters": int(export["parameters"]),
        "target_ms": target_ms,
        "predicted_ms": predicted_ms,
        "settings": settings or {},
    }
    if search_uri:
        search = json.loads(storage.read_bytes(storage.join(search_uri, "search.json"), config))
        out["search"] = {
            "uri": search_uri,
            "process_hours": search["process_hours"],
            "device": search["device"],
            "steps": search["steps"],
        }
    return out


def parse_results(text: str) -> list[dict]:
    """The fan-in's input: Argo's aggregated output, a JSON list of each item's record (JSON text)."""
    try:
        items = json.loads(text)
        if not isinstance(items, list):
            raise ValueError("not a list")
        out = [json.loads(i) if isinstance(i, str) else i for i in items]
        for r in out:
            if not isinstance(r, dict) or not {"name", "p50_ms", "miou"} <= set(r):
                raise ValueError(f"{str(r)[:80]!r} is not a candidate record")
            float(r["p50_ms"]), float(r["miou"])
    except (ValueError, TypeError) as e:
        raise ConfigError("results", f"not a JSON list of candidate records: {e}") from e
    return out


def front(records: Iterable[dict]) -> list[dict]:
    """The records no other beats on both p50 and mIoU (ties kept), by latency."""
    records = list(records)
    out = []
    for r in records:
        dominated = any(
            o["p50_ms"] <= r["p50_ms"]
            and o["miou"] >= r["miou"]
            and (o["p50_ms"] < r["p50_ms"] or o["miou"] > r["miou"])
            for o in records
        )
        if not dominated:
            out.append(r)
    return sorted(out, key=lambda r: r["p50_ms"])


def _num(value: object, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, int | float) else "-"


def table(records: list[dict], on_front: set[str]) -> str:
    lines = [
        "| candidate | target ms | predicted ms | measured p50 ms | p99 ms | mIoU | parameters | front |",
        "|---|---|---|---|---|---|---|---|",
    ]
    num = _num
    for r in sorted(records, key=lambda r: r["p50_ms"]):
        lines.append(
            f"| {r['name']} | {num(r.get('target_ms'), '.2f')} | {num(r.get('predicted_ms'), '.3f')} "
            f"| {r['p50_ms']:.3f} | {num(r.get('p99_ms'), '.3f')} | {100 * r['miou']:.1f} "
            f"| {num(r.get('parameters'), ',')} | {'yes' if r['name'] in on_front else ''} |"
        )
    return "\n".join(lines) + "\n"


def plot_png(records: list[dict], on_front: list[dict], title: str) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([r["p50_ms"] for r in records], [100 * r["miou"] for r in records], c="grey")
    ax.plot([r["p50_ms"] for r in on_front], [100 * r["miou"] for r in on_front], "o-", c="C0")
    for r in records:
        ax.annotate(r["name"], (r["p50_ms"], 100 * r["miou"]), fontsize=7)
    ax.set_xlabel("measured p50 latency on the bench (ms, batch 1)")
    ax.set_ylabel("held-out mIoU (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def write_front(
    records: list[dict], out_uri: str, config: storage.StorageConfig | None = None
) -> dict:
    """pareto.json, pareto.md and pareto.png under out_uri; returns pareto.json's content."""
    if not records:
        raise ConfigError("results", "no candidate finished: there is no front to draw")
    best = front(records)
    names = {r["name"] for r in best}
    doc = {"candidates": records, "front": [r["name"] for r in best]}
    storage.atomic_write_text(
        storage.join(out_uri, "pareto.json"), json.dumps(doc, indent=2), config
    )
    storage.atomic_write_text(storage.join(out_uri, "pareto.md"), table(records, names), config)
    storage.atomic_write_bytes(
        storage.join(out_uri, "pareto.png"),
        plot_png(records, best, "measured latency vs held-out mIoU"),
        config,
    )
    return doc


def pick(doc: dict, budget_ms: float) -> dict:
    """The most accurate candidate of the front whose measured p50 is within the budget."""
    if not budget_ms > 0:
        raise ConfigError("budget_ms", f"must be > 0, got {budget_ms}")
    try:
        on_front = set(doc["front"])
        candidates = [r for r in doc["candidates"] if r["name"] in on_front]
    except (KeyError, TypeError) as e:
        raise PermanentError(f"not a pareto.json: {e}") from e
    fits = [r for r in candidates if r["p50_ms"] <= budget_ms]
    if not fits:
        fastest = min((r["p50_ms"] for r in candidates), default=float("nan"))
        raise PermanentError(
            f"no candidate on the front runs within {budget_ms} ms (the fastest: {fastest:.3f} ms)"
        )
    return max(fits, key=lambda r: (r["miou"], -r["p50_ms"]))
