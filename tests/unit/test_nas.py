"""Architecture search: masks, expected latency, derivation, plans and fronts, against hand-worked values."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from avfleet.bench.profile import unit_key
from avfleet.core.errors import ConfigError, PermanentError
from avfleet.latency.lut import CALL, LatencyTable
from avfleet.nas.derive import derive, entropy_bits
from avfleet.nas.latency import CostTable, cost_tables, expected_latency, search_units, table_sum_ms
from avfleet.nas.pareto import front, parse_results, pick
from avfleet.nas.plan import plan_grid, plan_targets
from avfleet.nas.search import in_arch_split
from avfleet.nas.space import Term, check_choice, default_space, reference_choice, to_arch
from avfleet.nas.supernet import SuperNet, annealed_tau, argmax_choice, gumbel_masks, init_alpha
from avfleet.taxonomy import NUM_CLASSES
from avfleet.train.models import build, num_parameters

HW = (64, 128)


def synthetic_table(space, blocked: bool = False) -> LatencyTable:
    """Every unit of the space with a made-up time (its size), as a bench would return them."""
    entries = {CALL: 0.01}
    for unit in search_units(space, HW):
        size = sum(
            v if isinstance(v, int) else sum(v) if isinstance(v, list) else 0 for v in unit.values()
        )
        entries[unit_key(unit)] = 0.01 + 1e-4 * size
    keys = frozenset(k for k in entries if '"conv"' in k) if blocked else frozenset()
    return LatencyTable("synthetic", HW, entries, keys, keys)


def test_gumbel_masks_match_hand_worked_softmax():
    alpha = {"v": torch.tensor([0.0, math.log(2.0)], requires_grad=True)}
    u = {"v": torch.full((2,), math.exp(-1.0))}  # -log(-log(u)) = 0: no noise
    soft = gumbel_masks(alpha, 1.0, None, hard=False, noise=u)["v"]
    assert torch.allclose(soft, torch.tensor([1 / 3, 2 / 3]))
    sharper = gumbel_masks(alpha, 0.5, None, hard=False, noise=u)["v"]
    assert torch.allclose(sharper, torch.tensor([1 / 5, 4 / 5]))  # softmax([0, 2 ln 2])
    hard = gumbel_masks(alpha, 0.5, None, hard=True, noise=u)["v"]
    assert hard.tolist() == [0.0, 1.0]  # one-hot value...
    hard[1].backward()
    soft_grad = (
        torch.tensor([-4 / 25, 4 / 25]) / 0.5
    )  # ...the softmax's gradient: p1 (e_1 - p) / tau
    assert torch.allclose(alpha["v"].grad, soft_grad)


def test_noise_moves_the_sample_and_the_same_seed_draws_the_same_masks():
    alpha = {"v": torch.zeros(3)}
    a = gumbel_masks(alpha, 1.0, torch.Generator().manual_seed(7), hard=True)["v"]
    b = gumbel_masks(alpha, 1.0, torch.Generator().manual_seed(7), hard=True)["v"]
    assert torch.equal(a, b)
    picks = {
        int(gumbel_masks(alpha, 1.0, torch.Generator().manual_seed(s), hard=True)["v"].argmax())
        for s in range(30)
    }
    assert picks == {0, 1, 2}  # uniform logits: every choice gets sampled


def test_temperature_anneals_geometrically():
    assert annealed_tau(0, 100, 5.0, 0.2) == pytest.approx(5.0)
    assert annealed_tau(100, 100, 5.0, 0.2) == pytest.approx(0.2)
    assert annealed_tau(50, 100, 5.0, 0.2) == pytest.approx(1.0)  # sqrt(5 * 0.2)
    assert annealed_tau(500, 100, 5.0, 0.2) == pytest.approx(0.2)


def test_expected_latency_against_hand_worked_values():
    costs = [
        CostTable(Term("call", ()), np.array(0.5)),
        CostTable(Term("a", ("x",)), np.array([1.0, 3.0])),
        CostTable(Term("b", ("x", "y")), np.array([[1.0, 2.0], [3.0, 4.0]])),
    ]
    masks = {"x": torch.tensor([0.25, 0.75]), "y": torch.tensor([0.5, 0.5])}
    # 0.5 + (0.25 + 2.25) + (0.25 * 1.5 + 0.75 * 3.5) = 0.5 + 2.5 + 3.0
    assert float(expected_latency(masks, costs)) == pytest.approx(6.0)
    one_hot = {"x": torch.tensor([0.0, 1.0]), "y": torch.tensor([1.0, 0.0])}
    assert float(expected_latency(one_hot, costs)) == pytest.approx(0.5 + 3.0 + 3.0)


def test_cost_tables_sum_to_the_tables_whole_net_prediction():
    space = default_space()
    table = synthetic_table(space)
    costs = cost_tables(space, table)
    variables = space.variables()
    rng = random.Random(0)
    for _ in range(25):
        choice = {k: rng.choice(v) for k, v in variables.items()}
        predicted = table.predict(to_arch(space, choice)).total_ms
        # Without layout edges the decomposition is exact; the search optimises this sum.
        assert table_sum_ms(costs, space, choice) == pytest.approx(predicted, rel=1e-9)
    # A one-hot mask's expected latency is that net's.
    masks = {
        k: torch.nn.functional.one_hot(torch.tensor(v.index(choice[k])), len(v)).float()
        for k, v in variables.items()
    }
    assert float(expected_latency(masks, costs)) == pytest.approx(
        table_sum_ms(costs, space, choice), rel=1e-5
    )


def test_space_maps_to_arch_dicts_that_build_and_skip_only_where_shapes_allow():
    space = default_space()
    choice = reference_choice(space)
    choice.update({"op.0": "e6_k3_g2", "op.3": "skip", "stem": 24, "decoder": 48})
    arch = to_arch(space, choice)
    assert len(arch["blocks"]) == 3  # the skipped layer is not there
    assert arch["blocks"][0]["groups"] == 2 and arch["blocks"][0]["hidden"] == 24 * 6
    assert arch["decoder"] == {"skip": 24, "reduce": 48, "fuse": 48}
    model = build(arch)
    assert model(torch.rand(1, 3, *HW)).shape == (1, 1, NUM_CLASSES, *HW)
    with pytest.raises(ConfigError, match="op.0"):
        check_choice(space, {**choice, "op.0": "skip"})  # stride 2: no identity
    with pytest.raises(ConfigError, match="s1"):
        check_choice(space, {**choice, "s1": 17})
    assert space.size() == 9**3 * 10 * 3**5


def test_derived_arch_rebuilds_from_json_and_exports_to_onnx(tmp_path):
    from avfleet.bench.engines import ort_runner
    from avfleet.train.export import export_onnx
    from avfleet.train.loop import read_arch

    space = default_space()
    alpha = {k: [0.0] * len(v) for k, v in space.variables().items()}
    alpha["op.1"] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0]  # e6_k3_g2
    alpha["op.2"] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0]  # e6_k5x1
    derived = derive(space, alpha, synthetic_table(space))
    assert derived.choice["op.1"] == "e6_k3_g2" and derived.choice["op.2"] == "e6_k5x1"
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"arch": derived.arch, "choice": derived.choice}))
    arch = read_arch(str(path))
    model = build(arch).eval()
    torch.manual_seed(0)
    image = torch.rand(1, 3, *HW)
    with torch.no_grad():
        ref = model(image).numpy()
    out = ort_runner(export_onnx(model, *HW))(image.numpy())
    assert out.shape == ref.shape and np.abs(out - ref).max() < 1e-4
    path.write_text(json.dumps({"arch": {"stem": 8}}))
    with pytest.raises(ConfigError, match="not a SegNet architecture"):
        read_arch(str(path))


def test_derive_meets_a_target_by_giving_up_the_least_probability_per_ms():
    space = default_space()
    table = synthetic_table(space)
    variables = space.variables()
    alpha = {k: [0.0] * len(v) for k, v in variables.items()}
    alpha["decoder"] = [0.0, 0.0, 5.0]  # sure of the widest decoder
    alpha["stem"] = [0.0, 0.0, 0.1]  # barely prefers the widest stem
    free = derive(space, alpha, table)
    assert free.choice["decoder"] == 48 and free.choice["stem"] == 24 and free.changes == []
    target = free.predicted_ms * 0.97
    fixed = derive(space, alpha, table, target)
    assert fixed.met and fixed.predicted_ms <= target
    assert fixed.choice["decoder"] == 48  # the confident choice stays
    assert fixed.changes[0]["variable"] != "decoder"
    impossible = derive(space, alpha, table, 1e-6)
    assert not impossible.met  # nothing faster left: said, not hidden
    bits = entropy_bits(space, alpha)
    assert bits["op.0"] == pytest.approx(math.log2(9)) and bits["decoder"] < 0.2
    with pytest.raises(PermanentError, match="another space"):
        derive(space, {**alpha, "op.0": [0.0]}, table)


def test_supernet_runs_only_the_sampled_block_and_masks_channels():
    space = default_space()
    net = SuperNet(space, hard=True)
    alpha = init_alpha(space)
    masks = gumbel_masks(alpha, 1.0, torch.Generator().manual_seed(3), hard=True)
    logits = net(torch.rand(2, 3, *HW), masks)
    assert logits.shape == (2, 1, NUM_CLASSES, *HW)
    logits.sum().backward()
    chosen = argmax_choice(space, {k: m.detach() for k, m in masks.items()})
    for i, (layer, candidates) in enumerate(zip(space.layers, net.layers, strict=True)):
        for op, block in zip(layer.ops, candidates, strict=True):
            grads = [p.grad for p in block.parameters()]
            if op == chosen[f"op.{i}"]:
                assert all(g is not None for g in grads)
            else:
                assert all(g is None for g in grads)
    assert all(a.grad is not None for a in alpha.values())  # straight through to alpha
    soft = SuperNet(space, hard=False)
    masks = gumbel_masks(init_alpha(space), 1.0, torch.Generator().manual_seed(3), hard=False)
    assert soft(torch.rand(1, 3, *HW), masks).shape == (1, 1, NUM_CLASSES, *HW)
    assert num_parameters(soft) == num_parameters(net)


def test_arch_split_is_a_fixed_fifth_of_the_frames():
    ids = [f"veh-{i:03d}/seg-{i % 7}/frame-{i}" for i in range(5000)]
    share = sum(in_arch_split(f, 5) for f in ids) / len(ids)
    assert 0.18 < share < 0.22
    assert [in_arch_split(f, 5) for f in ids[:50]] == [in_arch_split(f, 5) for f in ids[:50]]


def test_plans_are_numbers_only():
    assert plan_targets("1.6, 1.0,2,1.0") == [
        {"name": "t1ms", "target_ms": "1"},
        {"name": "t1.6ms", "target_ms": "1.6"},
        {"name": "t2ms", "target_ms": "2"},
    ]
    grid = plan_grid("lr=0.02,0.05;group_sparsity=0,0.005")
    assert len(grid) == 4 and grid[0] == {
        "name": "lr0.02-group_sparsity0",
        "lr": "0.02",
        "group_sparsity": "0",
        "width": "1",
    }
    for bad in ("1;rm -rf /", "nan", "-1", "0", "", "1e400"):
        with pytest.raises(ConfigError):
            plan_targets(bad)
    for bad in ("epochs=1,2", "lr=$(reboot)", "lr", "lr="):
        with pytest.raises(ConfigError):
            plan_grid(bad)


def test_front_and_pick_against_hand_worked_records():
    records = [
        {"name": "a", "p50_ms": 1.0, "miou": 0.40, "model_uri": "m/a", "release_uri": "r/a"},
        {"name": "b", "p50_ms": 1.5, "miou": 0.45, "model_uri": "m/b", "release_uri": "r/b"},
        {"name": "c", "p50_ms": 1.6, "miou": 0.44, "model_uri": "m/c", "release_uri": "r/c"},
        {"name": "d", "p50_ms": 2.0, "miou": 0.50, "model_uri": "m/d", "release_uri": "r/d"},
    ]
    assert [r["name"] for r in front(records)] == ["a", "b", "d"]  # c: b is faster and better
    doc = {"candidates": records, "front": ["a", "b", "d"]}
    assert pick(doc, 1.7)["name"] == "b"
    assert pick(doc, 5.0)["name"] == "d"
    with pytest.raises(PermanentError, match="fastest: 1.000 ms"):
        pick(doc, 0.5)
    aggregated = json.dumps([json.dumps(r) for r in records])  # Argo's fan-in: a list of strings
    assert parse_results(aggregated) == records
    for bad in ("not json", "{}", json.dumps([json.dumps({"name": "x"})])):
        with pytest.raises(ConfigError):
            parse_results(bad)


def test_derive_a_little_over_takes_the_least_likely_loss_not_the_biggest_saving():
    space = default_space()
    table = synthetic_table(space)
    variables = space.variables()
    rng = random.Random(1)
    alpha = {k: [rng.uniform(0, 2) for _ in v] for k, v in variables.items()}
    alpha["decoder"] = [0.0, 0.0, 0.3]  # the decoder: the most ms per nat of any variable
    free = derive(space, alpha, table)
    target = free.predicted_ms - 1e-3  # just over: one small change is enough
    fixed = derive(space, alpha, table, target)
    assert fixed.met
    first = fixed.changes[0]
    logp = {
        k: torch.log_softmax(torch.tensor(v, dtype=torch.float64), 0).tolist()
        for k, v in alpha.items()
    }

    def loss(name, value):
        return (
            logp[name][variables[name].index(free.choice[name])]
            - logp[name][variables[name].index(value)]
        )

    reaching = [
        (loss(n, v), n, v)
        for n, vs in variables.items()
        for v in vs
        if v != free.choice[n]
        and table.predict(to_arch(space, {**free.choice, n: v})).total_ms <= target
    ]
    best = min(reaching)
    assert (first["variable"], first["to"]) == (best[1], best[2])
    assert loss(first["variable"], first["to"]) == pytest.approx(best[0])
