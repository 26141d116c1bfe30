"""The fleet's world: a spec (seed and sizes) and the deterministic plan of every drive segment.

The plan is a pure function of the spec, so the oracle labeler can rebuild any
segment's hidden conditions from `fleet.json` (the spec, written at the fleet
root) and a recording id. Conditions are drawn per drive (a drive spans one or
more segments) with realistic rarity: night and snow a few percent each.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json

import numpy as np

from avfleet import domains
from avfleet.core import config as config_lib

TIME_OF_DAY_PROBS = {"day": 0.90, "twilight": 0.06, "night": 0.04}
WEATHER_PROBS = {"clear": 0.80, "rain": 0.12, "fog": 0.05, "snow": 0.03}
ROAD_PROBS = {"urban": 0.65, "freeway": 0.35}
CITIES = (  # (name, lat_deg, lon_deg)
    ("munich", 48.14, 11.58),
    ("detroit", 42.33, -83.05),
    ("phoenix", 33.45, -112.07),
    ("oslo", 59.91, 10.75),
    ("tokyo", 35.68, 139.69),
)
SOFTWARE_VERSIONS = ("logger-4.2.0", "logger-4.3.1")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FleetSpec:
    seed: int = 0
    """Seed of everything: same spec, same bytes."""
    vehicles: int = 4
    """Number of vehicles (named veh-000, veh-001, ...)."""
    days: int = 1
    """Consecutive UTC days of driving."""
    start_date: str = "2026-11-20"
    """First day, YYYY-MM-DD."""
    minutes_per_day: float = 5.0
    """Driving minutes per vehicle per day, cut into segments."""
    segment_s: float = 60.0
    """Length of one recording (drive segment) in seconds."""
    camera_hz: float = 10.0
    """Camera frame rate."""
    gps_hz: float = 1.0
    """GPS fix rate."""
    can_hz: float = 5.0
    """Vehicle CAN signal rate."""
    height: int = 64
    """Camera image height in pixels."""
    width: int = 128
    """Camera image width in pixels."""
    jpeg_quality: int = 90
    """JPEG quality of the camera frames."""

    def __post_init__(self) -> None:
        if self.vehicles < 1:
            raise ValueError("FleetSpec.vehicles must be at least 1")
        if self.days < 1:
            raise ValueError("FleetSpec.days must be at least 1")
        if self.minutes_per_day <= 0 or self.segment_s <= 0:
            raise ValueError("FleetSpec.minutes_per_day and segment_s must be positive")
        if self.height < 16 or self.width < 32:
            raise ValueError("FleetSpec.height/width must be at least 16x32")
        dt.date.fromisoformat(self.start_date)

    def dates(self) -> list[str]:
        first = dt.date.fromisoformat(self.start_date)
        return [(first + dt.timedelta(days=d)).isoformat() for d in range(self.days)]

    def to_json(self) -> str:
        return config_lib.dumps(self)

    @classmethod
    def from_json(cls, text: str) -> FleetSpec:
        return config_lib.from_dict(cls, json.loads(text))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SegmentPlan:
    """Everything needed to render one recording; the hidden truth the oracle knows."""

    recording_id: str
    vehicle: str
    date: str
    start_unix_s: float
    duration_s: float
    lat_deg: float
    lon_deg: float
    heading_rad: float
    drive_offset_s: float
    """Seconds into its drive at which this segment starts (drives span segments)."""
    weather: str
    road_type: str
    ambient_temp_c: float
    software_version: str
    scene_seed: int
    forced_time_of_day: str | None = None


def stable_seed(*parts: object) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _choice(rng: np.random.Generator, probs: dict[str, float]) -> str:
    names = list(probs)
    return names[int(rng.choice(len(names), p=np.array([probs[n] for n in names])))]


def pick_start_time(
    rng: np.random.Generator, date: str, lat: float, lon: float, tod: str, duration_s: float
) -> float:
    """A UTC start on `date` whose whole drive falls in the wanted time of day, if any does."""
    day0 = dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp()
    starts = day0 + np.arange(0, domains.SECONDS_PER_DAY - duration_s, 300.0)
    ok = (domains.time_of_day(domains.sun_elevation_deg(starts, lat, lon)) == tod) & (
        domains.time_of_day(domains.sun_elevation_deg(starts + duration_s, lat, lon)) == tod
    )
    candidates = starts[ok] if ok.any() else starts
    return float(candidates[rng.integers(len(candidates))] + rng.uniform(0, 240))


def plan_fleet(spec: FleetSpec) -> list[SegmentPlan]:
    """Every segment of the fleet, in (date, vehicle, time) order."""
    segments_per_day = max(1, int(round(spec.minutes_per_day * 60.0 / spec.segment_s)))
    plans: list[SegmentPlan] = []
    for date in spec.dates():
        for v in range(spec.vehicles):
            vehicle = f"veh-{v:03d}"
            rng = np.random.default_rng(stable_seed(spec.seed, date, vehicle))
            _, city_lat, city_lon = CITIES[stable_seed(spec.seed, vehicle) % len(CITIES)]
            remaining = segments_per_day
            drive = 0
            while remaining > 0:
                drive_segments = int(min(remaining, rng.integers(1, 4)))
                plans.extend(
                    _plan_drive(spec, rng, date, vehicle, drive, drive_segments, city_lat, city_lon)
                )
                remaining -= drive_segments
                drive += 1
    return plans


def _plan_drive(
    spec: FleetSpec,
    rng: np.random.Generator,
    date: str,
    vehicle: str,
    drive: int,
    num_segments: int,
    city_lat: float,
    city_lon: float,
    *,
    tod: str | None = None,
    weather: str | None = None,
    road: str | None = None,
) -> list[SegmentPlan]:
    tod = tod or _choice(rng, TIME_OF_DAY_PROBS)
    weather = weather or _choice(rng, WEATHER_PROBS)
    road = road or _choice(rng, ROAD_PROBS)
    lat = city_lat + rng.uniform(-0.1, 0.1)
    lon = city_lon + rng.uniform(-0.1, 0.1)
    start = pick_start_time(rng, date, lat, lon, tod, num_segments * spec.segment_s)
    temp = float(rng.uniform(-9.0, -1.0) if weather == "snow" else rng.uniform(3.0, 24.0))
    heading = float(rng.uniform(0, 2 * np.pi))
    software = SOFTWARE_VERSIONS[int(rng.integers(len(SOFTWARE_VERSIONS)))]
    plans = []
    for s in range(num_segments):
        recording_id = f"{vehicle}_{date.replace('-', '')}_d{drive:02d}s{s:02d}"
        plans.append(
            SegmentPlan(
                recording_id=recording_id,
                vehicle=vehicle,
                date=date,
                start_unix_s=start + s * spec.segment_s,
                duration_s=spec.segment_s,
                lat_deg=lat,
                lon_deg=lon,
                heading_rad=heading,
                drive_offset_s=s * spec.segment_s,
                weather=weather,
                road_type=road,
                ambient_temp_c=temp,
                software_version=software,
                scene_seed=stable_seed(spec.seed, vehicle, date, "drive", drive),
                forced_time_of_day=tod,
            )
        )
    return plans


def plan_heldout(spec: FleetSpec, segments_per_domain: int = 1) -> list[SegmentPlan]:
    """A domain-balanced test set: every (time of day, weather, road) combination equally often.

    Uses vehicle names `test-NNN` and its own seeds, so it never overlaps the fleet.
    """
    plans: list[SegmentPlan] = []
    date = spec.dates()[0]
    i = 0
    for tod in domains.TIME_OF_DAY:
        for weather in domains.WEATHER:
            for road in domains.ROAD_TYPE:
                for _ in range(segments_per_domain):
                    vehicle = f"test-{i:03d}"
                    rng = np.random.default_rng(stable_seed(spec.seed, "heldout", i))
                    _, lat, lon = CITIES[i % len(CITIES)]
                    plans.extend(
                        _plan_drive(
                            spec,
                            rng,
                            date,
                            vehicle,
                            0,
                            1,
                            lat,
                            lon,
                            tod=tod,
                            weather=weather,
                            road=road,
                        )
                    )
                    i += 1
    return plans
