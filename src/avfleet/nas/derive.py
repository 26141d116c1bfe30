"""From a finished search to the net that is retrained: argmax per variable, then the budget.

The derived net takes the most likely value of every variable (FBNet,
SqueezeNAS). Its latency is then predicted whole by the bench's table, and if
it is over the target, it is fixed greedily, one variable at a time:

* when some single change reaches the target, the one that gives up the least
  log-probability; otherwise the one that gives up the least per millisecond
  saved (a ratio alone overshoots: a net 0.01 ms over would drop its decoder
  to a third, the change with the most milliseconds per nat);
* then the slack is filled back: while a single change to a more likely value
  stays within the target, the one that gains the most log-probability.

If nothing faster is left, the result says the target was not met.
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

    def moves(c: Choice):
        """(variable, value, log-probability gained, ms after) of every single change."""
        for name, values in variables.items():
            here = logp[name][values.index(c[name])]
            for j, value in enumerate(values):
                if value != c[name]:
                    yield name, value, logp[name][j] - here, ms({**c, name: value})

    current, changes = ms(choice), []
    while target_ms is not None and current > target_ms:
        faster = [m for m in moves(choice) if m[3] < current - 1e-9]
        if not faster:
            break
        reaching = [m for m in faster if m[3] <= target_ms]
        if reaching:
            name, value, _, after = max(reaching, key=lambda m: m[2])
        else:  # the least log-probability given up per ms saved
            name, value, _, after = max(faster, key=lambda m: m[2] / (current - m[3]))
        changes.append({"variable": name, "from": choice[name], "to": value, "ms": after})
        choice, current = {**choice, name: value}, after
    while target_ms is not None and current <= target_ms:
        back = [m for m in moves(choice) if m[2] > 1e-12 and m[3] <= target_ms]
        if not back:
            break
        name, value, _, after = max(back, key=lambda m: m[2])
        changes.append({"variable": name, "from": choice[name], "to": value, "ms": after})
        choice, current = {**choice, name: value}, after
    return Derived(choice, to_arch(space, choice), current, target_ms, changes)


def entropy_bits(space: SearchSpace, alpha: dict[str, list[float]]) -> dict[str, float]:
    """How undecided the search left each variable (0: certain; log2(n): uniform)."""
    return {
        n: -sum(math.exp(lp) * lp for lp in v) / math.log(2)
        for n, v in log_probabilities(space, alpha).items()
    }
