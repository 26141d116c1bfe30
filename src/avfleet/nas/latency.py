"""Latency of the search space from the bench's table, differentiable in the architecture masks.

The table predicts a whole net (`LatencyTable.predict`, its parts: stem,
blocks.i, decoder, head, call). Over the space, a part depends on only a few
variables (layer L's block on its op and its input and output widths, the
decoder on the last stage's width, its own and the stem's), so the net's
latency is a sum of small cost tensors, one per term:

    LAT(choice) = sum over terms t of C_t[choice's values of t's variables]

Each C_t entry is the table's prediction of that part in a net with the
term's variables set and the others at the reference choice (the part's
neighbours change only which layout reorders it pays, a small effect; the
derived net is predicted whole by the table, not by this sum).

Under masks m_v (one vector per variable, summing to 1, FBNet's Gumbel-softmax
samples), the expected latency is multilinear in them:

    E[LAT] = sum_t sum_a C_t[a] * prod_{v in t} m_v[a_v]

which for one variable per term is FBNet's sum_l sum_i m_{l,i} LUT[l, i].
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from avfleet.bench.profile import unit_key
from avfleet.latency.lut import LatencyTable
from avfleet.latency.units import net_units
from avfleet.nas.space import OPS, Choice, SearchSpace, Term, assignments, terms, to_arch


@dataclasses.dataclass(frozen=True)
class CostTable:
    term: Term
    ms: np.ndarray
    """One axis per variable of the term, in its order (a 0-d array for a constant)."""


def _part_ms(parts: dict[str, float], term: Term, space: SearchSpace, choice: Choice) -> float:
    if term.part in ("call", "stem"):
        return parts.get(term.part, 0.0)
    if term.part == "decoder":
        return parts.get("decoder", 0.0) + parts.get("head", 0.0)
    layer = int(term.part.split(".")[1])
    if choice[f"op.{layer}"] == "skip":
        return 0.0
    index = sum(1 for i in range(layer) if OPS[choice[f"op.{i}"]] is not None)
    return parts.get(f"blocks.{index}", 0.0)


def space_archs(space: SearchSpace):
    """Every (term, index, choice, arch) the cost tables are built from."""
    for term in terms(space):
        for index, choice in assignments(space, term):
            yield term, index, choice, to_arch(space, choice)


def search_units(space: SearchSpace, input_hw: tuple[int, int]) -> list[dict]:
    """Every unit the cost tables (and so the search) ask the bench about."""
    out = {}
    for _, _, _, arch in space_archs(space):
        for _, unit in net_units(arch, input_hw):
            out[unit_key(unit)] = unit
    return list(out.values())


def cost_tables(space: SearchSpace, table: LatencyTable) -> list[CostTable]:
    """The space's latency as cost tensors, one per term (MissingUnits if the table lacks any)."""
    variables = space.variables()
    out: dict[Term, np.ndarray] = {
        t: np.zeros([len(variables[v]) for v in t.variables]) for t in terms(space)
    }
    for term, index, choice, arch in space_archs(space):
        out[term][index] = _part_ms(table.predict(arch).parts_ms, term, space, choice)
    return [CostTable(t, ms) for t, ms in out.items()]


def table_sum_ms(costs: list[CostTable], space: SearchSpace, choice: Choice) -> float:
    """LAT(choice) as the sum of the cost tables (what the search optimises)."""
    variables = space.variables()
    total = 0.0
    for c in costs:
        index = tuple(variables[v].index(choice[v]) for v in c.term.variables)
        total += float(c.ms[index])
    return total


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def expected_latency(masks: dict[str, torch.Tensor], costs: list[CostTable]) -> torch.Tensor:
    """E[LAT] under the masks: each cost tensor contracted with its variables' mask vectors."""
    total = torch.zeros(())
    for c in costs:
        ms = torch.as_tensor(c.ms, dtype=torch.float32)
        if not c.term.variables:
            total = total + ms
            continue
        letters = _LETTERS[: len(c.term.variables)]
        spec = f"{letters}," + ",".join(letters) + "->"
        total = total + torch.einsum(spec, ms, *(masks[v] for v in c.term.variables))
    return total
