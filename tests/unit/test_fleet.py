"""The synthetic fleet: deterministic, realistically rare conditions, video-like frames, an oracle."""

from __future__ import annotations

import collections

import numpy as np
import pytest

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


def _hazard_census(spec: FleetSpec, stride: int = 5):
    """Per hazard: the share of (every stride-th) frame containing it, and the drives it is in."""
    from avfleet import taxonomy

    frames, shares, drives = 0, collections.Counter(), collections.defaultdict(set)
    for plan in plan_fleet(spec):
        world = scene.drive_layout(plan)
        line = drive.timeline(spec, plan, world)
        for i in range(0, len(line.frame_times_s), stride):
            frames += 1
            for name in taxonomy.hazards_in(drive.frame_mask(spec, plan, world, line, i)):
                shares[name] += 1
                drives[name].add(plan.scene_seed)
    return {n: shares[n] / frames for n in taxonomy.HAZARD_NAMES}, drives


def test_hazards_are_a_long_tail_spread_over_many_drives():
    """Each hazard class in roughly 0.5-5% of frames, never one drive's property."""
    spec = FleetSpec(seed=59, vehicles=12, minutes_per_day=6.0, segment_s=20.0)
    shares, drives = _hazard_census(spec)
    for name, share in shares.items():
        assert 0.003 < share < 0.05, (name, share)
        assert len(drives[name]) >= 5, (name, len(drives[name]))
    assert sum(shares.values()) < 0.12  # most frames hold none


def test_hazards_stay_where_they_are_in_the_world():
    """A hazard grows as the car drives towards it, as a thing on the road does."""
    from avfleet import taxonomy

    spec = FleetSpec(seed=59, vehicles=12, minutes_per_day=6.0, segment_s=20.0)
    for plan in plan_fleet(spec):
        world = scene.drive_layout(plan)
        line = drive.timeline(spec, plan, world)
        sizes = [
            int(np.isin(drive.frame_mask(spec, plan, world, line, i), taxonomy.HAZARD_IDS).sum())
            for i in range(len(line.frame_times_s))
        ]
        seen = [i for i, n in enumerate(sizes) if n > 0]
        if len(seen) > 20 and line.frame_distance_m[-1] - line.frame_distance_m[0] > 50:
            first = seen[0]
            peak = int(np.argmax(sizes))
            assert peak > first and sizes[peak] > 4 * max(sizes[first], 1)
            return
    raise AssertionError("no drive passed a hazard")


def test_sensor_conditions_change_pixels_not_masks():
    import dataclasses

    spec = FleetSpec(seed=2)
    plan = {(p.forced_time_of_day, p.weather, p.road_type): p for p in plan_heldout(spec)}[
        ("day", "clear", "urban")
    ]
    clean = dataclasses.replace(
        scene.drive_layout(plan), lens_dirt=np.zeros((0, 4)), shake=(0.0, 0.0), glare_col=-1.0
    )
    line = drive.timeline(spec, plan, clean)
    rgb, mask = drive.render_frame(spec, plan, clean, line, 10)
    dirty = dataclasses.replace(clean, lens_dirt=np.array([[0.5, 0.5, 0.15, 0.8]]))
    shaken = dataclasses.replace(clean, shake=(0.0, 1.0))
    for layout in (dirty, shaken):
        other_rgb, other_mask = drive.render_frame(spec, plan, layout, line, 10)
        assert np.array_equal(other_mask, mask)
        assert np.abs(other_rgb.astype(int) - rgb.astype(int)).mean() > 2.0
    dirty_rgb = drive.render_frame(spec, plan, dirty, line, 10)[0]
    center = (slice(28, 36), slice(60, 68))
    assert dirty_rgb[center].mean() < rgb[center].mean()  # the dirt darkens what is behind it


def test_mask_only_rendering_is_the_rendered_mask():
    spec = FleetSpec(seed=59, vehicles=2, minutes_per_day=2.0, segment_s=20.0)
    for plan in plan_fleet(spec)[:3]:
        world = scene.drive_layout(plan)
        line = drive.timeline(spec, plan, world)
        for i in (0, 77, 150):
            assert np.array_equal(
                drive.frame_mask(spec, plan, world, line, i),
                drive.render_frame(spec, plan, world, line, i)[1],
            )


def test_the_car_slows_for_a_hazard_ahead_and_drives_on_past_it():
    """Cruise speed far from hazards; 30% of it from 5 m before one until it is passed; linear
    in between (scene.HAZARD_SLOWDOWN: from 50 m)."""
    hazards_m = np.array([100.0, 400.0])
    assert scene._hazard_factor(hazards_m, 0.0) == 1.0  # 100 m ahead
    assert scene._hazard_factor(hazards_m, 95.0) == pytest.approx(0.3)  # 5 m ahead
    assert scene._hazard_factor(hazards_m, 72.5) == pytest.approx(0.3 + 0.7 * 22.5 / 45)
    assert scene._hazard_factor(hazards_m, 101.5) == 1.0  # passed; the next is far
    plan = plan_fleet(FleetSpec(seed=5, vehicles=1, minutes_per_day=1.0))[0]
    layout = scene.drive_layout(plan)
    t = np.arange(0.0, 60.0, 0.5)
    dist, speed = scene.ego_motion(plan, layout, t)
    assert np.all(np.diff(dist) >= 0) and np.all(speed <= scene.cruise_speed_mps(plan, layout, t))
