"""Daylight: the sun's elevation and sunrise / sunset times from the series' coordinates."""

from __future__ import annotations

import numpy as np
import pytest

from shared.core.dataset_spec import load_spec
from shared.core.daylight import DAYLIGHT_COLUMNS, Location, daylight

SPEC = load_spec("tetouan_power")
TETOUAN = Location(35.5889, -5.3626, 0.0)


def minutes_of(day: str) -> np.ndarray:
    start = np.datetime64(f"{day}T00:00")
    return np.arange(start, start + np.timedelta64(1, "D"), np.timedelta64(1, "m"))


def clock(minute: int) -> int:
    """Minutes after midnight of a time written HHMM."""
    return minute // 100 * 60 + minute % 100


def sun_times(day: str, where: Location = TETOUAN) -> tuple[int, int]:
    """Sunrise: the first minute with minutes_from_sunrise >= 0; sunset: the first with minutes_to_sunset < 0."""
    sun = daylight(minutes_of(day), where)
    return int(np.argmax(sun["minutes_from_sunrise"] >= 0)), int(np.argmax(sun["minutes_to_sunset"] < 0))


def test_the_spec_places_the_series_at_tetouan():
    where = Location.from_spec(SPEC.section("location"), SPEC.utc_offset.total_seconds() / 60)
    assert where == TETOUAN


@pytest.mark.parametrize(("day", "sunrise", "sunset"), [("2017-06-21", 506, 1939), ("2017-12-21", 727, 1711)])
def test_sunrise_and_sunset_at_tetouan(day, sunrise, sunset):
    rise, set_ = sun_times(day)
    assert abs(rise - clock(sunrise)) <= 5
    assert abs(set_ - clock(sunset)) <= 5
    sun = daylight(minutes_of(day), TETOUAN)
    # The columns count minutes: one per minute of the clock, in opposite directions.
    assert np.allclose(np.diff(sun["minutes_from_sunrise"]), 1, atol=0.01)
    assert np.allclose(np.diff(sun["minutes_to_sunset"]), -1, atol=0.01)
    # At sunrise the sun's centre stands 50' below the horizon (refraction and the sun's radius).
    assert sun["sun_elevation"][rise] == pytest.approx(-0.833, abs=0.25)
    assert sun["sun_elevation"][set_] == pytest.approx(-0.833, abs=0.25)


def test_the_summer_day_is_longer_and_noon_is_late_west_of_greenwich():
    summer, winter = sun_times("2017-06-21"), sun_times("2017-12-21")
    assert (summer[1] - summer[0]) - (winter[1] - winter[0]) > 4 * 60  # 14h33 against 9h44
    sun = daylight(minutes_of("2017-06-21"), TETOUAN)
    noon = int(np.argmax(sun["sun_elevation"]))
    assert abs(noon - clock(1223)) <= 3  # 4 minutes per degree west of Greenwich, plus the equation of time
    assert noon == pytest.approx((summer[0] + summer[1]) / 2, abs=2)


def test_elevation_at_the_solstices_and_at_midnight():
    june = daylight(minutes_of("2017-06-21"), TETOUAN)["sun_elevation"]
    december = daylight(minutes_of("2017-12-21"), TETOUAN)["sun_elevation"]
    assert june.max() == pytest.approx(90 - 35.5889 + 23.44, abs=0.5)
    assert december.max() == pytest.approx(90 - 35.5889 - 23.44, abs=0.5)
    for day in ("2017-01-01", "2017-03-20", "2017-06-21", "2017-09-23", "2017-12-21"):
        midnight = np.array([f"{day}T00:00"], dtype="datetime64[m]")
        assert daylight(midnight, TETOUAN)["sun_elevation"][0] < -20, day


def test_the_clock_offset_moves_the_sun_on_the_clock():
    ahead = Location(TETOUAN.latitude, TETOUAN.longitude, 60.0)  # the same place on UTC+1
    rise, set_ = sun_times("2017-06-21")
    rise_ahead, set_ahead = sun_times("2017-06-21", ahead)
    assert abs(rise_ahead - rise - 60) <= 1 and abs(set_ahead - set_ - 60) <= 1


def test_columns_and_shape():
    ts = np.array(["2017-06-21T12:00", "2017-12-21T03:00", "2017-03-01T18:10"], dtype="datetime64[m]")
    sun = daylight(ts, TETOUAN)
    assert tuple(sun) == DAYLIGHT_COLUMNS
    assert all(v.shape == (3,) and np.isfinite(v).all() for v in sun.values())
    assert sun["minutes_from_sunrise"][0] > 0 and sun["minutes_to_sunset"][0] > 0
    assert sun["minutes_from_sunrise"][1] < 0  # 03:00 is before sunrise


def test_location_from_spec():
    assert Location.from_spec({}, 0) is None
    assert Location.from_spec({"latitude": 35.6}, 0) is None
    assert Location.from_spec({"longitude": -5.4, "note": "no latitude"}, 0) is None
    assert Location.from_spec({"latitude": "35.5", "longitude": -5}, 60) == Location(35.5, -5.0, 60.0)
    with pytest.raises(ValueError, match="latitude"):
        Location.from_spec({"latitude": 91, "longitude": 0}, 0)
    with pytest.raises(ValueError):
        Location.from_spec({"latitude": 35, "longitude": 181}, 0)
