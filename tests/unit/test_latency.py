"""The latency table: units checked, the cache (torn entries measured again), predictions, budgets."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch

from avfleet.bench import profile
from avfleet.core.errors import ConfigError
from avfleet.latency.lut import LatencyTable, MissingUnits, pruning_units
from avfleet.latency.units import conv, net_plan, net_units
from avfleet.latency.widths import width_choices, width_variables
from avfleet.train import compress
from avfleet.train.models import build, default_arch

HW = (32, 64)


@pytest.mark.parametrize(
    "unit, words",
    [
        ({"op": "gemm"}, "op must be one of"),
        ({**conv(8, 8, HW), "cin": 0}, "'cin' must be an integer"),
        ({**conv(8, 8, HW), "cin": True}, "'cin' must be an integer"),
        ({**conv(8, 12, HW), "groups": 8}, "groups 8 must divide"),
        ({**conv(8, 8, HW), "hw": [1, 2, 3]}, "'hw' must be two integers"),
        ({**conv(8, 8, HW), "extra": 1}, "unknown fields ['extra']"),
        ({**conv(4096, 4096, (4096, 4096))}, "over"),
        ({"op": "concat", "channels": [8], "hw": [4, 4]}, "list of 2 to 8"),
        ([], "must be a JSON object"),
    ],
)
def test_bad_units_are_refused_with_what_is_wrong(unit, words):
    with pytest.raises(profile.BadUnit, match=words.replace("[", r"\[").replace("]", r"\]")):
        profile.check_unit(unit)


def test_cache_measures_once_and_measures_torn_entries_again(tmp_path: pathlib.Path):
    units = [conv(8, 16, HW), conv(16, 16, HW, (3, 3), groups=16), {"op": "call"}]
    first, measured = profile.cached_profile(units, str(tmp_path), "bench-a")
    assert measured == 3 and all(e["ms"] > 0 for e in first.values())
    again, measured = profile.cached_profile(units, str(tmp_path), "bench-a")
    assert measured == 0 and again == first  # read back, not measured
    entries = sorted(tmp_path.joinpath("bench-a").glob("*.json"))
    entries[0].write_text('{"unit": {"op": "call"}, "ms"')  # torn: half a write
    entries[1].write_text(json.dumps({"unit": {"op": "call"}, "ms": -1.0}))  # not a latency
    _, measured = profile.cached_profile(units, str(tmp_path), "bench-a")
    assert measured == 2
    _, measured = profile.cached_profile(units, str(tmp_path), "bench-b")  # another bench
    assert measured == 3


def fake_table(arch, hw=HW, ms_per_mac=1e-6) -> LatencyTable:
    """A table whose units cost their MACs (worked out here, not measured): deterministic."""
    entries = {}
    for unit in pruning_units(arch, hw):
        if unit["op"] == "conv":
            kh, kw = unit["kernel"]
            h, w = unit["hw"]
            macs = unit["cin"] // unit["groups"] * unit["cout"] * kh * kw * h * w
            entries[profile.unit_key(unit)] = 0.01 + macs * ms_per_mac
        else:
            entries[profile.unit_key(unit)] = 0.02
    entries[profile.unit_key({"op": "call"})] = 0.01
    return LatencyTable("fake", hw, entries)


def test_prediction_is_the_sum_of_units_less_each_units_call():
    arch = default_arch(width=1.0)
    table = fake_table(arch)
    plan = net_plan(arch, HW)
    # No conv here writes or reads the blocked layout: no reorder counts, the residual add does.
    counted = [u for p, u, _ in plan if p != "call" and u["op"] != "reorder"]
    expected = 0.01 + sum(table.entries[profile.unit_key(u)] - 0.01 for u in counted)
    assert table.predict(arch).total_ms == pytest.approx(expected)
    # A blocked chain: reorders count where it meets the resize/concat, the add is fused.
    blocked = frozenset(profile.unit_key(u) for _, u, _ in plan if u["op"] == "conv")
    chained = LatencyTable("fake", HW, table.entries, blocked, blocked)
    edges = [w for _, _, w in plan if w and w[0] == "edge" and (w[1] is None) != (w[2] is None)]
    assert len(edges) == 4  # stem -> concat, reduce -> resize, concat -> fuse, head -> resize
    half_pair, add = 0.5 * (0.02 - 0.01), 0.02 - 0.01
    assert chained.predict(arch).total_ms == pytest.approx(expected + 4 * half_pair - add)
    bigger = default_arch(width=1.5)
    with pytest.raises(MissingUnits, match="lacks"):
        table.predict(bigger)


def test_pruning_units_cover_every_width_on_the_grid():
    arch = default_arch(width=1.0)
    table = fake_table(arch)
    for var in width_variables(arch):
        for width in width_choices(var.size):
            table.predict(compress.with_widths(arch, {var.name: width}))  # no MissingUnits
    narrowest = compress.with_widths(arch, {v.name: 8 for v in width_variables(arch)})
    table.predict(narrowest)


def test_budgets_that_cannot_be_met_are_refused_before_training():
    model = build(default_arch(width=1.0))
    table = fake_table(model.arch)
    with pytest.raises(ConfigError, match="below the fastest net"):
        compress.Controller(model, 0.1, table, compress.Budget(target_latency_ms=1e-4), 100)
    with pytest.raises(ConfigError, match="below the smallest net"):
        compress.Controller(model, 0.1, None, compress.Budget(target_params=10), 100)
    partial = LatencyTable("fake", HW, dict(list(table.entries.items())[:5]))
    with pytest.raises(ConfigError, match="lacks"):
        compress.Controller(model, 0.1, partial, compress.Budget(target_latency_ms=1.0), 100)


def test_the_controller_reaches_a_budget_and_then_holds_the_widths():
    torch.manual_seed(0)
    model = build(default_arch(width=1.0))
    table = fake_table(model.arch)
    dense_ms = table.predict(model.arch).total_ms
    budget = compress.Budget(target_latency_ms=dense_ms / 2)
    controller = compress.Controller(model, 0.05, table, budget, total_steps=200, every=5)
    # Slow channels cost more: the decoder's full-resolution widths weigh more than block 3's.
    assert controller.weights["decoder.fuse"] > controller.weights["blocks.3.hidden"]
    for step in range(1, 201):  # proximal steps alone (no gradient): the controller must get there
        controller.after_step(model, step, lr=0.05)
        if controller.decided_at:
            break
    report = controller.report(model)
    assert report.met and report.predicted_latency_ms <= budget.target_latency_ms
    decided = dict(report.widths)
    with torch.no_grad():  # training goes on: a gradient revives nothing that was removed
        for p in model.parameters():
            p.add_(0.1)
    controller.after_step(model, 300, lr=0.05)
    assert controller.report(model).widths == decided


def test_a_budget_missed_by_the_end_is_reported_as_a_miss():
    model = build(default_arch(width=1.0))
    table = fake_table(model.arch)
    budget = compress.Budget(target_latency_ms=table.predict(model.arch).total_ms / 2)
    controller = compress.Controller(model, 1e-6, table, budget, total_steps=10, every=5)
    for step in range(1, 3):
        controller.after_step(model, step, lr=0.05)
    report = controller.report(model)
    assert report.met is False and "NOT met" in report.message


def test_snap_takes_the_fastest_measured_width_not_the_smallest():
    arch = default_arch(width=1.0)
    table = fake_table(arch)
    fuse16 = compress.with_widths(arch, {"decoder.fuse": 16})
    fuse24 = compress.with_widths(arch, {"decoder.fuse": 24})
    key = profile.unit_key(
        [u for p, u in net_units(fuse24, HW) if u.get("kernel") == [3, 3] and u["cin"] > 3][0]
    )
    table.entries[key] = 1e-3  # the bench says 24 channels run faster than 16
    assert table.predict(fuse24).total_ms < table.predict(fuse16).total_ms
    live = {v.name: v.size for v in width_variables(arch)} | {"decoder.fuse": 13}
    assert compress.snap(arch, live, table)["decoder.fuse"] == 24
    assert compress.snap(arch, live, None)["decoder.fuse"] == 16


def test_when_zeroed_channels_meet_the_budget_the_slack_is_filled_and_revived():
    torch.manual_seed(0)
    model = build(default_arch(width=1.0))
    table = fake_table(model.arch)
    budget = compress.Budget(target_latency_ms=table.predict(model.arch).total_ms * 0.8)
    controller = compress.Controller(model, 0.05, table, budget, total_steps=1000, every=5)
    params = dict(model.named_parameters())
    with torch.no_grad():  # the penalty zeroed 7/8 of every width: far under the budget
        for group in controller.groups:
            for key, dim in group.penalised:
                params[key].narrow(dim, 0, group.size * 7 // 8).zero_()
    controller.after_step(model, controller.start + 1, lr=0.0)  # a zero-strength step: a check
    report = controller.report(model)
    assert controller.decided_at == controller.start + 1 and report.met
    live = {g.name: g.size - g.size * 7 // 8 for g in controller.groups}
    assert any(report.widths[n] > compress.snap(model.arch, live, table)[n] for n in live)
    # The slack went back to widths (budget still met), and the channels they took back live again.
    assert report.predicted_latency_ms <= budget.target_latency_ms
    alive = compress.prune.alive_counts(model, controller.groups)
    assert all(alive[n] == report.widths[n] for n in alive)
