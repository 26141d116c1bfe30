"""Domain vocabulary shared by the fleet generator and the index: conditions and how signals show them.

Time of day comes from the sun's elevation at a position and time (the
NOAA low-precision solar position: declination and equation of time from the
fractional year, good to about half a degree, plenty for day/twilight/night).
Thresholds: day at 6 degrees or more (past the "golden hour"), night below
-6 degrees (past civil twilight), twilight in between.

Weather and road type are read from vehicle signals, as a car would see them:
wipers on in the cold is snow, wipers on otherwise is rain, fog lights with
dry glass is fog; a sustained speed of 20 m/s (72 km/h) or more is a freeway.
"""

from __future__ import annotations

import numpy as np

TIME_OF_DAY = ("day", "twilight", "night")
WEATHER = ("clear", "rain", "fog", "snow")
ROAD_TYPE = ("urban", "freeway")

DAY_MIN_ELEVATION_DEG = 6.0
NIGHT_MAX_ELEVATION_DEG = -6.0
SNOW_MAX_TEMP_C = 1.0
FREEWAY_MIN_SPEED_MPS = 20.0
ROAD_SPEED_WINDOW_S = 10.0
"""Road type uses the median CAN speed over this trailing window (stops at lights stay urban)."""

SECONDS_PER_DAY = 86400.0


def sun_elevation_deg(
    unix_s: np.ndarray | float, lat_deg: np.ndarray | float, lon_deg: np.ndarray | float
) -> np.ndarray:
    """Solar elevation in degrees at UTC unix times and positions (NOAA general solar position)."""
    unix_s = np.asarray(unix_s, dtype=np.float64)
    lat = np.radians(np.asarray(lat_deg, dtype=np.float64))
    days = unix_s / SECONDS_PER_DAY
    # Day of year and UTC hour from days since 1970-01-01 (a leap-year-free approximation of
    # the fractional year costs < 0.3 degree of declination).
    year_days = 365.2425
    day_of_year = np.floor(np.mod(days, year_days))  # 0-based: 1970-01-01 was a Jan 1
    hour_utc = np.mod(unix_s, SECONDS_PER_DAY) / 3600.0
    gamma = 2.0 * np.pi / 365.0 * (day_of_year + (hour_utc - 12.0) / 24.0)
    eq_time_min = 229.18 * (
        0.000075
        + 0.001868 * np.cos(gamma)
        - 0.032077 * np.sin(gamma)
        - 0.014615 * np.cos(2 * gamma)
        - 0.040849 * np.sin(2 * gamma)
    )
    decl = (
        0.006918
        - 0.399912 * np.cos(gamma)
        + 0.070257 * np.sin(gamma)
        - 0.006758 * np.cos(2 * gamma)
        + 0.000907 * np.sin(2 * gamma)
        - 0.002697 * np.cos(3 * gamma)
        + 0.00148 * np.sin(3 * gamma)
    )
    true_solar_min = hour_utc * 60.0 + eq_time_min + 4.0 * np.asarray(lon_deg, dtype=np.float64)
    hour_angle = np.radians(true_solar_min / 4.0 - 180.0)
    cos_zenith = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    return np.degrees(np.arcsin(np.clip(cos_zenith, -1.0, 1.0)))


def time_of_day(elevation_deg: np.ndarray) -> np.ndarray:
    elevation_deg = np.asarray(elevation_deg)
    return np.where(
        elevation_deg >= DAY_MIN_ELEVATION_DEG,
        "day",
        np.where(elevation_deg < NIGHT_MAX_ELEVATION_DEG, "night", "twilight"),
    ).astype(object)


def weather_from_signals(
    wiper_level: np.ndarray, fog_lights: np.ndarray, ambient_temp_c: np.ndarray
) -> np.ndarray:
    wiping = np.asarray(wiper_level) > 0
    cold = np.asarray(ambient_temp_c) <= SNOW_MAX_TEMP_C
    fog = np.asarray(fog_lights, dtype=bool) & ~wiping
    return np.where(
        wiping & cold, "snow", np.where(wiping, "rain", np.where(fog, "fog", "clear"))
    ).astype(object)


def road_type_from_speed(median_speed_mps: np.ndarray) -> np.ndarray:
    return np.where(
        np.asarray(median_speed_mps) >= FREEWAY_MIN_SPEED_MPS, "freeway", "urban"
    ).astype(object)


def domain_key(time_of_day: str, weather: str, road_type: str) -> str:
    return f"{time_of_day}/{weather}/{road_type}"
