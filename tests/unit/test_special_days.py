"""Special days: the spec's holiday calendar as data, operator entries, and the feature columns."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from shared.core.dataset_spec import load_spec
from shared.core.special_days import CALENDAR_COLUMNS, HOLIDAY, CalendarError, SpecialDay, SpecialDays, parse_entries

SPEC = load_spec("tetouan_power")


@pytest.fixture(scope="module")
def special() -> SpecialDays:
    return SpecialDays.merged(SPEC.section("calendar"))


def at_noon(*days: str) -> np.ndarray:
    return np.array([f"{d}T12:00" for d in days], dtype="datetime64[m]")


def flags(special: SpecialDays, column: str, *days: str) -> list[float]:
    return list(special.columns(at_noon(*days))[column])


def test_the_spec_lists_the_observed_holidays_and_ramadan(special):
    holidays = {d["date"] for d in special.describe() if d["kind"] == HOLIDAY}
    assert {"2017-06-26", "2017-06-27", "2017-09-01", "2017-12-01", "2017-01-01"} <= holidays
    assert len(holidays) == 16
    assert flags(special, "holiday", "2017-06-26", "2017-12-01", "2017-06-25", "2017-12-03") == [1, 1, 0, 0]
    ramadan = sorted(d["date"] for d in special.describe() if d["kind"] == "ramadan")
    assert ramadan[0] == "2017-05-27" and ramadan[-1] == "2017-06-25" and len(ramadan) == 30
    assert flags(special, "ramadan", "2017-05-26", "2017-05-27", "2017-06-10", "2017-06-25", "2017-06-26") == [
        0, 1, 1, 1, 0]
    # A whole day is flagged, midnight to 23:59.
    ts = np.array(["2017-06-26T00:00", "2017-06-26T23:59", "2017-06-25T23:59"], dtype="datetime64[m]")
    assert list(special.columns(ts)["holiday"]) == [1, 1, 0]


def test_neighbouring_day_columns(special):
    # Eid al-Fitr 2017-06-26/27, right after Ramadan (05-27..06-25).
    days = ("2017-06-25", "2017-06-26", "2017-06-27", "2017-06-28", "2017-07-03", "2017-07-04", "2017-07-05")
    cols = special.columns(at_noon(*days))
    assert set(cols) == set(CALENDAR_COLUMNS)
    assert list(cols["holiday"]) == [0, 1, 1, 0, 0, 0, 0]
    assert list(cols["holiday_prev"]) == [0, 0, 1, 1, 0, 0, 0]  # the day before was a holiday
    assert list(cols["holiday_next"]) == [1, 1, 0, 0, 0, 0, 0]  # the day after is one
    assert list(cols["holiday_week"]) == [0, 0, 0, 0, 1, 1, 0]  # 7 days before was one
    assert list(cols["ramadan"]) == [1, 0, 0, 0, 0, 0, 0]
    assert list(cols["ramadan_prev"]) == [1, 1, 0, 0, 0, 0, 0]  # 06-24 and 06-25 were in Ramadan
    assert flags(special, "ramadan_prev", "2017-05-27", "2017-05-28") == [0, 1]
    assert all(c.dtype == float for c in cols.values())


def test_parse_entries_reads_holidays_and_periods_inclusively():
    days = parse_entries({"holidays": [{"date": "2018-01-01", "name": "New Year"}],
                          "periods": [{"kind": "ramadan", "start": "2018-05-16", "end": "2018-05-18"}]})
    assert days == [SpecialDay(date(2018, 1, 1), HOLIDAY, "New Year"),
                    *(SpecialDay(date(2018, 5, d), "ramadan", "ramadan") for d in (16, 17, 18))]
    assert parse_entries({}) == [] and parse_entries({"holidays": None, "periods": None}) == []
    one_day = parse_entries({"periods": [{"kind": "holiday", "start": "2018-06-15", "end": "2018-06-15"}]})
    assert [(d.day, d.kind) for d in one_day] == [(date(2018, 6, 15), HOLIDAY)]


@pytest.mark.parametrize(("section", "names"), [
    ({"holidays": [{"date": "2017-01-01"}, {"date": "2017-02-30"}]}, r"holidays\[1\]\.date '2017-02-30'"),
    ({"holidays": [{"date": "01/06/2017"}]}, r"holidays\[0\]\.date '01/06/2017'"),
    ({"holidays": [{"date": 20170101}]}, r"holidays\[0\]\.date must be a date"),
    ({"holidays": [{"name": "no date"}]}, r"holidays\[0\]\.date"),
    ({"holidays": ["2017-01-01"]}, r"holidays\[0\]\.date"),
    ({"periods": [{"kind": "ramadan", "start": "2017-06-25", "end": "2017-05-27"}]},
     r"periods\[0\]: end 2017-05-27 must be on or after start 2017-06-25"),
    ({"periods": [{"kind": "ramadan", "start": "2017-05-27", "end": "2017-06-25"},
                  {"kind": "lent", "start": "2017-03-01", "end": "2017-04-13"}]},
     r"periods\[1\]\.kind must be one of \['holiday', 'ramadan'\], not 'lent'"),
    ({"periods": [{"start": "2017-03-01", "end": "2017-04-13"}]}, r"periods\[0\]\.kind"),
    ({"periods": [{"kind": "ramadan", "start": "2017-01-01", "end": "2019-01-01"}]},
     r"periods\[0\]: .*within a year"),
    ({"periods": [{"kind": "ramadan", "start": "2017-05-27"}]}, r"periods\[0\]\.end"),
])
def test_bad_entries_raise_a_calendar_error_naming_the_entry(section, names):
    with pytest.raises(CalendarError, match=names):
        parse_entries(section)
    assert issubclass(CalendarError, ValueError)


def test_a_period_that_is_not_an_object_raises_a_calendar_error():
    with pytest.raises(CalendarError, match=r"periods\[0\]"):
        parse_entries({"periods": ["2017-05-27/2017-06-25"]})


def test_a_period_of_a_year_is_accepted():
    days = parse_entries({"periods": [{"kind": "holiday", "start": "2016-01-01", "end": "2016-12-31"}]})
    assert len(days) == 366  # a leap year, both ends included


def test_merged_adds_operator_entries_and_collapses_duplicates(special):
    extra = {"holidays": [{"date": "2017-06-26", "name": "Eid al-Fitr"},  # already in the spec
                          {"date": "2017-03-15", "name": "announced", "added_by": "ops"},
                          {"date": "2017-03-15", "name": "announced"}],
             "periods": [{"kind": "ramadan", "start": "2017-06-24", "end": "2017-06-25", "name": "Ramadan 1438"}]}
    merged = SpecialDays.merged(SPEC.section("calendar"), extra)
    described = merged.describe()
    assert len(described) == len(special.describe()) + 1  # only 03-15 is new
    assert described == sorted(described, key=lambda d: d["date"])
    assert {"date": "2017-03-15", "kind": HOLIDAY, "name": "announced"} in described
    assert described.count({"date": "2017-06-26", "kind": HOLIDAY, "name": "Eid al-Fitr"}) == 1
    assert flags(merged, "holiday", "2017-03-14", "2017-03-15") == [0, 1]
    assert flags(merged, "holiday_prev", "2017-03-16") == [1]
    assert flags(special, "holiday", "2017-03-15") == [0]  # the spec's own calendar is unchanged
    assert SpecialDays.merged(SPEC.section("calendar"), None).describe() == special.describe()


def test_the_same_day_under_two_names_is_flagged_once():
    days = SpecialDays.merged({"holidays": [{"date": "2017-06-26", "name": "Eid"}]},
                              {"holidays": [{"date": "2017-06-26", "name": "Eid al-Fitr"}]})
    assert flags(days, "holiday", "2017-06-26") == [1]
    assert len(days.flags(HOLIDAY, np.array(["2017-06-26"], dtype="datetime64[D]"))) == 1


def test_an_empty_calendar_flags_nothing():
    empty = SpecialDays([])
    cols = empty.columns(at_noon("2017-06-26", "2017-12-01"))
    assert all(not c.any() and len(c) == 2 for c in cols.values())
    assert empty.describe() == []
