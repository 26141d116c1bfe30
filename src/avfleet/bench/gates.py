"""The gates a bench report must pass before a model is promoted (pure logic).

- latency: p99 at the bench's batch within the budget;
- parity: the engine's logits against the framework model's on the same frames
  (max absolute error, and the share of pixels whose argmax class agrees);
- accuracy: mIoU on the validation frames may drop at most `max_miou_drop`
  (absolute, 0.01 = one point) below the framework model's on the same frames.

A model that misses any gate is never promoted; the verdict names every miss.
"""

from __future__ import annotations

import dataclasses

from avfleet.core.errors import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True)
class Gates:
    latency_p99_ms: float = 50.0
    """Budget for the p99 latency of one frame on the bench."""
    max_abs_error: float = 0.05
    """Largest allowed absolute logit difference from the framework model."""
    min_argmax_agreement: float = 0.99
    """Share of pixels whose predicted class must match the framework model's."""
    max_miou_drop: float = 0.01
    """Largest allowed mIoU drop (absolute) below the framework model on the same frames."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if getattr(self, field.name) < 0:
                raise ConfigError(field.name, "must not be negative")
        if self.min_argmax_agreement > 1:
            raise ConfigError("min_argmax_agreement", "is a share: at most 1")

    @classmethod
    def from_dict(cls, doc: dict) -> Gates:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - names)
        if unknown:
            raise ConfigError("gates", f"unknown gates {unknown} (known: {sorted(names)})")
        return cls(**{k: float(v) for k, v in doc.items()})


BOUNDS = {
    "latency_p99_ms": (0.0, 1000.0),
    "max_abs_error": (0.0, 0.5),
    "min_argmax_agreement": (0.9, 1.0),
    "max_miou_drop": (0.0, 0.05),
}
"""What a promotion policy may set each gate to: a looser gate than these is a policy error."""


def policy_gates(doc: object, source: str) -> Gates:
    """The gates of a promotion policy document ({"gates": {...}}), each within BOUNDS."""
    if not isinstance(doc, dict) or set(doc) != {"gates"} or not isinstance(doc["gates"], dict):
        raise ConfigError("policy", f"{source}: expected a mapping with one key, gates")
    missing = sorted(set(BOUNDS) - set(doc["gates"]))
    if missing:
        raise ConfigError("policy", f"{source}: gates {missing} are not set")
    for name, value in doc["gates"].items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError("policy", f"{source}: gate {name} must be a number")
    gates = Gates.from_dict(doc["gates"])
    for name, (low, high) in BOUNDS.items():
        value = getattr(gates, name)
        if not low <= value <= high:
            raise ConfigError(
                "policy", f"{source}: gate {name}={value:g} is outside [{low:g}, {high:g}]"
            )
    return gates


@dataclasses.dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str]
    """One line per gate missed; empty when passed."""
    checks: dict[str, dict]
    """Every gate: the measured value, the limit, and whether it passed."""


def judge(report: dict, reference_miou: float, gates: Gates) -> Verdict:
    """The verdict on a bench report (avfleet.bench.measure's fields)."""
    p99 = report["latency"]["p99_ms"]
    error = report["parity"]["max_abs_error"]
    agreement = report["parity"]["argmax_agreement"]
    drop = reference_miou - report["accuracy"]["miou"]
    checks = {
        "latency_p99_ms": {
            "value": p99,
            "limit": gates.latency_p99_ms,
            "passed": p99 <= gates.latency_p99_ms,
        },
        "max_abs_error": {
            "value": error,
            "limit": gates.max_abs_error,
            "passed": error <= gates.max_abs_error,
        },
        "argmax_agreement": {
            "value": agreement,
            "limit": gates.min_argmax_agreement,
            "passed": agreement >= gates.min_argmax_agreement,
        },
        "miou_drop": {
            "value": drop,
            "limit": gates.max_miou_drop,
            "passed": drop <= gates.max_miou_drop,
        },
    }
    words = {
        "latency_p99_ms": f"p99 latency {p99:.2f} ms is over the {gates.latency_p99_ms:g} ms budget",
        "max_abs_error": f"max abs logit error {error:.3g} is over {gates.max_abs_error:g}",
        "argmax_agreement": f"argmax agreement {agreement:.4f} is under {gates.min_argmax_agreement:g}",
        "miou_drop": (
            f"mIoU {100 * report['accuracy']['miou']:.1f} is {100 * drop:.1f} points under the "
            f"framework model's {100 * reference_miou:.1f} (allowed {100 * gates.max_miou_drop:.1f})"
        ),
    }
    reasons = [words[name] for name, check in checks.items() if not check["passed"]]
    return Verdict(not reasons, reasons, checks)
