"""Compression-aware training: nuclear-norm proximal step and the SVD reload on SegNet."""

from __future__ import annotations

import json

import pytest
import torch

from avfleet.core.errors import ConfigError
from avfleet.train import lowrank as L
from avfleet.train import prune as P
from avfleet.train.export import export_onnx, parity
from avfleet.train.loop import TrainConfig
from avfleet.train.models import build, default_arch, num_parameters


def make_low_rank(model, rank):
    """Replace every block 1x1 matrix by a random rank-`rank` one."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, _, w in L._matrices(model):
            out, cin = w.shape[:2]
            a = torch.randn(out, rank, generator=gen) / rank**0.5
            b = torch.randn(rank, cin, generator=gen) / cin**0.5
            w.copy_((a @ b).view_as(w))


def test_energy_rank_by_hand():
    s = torch.tensor([3.0, 2.0, 1.0, 0.0])  # energies 9, 4, 1 of 14
    assert L.energy_rank(s, 0.5) == 1  # 9/14 = 0.64
    assert L.energy_rank(s, 0.9) == 2  # 13/14 = 0.93
    assert L.energy_rank(s, 1.0) == 3  # never keeps a zero singular value
    assert L.energy_rank(torch.zeros(3), 0.9) == 1


def test_reload_of_exactly_low_rank_net_is_exact_and_smaller():
    torch.manual_seed(0)
    model = build(default_arch(width=1.5)).eval()
    make_low_rank(model, 4)
    small = L.factored_model(model, energy=1.0).eval()
    assert all(b["expand_rank"] == 4 and b["project_rank"] == 4 for b in small.arch["blocks"])
    x = torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        assert torch.allclose(model(x), small(x), atol=1e-4)
    assert num_parameters(small) < 0.7 * num_parameters(model)
    # Rebuilds from its architecture alone, and exports to ONNX with parity.
    rebuilt = build(json.loads(json.dumps(small.arch))).eval()
    rebuilt.load_state_dict(small.state_dict())
    assert parity(rebuilt, export_onnx(rebuilt, 64, 128), x)["max_abs_error"] < 1e-4


def test_reload_keeps_full_rank_matrices_unfactored():
    model = build(default_arch()).eval()  # random init: full rank, factoring would not save
    arch, _ = L.reload(model, energy=0.99)
    assert not any("expand_rank" in b or "project_rank" in b for b in arch["blocks"])


def test_proximal_step_lowers_rank_and_pruning_refuses_factored_nets():
    torch.manual_seed(1)
    model = build(default_arch())
    full = L.proximal_step_(model, lr=1.0, strength=0.0)
    shrunk = L.proximal_step_(model, lr=1.0, strength=0.8)
    assert all(shrunk[k] < full[k] for k in full)
    for (i, name), rank in shrunk.items():
        w = getattr(model.blocks[i], name)[0].weight.flatten(1)
        assert torch.linalg.matrix_rank(w) == rank
    factored = L.factored_model(model, energy=1.0)
    with pytest.raises(ValueError, match="prune before the low-rank reload"):
        P.channel_groups(factored)


def test_compression_is_refused_for_an_ensemble():
    with pytest.raises(ConfigError, match="members=1"):
        TrainConfig(dataset_uri="d", out_uri="o", members=4, low_rank=0.1)
