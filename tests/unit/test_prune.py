"""Joint training + pruning on the SegNet family: exact removal, smaller architecture."""

from __future__ import annotations

import json

import torch

from avfleet.latency.widths import width_variables
from avfleet.train import prune as P
from avfleet.train.models import build, default_arch, num_parameters


def kill_channels(model, fraction, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for g in P.channel_groups(model):
            dead = torch.arange(g.size)[torch.rand(g.size, generator=gen) < fraction]
            for key, dim in g.penalised:
                params[key].index_fill_(dim, dead, 0.0)


def test_pruning_zeroed_groups_changes_nothing_but_size():
    torch.manual_seed(0)
    model = build(default_arch(width=1.5)).eval()
    with torch.no_grad():  # trained-looking shifts and statistics: the removed constants matter
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.uniform_(-0.5, 1.5)
                m.running_mean.uniform_(-1, 1)
    kill_channels(model, 0.6)
    small = P.pruned_model(model).eval()
    x = torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        assert torch.allclose(model(x), small(x), atol=1e-5)
    assert num_parameters(small) < 0.5 * num_parameters(model)
    # The architecture alone rebuilds the pruned net: no shapes guessed from weights.
    rebuilt = build(json.loads(json.dumps(small.arch)))
    rebuilt.load_state_dict(small.state_dict())


def test_proximal_step_zeroes_whole_groups():
    torch.manual_seed(1)
    model = build(default_arch())
    with torch.no_grad():  # BatchNorm scales spread over (0, 2): a threshold of 1 kills about half
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.0, 2.0)
    before = sum(g.size for g in P.channel_groups(model))
    zeroed = P.proximal_step_(
        model, lr=1.0, strength=1.0
    )  # threshold sqrt(P): 1 (scale) or sqrt(2) (scale, shift)
    assert 0 < sum(zeroed.values()) < before
    for group in P.channel_groups(model):
        norms = P.group_norms(model, group)
        assert int((norms == 0).sum()) == zeroed[group.name]
    arch, _ = P.prune(model, align=1)
    after = sum(v.size for v in width_variables(arch))
    assert after == before - sum(
        min(z, g.size - 1) if z == g.size else z
        for z, g in zip(zeroed.values(), P.channel_groups(model), strict=True)
    )


def test_stacked_ensemble_keeps_members_independent():
    torch.manual_seed(2)
    ensemble = build(default_arch(), members=3).eval()
    x = torch.rand(2, 3, 32, 64)
    with torch.no_grad():
        out = ensemble(x)
        # Perturb member 1's stem only: members 0 and 2 must not change.
        ensemble.stem[0].weight[16:32].add_(1.0)
        changed = ensemble(x)
    assert torch.equal(out[:, 0], changed[:, 0]) and torch.equal(out[:, 2], changed[:, 2])
    assert not torch.equal(out[:, 1], changed[:, 1])


def test_kept_widths_round_up_to_the_alignment_exactly():
    torch.manual_seed(3)
    model = build(default_arch(width=1.5)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.uniform_(-0.5, 1.5)
    kill_channels(model, 0.7, seed=3)
    small = P.pruned_model(model, align=8).eval()
    widths = [b["hidden"] for b in small.arch["blocks"]] + [small.arch["decoder"]["fuse"]]
    assert all(w % 8 == 0 for w in widths), widths
    x = torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        assert torch.allclose(model(x), small(x), atol=1e-5)
