"""Compression-aware training (Alvarez & Salzmann 2017): nuclear-norm proximal step, SVD reload.

The low-rank term acts on every inverted-residual block's 1x1 expand and
project convolutions, each seen as an (out, in) matrix: they hold most of the
parameters. After each optimizer step the proximal step soft-thresholds the
singular values of each matrix (threshold eta * strength), driving the small
ones to exactly zero. At the reload, every such matrix W (out x in) whose
truncated SVD is cheaper becomes two convolutions, in -> r (Vh_r) then
r -> out (U_r S_r, followed by the block's BatchNorm as before), where r
keeps `energy` of the spectral energy sum(s^2). The factored net's
architecture records each rank ("expand_rank", "project_rank"), so it rebuilds
from arch.json like any other. Works on a single network (members=1), after
pruning: pruning removes channels of unfactored convolutions.
"""

from __future__ import annotations

import copy

import torch

from avfleet.train import regularizers
from avfleet.train.models import Arch, SegNet, build

FACTORED = (("expand", "expand_rank"), ("project", "project_rank"))


def _matrices(model: SegNet) -> list[tuple[int, str, torch.Tensor]]:
    """(block index, which conv, weight (out, in, 1, 1)) of every unfactored 1x1 of the blocks."""
    if model.members != 1:
        raise ValueError("low-rank training works on a single network (members=1)")
    out = []
    for i, (spec, block) in enumerate(zip(model.arch["blocks"], model.blocks, strict=True)):
        for name, rank_key in FACTORED:
            if spec.get(rank_key) is None:
                out.append((i, name, getattr(block, name)[0].weight))
    return out


@torch.no_grad()
def proximal_step_(model: SegNet, lr: float, strength: float) -> dict[tuple[int, str], int]:
    """Singular-value soft-thresholding of each 1x1 matrix; returns each matrix's rank after."""
    return {
        (i, name): regularizers.singular_value_soft_threshold_(w, lr * strength)
        for i, name, w in _matrices(model)
    }


def energy_rank(singular_values: torch.Tensor, energy: float) -> int:
    """Smallest r whose leading singular values hold `energy` of sum(s^2) (and no zero ones)."""
    sq = singular_values.pow(2)
    total = float(sq.sum())
    if total == 0.0:
        return 1
    cumulative = torch.cumsum(sq, 0) / total
    r = int((cumulative < energy - 1e-12).sum()) + 1
    return max(1, min(r, int((singular_values > 0).sum())))


@torch.no_grad()
def reload(model: SegNet, energy: float = 0.9) -> tuple[Arch, dict[str, torch.Tensor]]:
    """The factored architecture and its weights: each matrix replaced by its truncated SVD when cheaper."""
    arch = copy.deepcopy(model.arch)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for i, name, w in _matrices(model):
        cout, cin = w.shape[:2]
        u, s, vh = torch.linalg.svd(w.flatten(1), full_matrices=False)
        r = energy_rank(s, energy)
        if r * (cin + cout) >= cin * cout:
            continue  # factoring would not save parameters
        arch["blocks"][i][f"{name}_rank"] = r
        state[f"blocks.{i}.{name}_in.weight"] = vh[:r].reshape(r, cin, 1, 1).contiguous()
        state[f"blocks.{i}.{name}.0.weight"] = (
            (u[:, :r] * s[:r]).reshape(cout, r, 1, 1).contiguous()
        )
    return arch, state


def factored_model(model: SegNet, energy: float = 0.9) -> SegNet:
    arch, state = reload(model, energy)
    small = build(arch)
    small.load_state_dict(state)
    return small
