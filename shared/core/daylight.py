"""Where the sun is, from the series' coordinates and its clock (numpy only).

Consumption follows daylight more closely than the clock: lighting turns on at
dusk, whose time moves by more than two hours over a year at Tetouan's latitude.
The formulas are NOAA's low-accuracy solar position (declination and equation of
time from the fractional year), good to about a minute for sunrise and sunset,
which is far inside the series' 10-minute step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

DAYLIGHT_COLUMNS = ("sun_elevation", "minutes_from_sunrise", "minutes_to_sunset")
# The sun's centre this far below the horizon is sunrise or sunset (refraction and radius).
HORIZON_DEGREES = -0.833


@dataclass(frozen=True)
class Location:
    """A series' place on Earth and the offset of its naive clock from UTC."""

    latitude: float
    longitude: float
    utc_offset_minutes: float

    @classmethod
    def from_spec(cls, section: Mapping[str, Any], utc_offset_minutes: float) -> Location | None:
        """From the spec's ``location`` section; None when the spec names no place."""
        if "latitude" not in section or "longitude" not in section:
            return None
        lat, lon = float(section["latitude"]), float(section["longitude"])
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(f"location ({lat}, {lon}) is not a latitude and longitude")
        return cls(lat, lon, float(utc_offset_minutes))


def daylight(ts: np.ndarray, where: Location) -> dict[str, np.ndarray]:
    """Sun elevation (degrees) and minutes since sunrise / until sunset for datetime64[m] values
    of the series' clock. Polar day or night, where the sun never crosses the horizon, gives
    ±720 minutes."""
    ts = np.asarray(ts, dtype="datetime64[m]")
    days = ts.astype("datetime64[D]")
    local_minute = (ts - days).astype(np.int64).astype(float)
    day_of_year = (days - days.astype("datetime64[Y]")).astype(np.int64)
    gamma = 2 * np.pi / 365 * (day_of_year + (local_minute / 60 - 12) / 24)
    eq_time = 229.18 * (0.000075 + 0.001868 * np.cos(gamma) - 0.032077 * np.sin(gamma)
                        - 0.014615 * np.cos(2 * gamma) - 0.040849 * np.sin(2 * gamma))
    decl = (0.006918 - 0.399912 * np.cos(gamma) + 0.070257 * np.sin(gamma) - 0.006758 * np.cos(2 * gamma)
            + 0.000907 * np.sin(2 * gamma) - 0.002697 * np.cos(3 * gamma) + 0.00148 * np.sin(3 * gamma))
    lat = np.radians(where.latitude)
    # Local solar noon on the series' clock, in minutes after midnight.
    noon = 720 - 4 * where.longitude - eq_time + where.utc_offset_minutes
    hour_angle = np.radians((local_minute - noon) / 4)
    sin_elev = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    elevation = np.degrees(np.arcsin(np.clip(sin_elev, -1, 1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos_h0 = ((np.sin(np.radians(HORIZON_DEGREES)) - np.sin(lat) * np.sin(decl))
                  / (np.cos(lat) * np.cos(decl)))
    half_day = 4 * np.degrees(np.arccos(np.clip(cos_h0, -1, 1)))  # minutes from noon to sunset
    return {"sun_elevation": elevation,
            "minutes_from_sunrise": local_minute - (noon - half_day),
            "minutes_to_sunset": (noon + half_day) - local_minute}
