"""The synthetic fleet: deterministic, realistically rare conditions, video-like frames, an oracle."""

from __future__ import annotations

import collections

import numpy as np

from avfleet.fleet import drive, scene
from avfleet.fleet.generate import recording_bytes
from avfleet.fleet.oracle import OracleLabeler
from avfleet.fleet.world import FleetSpec, plan_fleet, plan_heldout
from tests.fleet_helpers import TINY


def frames_of(spec, plan, indices):
    world = scene.drive_layout(plan)
    line = drive.timeline(spec, plan, world)
    return [drive.render_frame(spec, plan, world, line, i) for i in indices]


def test_same_spec_same_bytes():
    plan = plan_fleet(TINY)[0]
    assert recording_bytes(TINY, plan) == recording_bytes(TINY, plan)


def test_rare_conditions_are_rare():
    spec = FleetSpec(seed=3, vehicles=60, days=5, minutes_per_day=10.0)
    plans = plan_fleet(spec)
    drives = {(p.vehicle, p.date, p.recording_id.rsplit("s", 1)[0]): p for p in plans}.values()
    weather = collections.Counter(p.weather for p in drives)
    tod = collections.Counter(p.forced_time_of_day for p in drives)
    n = len(drives)
    assert 0.005 < weather["snow"] / n < 0.07
    assert 0.005 < tod["night"] / n < 0.08
    assert weather["clear"] / n > 0.7 and tod["day"] / n > 0.8


def test_consecutive_frames_are_near_duplicates():
    plan = plan_fleet(FleetSpec(seed=5, vehicles=1, minutes_per_day=1.0))[0]
    (a, _), (b, _), (far, _) = frames_of(FleetSpec(seed=5), plan, [100, 101, 400])
    near = np.abs(a.astype(int) - b.astype(int)).mean()
    apart = np.abs(a.astype(int) - far.astype(int)).mean()
    assert near < 0.5 * apart


def test_night_and_fog_change_pixels_not_masks():
    spec = FleetSpec(seed=2)
    plans = {(p.forced_time_of_day, p.weather, p.road_type): p for p in plan_heldout(spec)}
    ((day_rgb, day_mask),) = frames_of(spec, plans[("day", "clear", "urban")], [10])
    ((night_rgb, night_mask),) = frames_of(spec, plans[("night", "clear", "urban")], [10])
    assert night_rgb.mean() < 0.5 * day_rgb.mean()
    ((fog_rgb, fog_mask),) = frames_of(spec, plans[("day", "fog", "urban")], [10])
    sky = fog_mask == scene.SKY
    assert fog_rgb[~sky].std() < day_rgb[day_mask != scene.SKY].std()  # fog washes out contrast
    for mask in (day_mask, night_mask, fog_mask):
        assert {scene.ROAD, scene.SKY} <= set(np.unique(mask))


def test_heldout_is_domain_balanced():
    plans = plan_heldout(FleetSpec(seed=1), segments_per_domain=2)
    combos = collections.Counter((p.forced_time_of_day, p.weather, p.road_type) for p in plans)
    assert len(combos) == 3 * 4 * 2 and set(combos.values()) == {2}
    assert not {p.vehicle for p in plans} & {p.vehicle for p in plan_fleet(FleetSpec(seed=1))}


def test_oracle_regenerates_the_rendered_mask():
    spec = TINY
    plan = plan_fleet(spec)[0]
    oracle = OracleLabeler(spec, plan_fleet(spec))
    ((_, mask),) = frames_of(spec, plan, [42])
    label = oracle.label(plan.recording_id, 42)
    assert np.array_equal(label.mask, mask)
    assert (label.weather, label.road_type) == (plan.weather, plan.road_type)
    assert label.time_of_day == plan.forced_time_of_day
