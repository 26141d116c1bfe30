"""Sun elevation and the signal rules, against values worked out by hand."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from avfleet import domains


def utc(*args):
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


def test_noon_elevation_at_solstices():
    # At local solar noon the elevation is 90 - latitude + declination.
    # Munich (48.14 N, 11.58 E): solar noon ~ 12:00 - 11.58*4 min = 11:14 UTC (+ equation of time).
    # June solstice declination +23.44: 90 - 48.14 + 23.44 = 65.30 degrees.
    assert domains.sun_elevation_deg(utc(2026, 6, 21, 11, 14), 48.14, 11.58) == pytest.approx(
        65.30, abs=0.5
    )
    # December solstice declination -23.44 (noon ~11:12 UTC with the equation of time): 18.42 degrees.
    assert domains.sun_elevation_deg(utc(2026, 12, 21, 11, 12), 48.14, 11.58) == pytest.approx(
        18.42, abs=0.5
    )


def test_midnight_at_equator_on_equinox_is_far_below_horizon():
    # Equinox, lon 0, 00:00 UTC: the sun is at the nadir, about -90 degrees.
    assert domains.sun_elevation_deg(utc(2026, 3, 20, 0, 0), 0.0, 0.0) < -85


def test_time_of_day_thresholds():
    assert list(domains.time_of_day(np.array([30.0, 6.0, 5.9, -5.9, -6.0, -6.1]))) == [
        "day",
        "day",
        "twilight",
        "twilight",
        "twilight",
        "night",
    ]


def test_weather_from_signals():
    wipers = np.array([0, 1, 2, 0, 0, 1])
    fog = np.array([False, False, True, True, False, False])
    temp = np.array([15.0, 15.0, -3.0, 5.0, -5.0, 1.0])
    assert list(domains.weather_from_signals(wipers, fog, temp)) == [
        "clear",
        "rain",
        "snow",
        "fog",
        "clear",
        "snow",
    ]


def test_road_type_from_sustained_speed():
    assert list(domains.road_type_from_speed(np.array([0.0, 19.9, 20.0, 31.0]))) == [
        "urban",
        "urban",
        "freeway",
        "freeway",
    ]
