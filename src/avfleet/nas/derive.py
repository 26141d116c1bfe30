"""From a finished search to the net that is retrained: argmax per variable, then the budget.

The derived net takes the most likely value of every variable (FBNet,
SqueezeNAS). Its latency is then predicted whole by the bench's table, and if
it is over the target, the cheapest fix is taken greedily: among single
changes to a faster value, the one that gives up the least log-probability
per millisecond saved, until the prediction is under the target (or nothing
faster is left, which the result says).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from avfleet.core.errors import PermanentError
from avfleet.latency.lut import LatencyTable
from avfleet.nas.space import Choice, SearchSpace, check_choice, to_arch


@dataclasses.dataclass(frozen=True)
class Derived:
    choice: Choice
    arch: dict
    predicted_ms: float
    target_ms: float | None
    changes: list[dict]
    """The budget's changes to the argmax, in order: variable, from, to, ms after."""

    @property
    def met(self) -> bool:
        return self.target_ms is None or self.predicted_ms <= self.target_ms


def log_probabilities(space: SearchSpace, alpha: dict[str, list[float]]) -> dict[str, list[float]]:
    variables = space.variables()
    out = {}
    for name, choices in variables.items():
        logits = alpha.get(name)
        if logits is None or len(logits) != len(choices):
            raise PermanentError(
                f"the search's alpha has no {len(choices)} values for {name!r}: "
                "it was run over another space"
            )
        out[name] = torch.log_softmax(torch.tensor(logits, dtype=torch.float64), 0).tolist()
    return out


def derive(
    space: SearchSpace,
    alpha: dict[str, list[float]],
    table: LatencyTable,
    target_ms: float | None = None,
) -> Derived:
    variables = space.variables()
    logp = log_probabilities(space, alpha)
    choice = {n: variables[n][max(range(len(v)), key=v.__getitem__)] for n, v in logp.items()}
    check_choice(space, choice)

    def ms(c: Choice) -> float:
        return table.predict(to_arch(space, c)).total_ms

    current, changes = ms(choice), []
    while target_ms is not None and current > target_ms:
        best = None
        for name, values in variables.items():
            here = logp[name][values.index(choice[name])]
            for j, value in enumerate(values):
                if value == choice[name]:
                    continue
                trial = {**choice, name: value}
                saved = current - ms(trial)
                if saved <= 1e-9:
                    continue
                cost = (here - logp[name][j]) / saved  # log-probability given up per ms
                if best is None or cost < best[0]:
                    best = (cost, name, value, current - saved)
        if best is None:
            break
        _, name, value, after = best
        changes.append({"variable": name, "from": choice[name], "to": value, "ms": after})
        choice, current = {**choice, name: value}, after
    return Derived(choice, to_arch(space, choice), current, target_ms, changes)


def entropy_bits(space: SearchSpace, alpha: dict[str, list[float]]) -> dict[str, float]:
    """How undecided the search left each variable (0: certain; log2(n): uniform)."""
    return {
        n: -sum(math.exp(lp) * lp for lp in v) / math.log(2)
        for n, v in log_probabilities(space, alpha).items()
    }
