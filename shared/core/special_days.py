"""Holidays and special periods of a series' region, held as data (numpy only).

The dataset spec's ``calendar`` section lists the holidays as they were *observed*
(Islamic holidays follow the local moon sighting, so computed dates can be a day
off) and periods such as Ramadan. Operators add dates announced later without a
code change (``python -m shared.cli calendar add ...``): those live in the
documents store and are merged with the spec's (``merged``). Training and predict
read the same merged calendar, so a newly announced holiday reaches the features
of the day it names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

HOLIDAY = "holiday"
KINDS = (HOLIDAY, "ramadan")
# Target day, the day before, the day after and a week before: the anchor (the previous
# day) and the week-old lags carry a holiday's dip into the days that follow it.
CALENDAR_COLUMNS = ("holiday", "holiday_prev", "holiday_next", "holiday_week", "ramadan", "ramadan_prev")


class CalendarError(ValueError):
    """A calendar entry that is not a valid date, period or kind."""


@dataclass(frozen=True)
class SpecialDay:
    """One day of a kind (``holiday`` or ``ramadan``), with its name."""

    day: date
    kind: str
    name: str


def parse_entries(section: Mapping[str, Any]) -> list[SpecialDay]:
    """The days a ``calendar`` section (the spec's or an operator's) lists.

    ``holidays``: ``[{"date": "YYYY-MM-DD", "name": ...}]``; ``periods``:
    ``[{"kind": "ramadan", "start": ..., "end": ..., "name": ...}]`` (both ends included).
    """
    days: list[SpecialDay] = []
    for i, entry in enumerate(section.get("holidays", []) or []):
        days.append(SpecialDay(_date(entry, "date", f"holidays[{i}]"), HOLIDAY,
                               str(entry.get("name", ""))))
    for i, entry in enumerate(section.get("periods", []) or []):
        where = f"periods[{i}]"
        if not isinstance(entry, Mapping):
            raise CalendarError(f"{where} must be an object with kind, start and end")
        kind = str(entry.get("kind", ""))
        if kind not in KINDS:
            raise CalendarError(f"{where}.kind must be one of {list(KINDS)}, not {kind!r}")
        start, end = _date(entry, "start", where), _date(entry, "end", where)
        if end < start or (end - start).days >= 366:
            raise CalendarError(f"{where}: end {end} must be on or after start {start}, within a year")
        for offset in range((end - start).days + 1):
            days.append(SpecialDay(date.fromordinal(start.toordinal() + offset), kind,
                                   str(entry.get("name", kind))))
    return days


def _date(entry: Any, key: str, where: str) -> date:
    if not isinstance(entry, Mapping) or not isinstance(entry.get(key), str):
        raise CalendarError(f"{where}.{key} must be a date written YYYY-MM-DD")
    if len(entry[key]) != 10 or entry[key][4] != "-" or entry[key][7] != "-":
        raise CalendarError(f"{where}.{key} {entry[key]!r} is not a date written YYYY-MM-DD")
    try:
        return date.fromisoformat(entry[key])
    except ValueError as exc:
        raise CalendarError(f"{where}.{key} {entry[key]!r} is not a date written YYYY-MM-DD") from exc


class SpecialDays:
    """Lookup of special days by datetime64 day, for feature columns."""

    def __init__(self, days: Iterable[SpecialDay]) -> None:
        self.days = sorted(set(days), key=lambda d: (d.day, d.kind, d.name))
        self._by_kind = {kind: np.array(sorted({np.datetime64(d.day, "D") for d in self.days if d.kind == kind}),
                                        dtype="datetime64[D]") for kind in KINDS}

    @classmethod
    def merged(cls, spec_section: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> SpecialDays:
        """The spec's calendar plus the entries an operator added."""
        return cls([*parse_entries(spec_section), *parse_entries(extra or {})])

    def flags(self, kind: str, days: np.ndarray) -> np.ndarray:
        """1.0 where a datetime64[D] day is of ``kind``, else 0.0."""
        known = self._by_kind[kind]
        if not len(known):
            return np.zeros(len(days))
        at = np.minimum(np.searchsorted(known, days), len(known) - 1)  # cheaper than isin for a request
        return (known[at] == days).astype(float)

    def columns(self, ts: np.ndarray) -> dict[str, np.ndarray]:
        """The calendar feature columns for datetime64[m] timestamps."""
        day = np.asarray(ts, dtype="datetime64[m]").astype("datetime64[D]")
        one, week = np.timedelta64(1, "D"), np.timedelta64(7, "D")
        return {"holiday": self.flags(HOLIDAY, day), "holiday_prev": self.flags(HOLIDAY, day - one),
                "holiday_next": self.flags(HOLIDAY, day + one), "holiday_week": self.flags(HOLIDAY, day - week),
                "ramadan": self.flags("ramadan", day), "ramadan_prev": self.flags("ramadan", day - one)}

    def describe(self) -> list[dict[str, str]]:
        """Every special day as ``{"date", "kind", "name"}``, in date order."""
        return [{"date": d.day.isoformat(), "kind": d.kind, "name": d.name} for d in self.days]
