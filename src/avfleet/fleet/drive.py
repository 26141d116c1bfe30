"""What a segment's sensors see over time: frame times, ego motion, GPS and CAN signals."""

from __future__ import annotations

import dataclasses

import numpy as np

from avfleet import domains
from avfleet.fleet import scene
from avfleet.fleet.world import FleetSpec, SegmentPlan, stable_seed

EARTH_M_PER_DEG = 111_111.0


@dataclasses.dataclass(frozen=True)
class SegmentTimeline:
    frame_times_s: np.ndarray  # unix seconds
    frame_drive_t_s: np.ndarray
    frame_distance_m: np.ndarray
    gps_times_s: np.ndarray
    gps: dict[str, np.ndarray]
    can_times_s: np.ndarray
    can: dict[str, np.ndarray]


def _times(plan: SegmentPlan, hz: float) -> np.ndarray:
    return plan.start_unix_s + np.arange(0.0, plan.duration_s, 1.0 / hz)


def timeline(spec: FleetSpec, plan: SegmentPlan, layout: scene.Layout) -> SegmentTimeline:
    frame_t = _times(plan, spec.camera_hz)
    gps_t = _times(plan, spec.gps_hz)
    can_t = _times(plan, spec.can_hz)

    def drive_t(t: np.ndarray) -> np.ndarray:
        return t - plan.start_unix_s + plan.drive_offset_s

    dist = lambda t: scene.ego_distance_m(plan, layout, drive_t(t))  # noqa: E731
    gps_dist = dist(gps_t)
    lat = plan.lat_deg + gps_dist * np.cos(plan.heading_rad) / EARTH_M_PER_DEG
    lon = plan.lon_deg + gps_dist * np.sin(plan.heading_rad) / (
        EARTH_M_PER_DEG * np.cos(np.radians(plan.lat_deg))
    )
    rng = np.random.default_rng(stable_seed(plan.scene_seed, plan.recording_id, "signals"))
    gps = {
        "lat_deg": lat + rng.normal(0, 2e-6, lat.shape),
        "lon_deg": lon + rng.normal(0, 2e-6, lon.shape),
        "speed_mps": np.maximum(
            0, scene.ego_speed_mps(plan, layout, drive_t(gps_t)) + rng.normal(0, 0.2, gps_t.shape)
        ),
    }
    elevation = domains.sun_elevation_deg(can_t, plan.lat_deg, plan.lon_deg)
    wet = plan.weather in ("rain", "snow")
    can = {
        "speed_mps": scene.ego_speed_mps(plan, layout, drive_t(can_t)),
        "wiper_level": np.full(
            can_t.shape, (2 if plan.weather == "snow" else 1) if wet else 0, dtype=np.int64
        ),
        "headlights": (elevation < domains.DAY_MIN_ELEVATION_DEG) | (plan.weather != "clear"),
        "fog_lights": np.full(can_t.shape, plan.weather in ("fog", "snow")),
        "ambient_temp_c": plan.ambient_temp_c + rng.normal(0, 0.1, can_t.shape),
    }
    return SegmentTimeline(
        frame_times_s=frame_t,
        frame_drive_t_s=drive_t(frame_t),
        frame_distance_m=dist(frame_t),
        gps_times_s=gps_t,
        gps=gps,
        can_times_s=can_t,
        can=can,
    )


def render_frame(
    spec: FleetSpec,
    plan: SegmentPlan,
    layout: scene.Layout,
    line: SegmentTimeline,
    frame_index: int,
) -> tuple[np.ndarray, np.ndarray]:
    t = float(line.frame_times_s[frame_index])
    elevation = float(domains.sun_elevation_deg(t, plan.lat_deg, plan.lon_deg))
    return scene.render(
        plan,
        layout,
        frame_index,
        float(line.frame_drive_t_s[frame_index]),
        float(line.frame_distance_m[frame_index]),
        elevation,
        spec.height,
        spec.width,
    )


def frame_mask(
    spec: FleetSpec,
    plan: SegmentPlan,
    layout: scene.Layout,
    line: SegmentTimeline,
    frame_index: int,
) -> np.ndarray:
    """The frame's semantic mask without shading it (what the oracle needs; ~5x cheaper)."""
    return scene.render_mask(
        plan,
        layout,
        float(line.frame_drive_t_s[frame_index]),
        float(line.frame_distance_m[frame_index]),
        spec.height,
        spec.width,
    )
