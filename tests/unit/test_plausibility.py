"""Plausibility of collected batches against the accepted history, on real 2017 days (pure, no I/O)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from shared.collect.plausibility import PlausibilityConfig, judge
from shared.collect.quality import PLAUSIBILITY, Check
from shared.core.dataset_spec import TIMESTAMP, DatasetSpec, SpecError, load_spec, parse_spec
from shared.core.frames import read_dataset_csv

SPEC = load_spec("tetouan_power")
CONFIG = PlausibilityConfig.from_spec(SPEC)
DAY = pd.Timedelta(days=1)
HOUR = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def year() -> pd.DataFrame:
    return read_dataset_csv(SPEC.read_replay_data(), SPEC)


def rows(year: pd.DataFrame, start: str | pd.Timestamp, end: str | pd.Timestamp) -> pd.DataFrame:
    """The rows in [start, end)."""
    ts = year[TIMESTAMP]
    return year[(ts >= pd.Timestamp(start)) & (ts < pd.Timestamp(end))].reset_index(drop=True)


def before(year: pd.DataFrame, day: str, days: int = CONFIG.history_days) -> pd.DataFrame:
    return rows(year, pd.Timestamp(day) - days * DAY, day)


def one_day(year: pd.DataFrame, day: str) -> pd.DataFrame:
    return rows(year, day, pd.Timestamp(day) + DAY)


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if not c.passed]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


# -- real days pass -------------------------------------------------------------------

REAL_DAYS = {
    "2017-03-15": "an ordinary Wednesday",
    "2017-04-09": "an ordinary Sunday",
    "2017-01-11": "Independence Manifesto day",
    "2017-09-01": "Eid al-Adha",
    "2017-05-27": "the first day of Ramadan",
    "2017-06-12": "a Ramadan day",
    "2017-06-26": "Eid al-Fitr",
    "2017-03-27": "the first working day of DST",
}


@pytest.mark.parametrize("day", list(REAL_DAYS), ids=list(REAL_DAYS.values()))
def test_real_days_pass_every_check(year, day):
    checks = judge(before(year, day), one_day(year, day), SPEC)
    assert failed(checks) == []
    names = by_name(checks)
    for column in (*SPEC.feature_names, *SPEC.target_names):
        assert names[f"{PLAUSIBILITY}:stuck:{column}"].examined == 1
        assert names[f"{PLAUSIBILITY}:copy:{column}"].examined == 1
    for target in SPEC.target_names:
        assert names[f"{PLAUSIBILITY}:level:{target}"].examined == 1
        assert names[f"{PLAUSIBILITY}:scale:{target}"].examined == 1
    assert names[f"{PLAUSIBILITY}:clock"].examined == 1
    assert all(c.name.startswith(PLAUSIBILITY) for c in checks)


# -- injected faults are caught -------------------------------------------------------

Fault = Callable[[pd.DataFrame, pd.DataFrame, str], pd.DataFrame]


def with_column(batch: pd.DataFrame, column: str, values) -> pd.DataFrame:
    out = batch.copy()
    out[column] = values
    return out


def stuck_from(column: str, hour: int) -> Fault:
    def fault(batch: pd.DataFrame, year: pd.DataFrame, day: str) -> pd.DataFrame:
        values = batch[column].to_numpy(float).copy()
        at = int(np.flatnonzero(batch[TIMESTAMP] == pd.Timestamp(day) + hour * HOUR)[0])
        values[at:] = values[at]
        return with_column(batch, column, values)
    return fault


def shifted(hours: int) -> Fault:
    """The day's values taken from ``hours`` later (earlier when negative), at the day's timestamps."""
    def fault(batch: pd.DataFrame, year: pd.DataFrame, day: str) -> pd.DataFrame:
        source = one_day(year, str(pd.Timestamp(day) + hours * HOUR))
        return source.assign(**{TIMESTAMP: batch[TIMESTAMP].to_numpy()})
    return fault


FAULTS: dict[str, tuple[Fault, str, list[str]]] = {
    # name: (fault, check kind expected to fail, columns its detail must name)
    "zone1 at 0": (lambda b, y, d: with_column(b, "zone1", 0.0), "scale", ["zone1"]),
    "zone2 in MW": (lambda b, y, d: with_column(b, "zone2", b["zone2"] / 1000), "scale", ["zone2"]),
    "zone3 halved": (lambda b, y, d: with_column(b, "zone3", b["zone3"] / 2), "level", ["zone3"]),
    "Temperature stuck all day": (stuck_from("Temperature", 0), "stuck", ["Temperature"]),
    "Humidity stuck from 10:00": (stuck_from("Humidity", 10), "stuck", ["Humidity"]),
    "zone3 stuck from 20:00": (stuck_from("zone3", 20), "stuck", ["zone3"]),
    "Temperature sign flipped": (lambda b, y, d: with_column(b, "Temperature", -b["Temperature"]), "sign",
                                 ["Temperature"]),
    "clock +1 h": (shifted(1), "clock", list(SPEC.target_names)),
    "clock -1 h": (shifted(-1), "clock", list(SPEC.target_names)),
    "copied from a week earlier": (lambda b, y, d: one_day(y, str(pd.Timestamp(d) - 7 * DAY)).assign(
        **{TIMESTAMP: b[TIMESTAMP].to_numpy()}), "copy", ["zone1", "Temperature"]),
}


@pytest.mark.parametrize("day", ["2017-03-15", "2017-10-08"])
@pytest.mark.parametrize("name", list(FAULTS))
def test_injected_faults_are_caught_and_named(year, name, day):
    fault, kind, columns = FAULTS[name]
    history, batch = before(year, day), one_day(year, day)
    assert failed(judge(history, batch, SPEC)) == []  # the real day passes
    checks = judge(history, fault(batch, year, day), SPEC)
    bad = [c for c in failed(checks) if c.name.split(":")[1] == kind]
    assert bad, f"{name}: no {kind} check failed; failed: {[c.name for c in failed(checks)]}"
    for column in columns:
        assert any(column in c.detail for c in bad), (column, bad)
        assert kind == "clock" or any(c.name.endswith(f":{column}") for c in bad), (column, bad)
    assert all(day in c.detail and c.failed == 1 and c.examined == 1 for c in bad)


def test_a_failing_level_names_value_and_bound(year):
    day = "2017-03-05"
    checks = judge(before(year, day), with_column(one_day(year, day), "zone1", 0.0), SPEC)
    level = by_name(checks)[f"{PLAUSIBILITY}:level:zone1"]
    bound = CONFIG.columns["zone1"].level_z
    assert not level.passed and f"bound {bound:g}" in level.detail and "mean 0 " in level.detail
    assert "Sundays" in level.detail  # the reference days are said


# -- short and odd input --------------------------------------------------------------


@pytest.mark.parametrize("days", [0, 1, CONFIG.min_history_days - 1])
def test_short_history_passes_saying_not_enough_history(year, days):
    day = "2017-05-10"
    history = before(year, day, days) if days else before(year, day).iloc[:0]
    checks = judge(history, with_column(one_day(year, day), "zone1", 0.0), SPEC)
    assert len(checks) == 1 and checks[0].passed and checks[0].name == PLAUSIBILITY
    assert "not enough history" in checks[0].detail and day in checks[0].detail


def test_empty_batch_and_missing_history_do_not_raise(year):
    empty = one_day(year, "2017-05-10").iloc[:0]
    assert [c.passed for c in judge(before(year, "2017-05-10"), empty, SPEC)] == [True]
    checks = judge(pd.DataFrame(), one_day(year, "2017-05-10"), SPEC)
    assert all(c.passed for c in checks) and "not enough history" in checks[0].detail


def test_nans_and_constant_columns_do_not_raise_or_fail(year):
    day = "2017-07-12"
    history, batch = before(year, day), one_day(year, day)
    history = with_column(history, "WindSpeed", 0.0)  # a column that is legitimately constant
    batch = with_column(batch, "WindSpeed", 0.0)
    batch.loc[10:20, "Humidity"] = np.nan
    checks = judge(history, batch, SPEC)
    names = by_name(checks)
    assert names[f"{PLAUSIBILITY}:stuck:WindSpeed"].passed and names[f"{PLAUSIBILITY}:copy:WindSpeed"].passed
    assert failed(checks) == []


def test_a_partial_day_is_judged_on_its_slots(year):
    day = "2017-08-09"
    history = before(year, day)
    morning = rows(year, day, pd.Timestamp(day) + 13 * HOUR)
    checks = judge(history, morning, SPEC)
    assert failed(checks) == []
    names = by_name(checks)
    assert names[f"{PLAUSIBILITY}:level:zone2"].examined == 1
    assert f"over {len(morning)} slots" in names[f"{PLAUSIBILITY}:level:zone2"].detail
    assert names[f"{PLAUSIBILITY}:clock"].examined == 1  # 13 h are enough for the clock
    bad = failed(judge(history, with_column(morning, "zone2", morning["zone2"] / 1000), SPEC))
    assert f"{PLAUSIBILITY}:scale:zone2" in [c.name for c in bad]


def test_an_hour_long_batch_continues_the_days_run(year):
    """A short batch: the rows of the day already accepted are history; a value stuck across both is caught."""
    day = pd.Timestamp("2017-08-09")
    history = rows(year, day - 28 * DAY, day + 20 * HOUR)
    last_hour = rows(year, day + 20 * HOUR, day + 21 * HOUR)
    assert failed(judge(history, last_hour, SPEC)) == []
    stuck = history.copy()
    tail = stuck[TIMESTAMP] >= day + 19 * HOUR
    stuck.loc[tail, "zone1"] = stuck.loc[tail, "zone1"].iloc[0]
    faulty = with_column(last_hour, "zone1", stuck.loc[tail, "zone1"].iloc[0])
    bad = failed(judge(stuck, faulty, SPEC))
    assert [c.name for c in bad] == [f"{PLAUSIBILITY}:stuck:zone1"]
    assert f"{day:%Y-%m-%d} 19:00" in bad[0].detail


def test_a_multi_day_batch_is_judged_day_by_day(year):
    start = pd.Timestamp("2017-10-02")
    history, batch = rows(year, start - 28 * DAY, start), rows(year, start, start + 3 * DAY)
    checks = judge(history, batch, SPEC)
    assert failed(checks) == [] and by_name(checks)[f"{PLAUSIBILITY}:level:zone1"].examined == 3
    middle = batch[TIMESTAMP].dt.normalize() == start + DAY
    broken = batch.copy()
    broken.loc[middle, "zone1"] = 0.0
    bad = by_name(judge(history, broken, SPEC))[f"{PLAUSIBILITY}:scale:zone1"]
    assert (bad.failed, bad.examined) == (1, 3) and f"{start + DAY:%Y-%m-%d}" in bad.detail


def test_a_batch_longer_than_the_history_uses_its_earlier_days(year):
    """Days of the batch become history for its later days; days before enough history pass unjudged."""
    start = pd.Timestamp("2017-04-10")
    short = CONFIG.min_history_days - 2
    history, batch = rows(year, start - short * DAY, start), rows(year, start, start + 5 * DAY)
    checks = judge(history, batch, SPEC)
    names = by_name(checks)
    assert failed(checks) == []
    assert names[PLAUSIBILITY].examined == 2 and "not enough history" in names[PLAUSIBILITY].detail
    assert names[f"{PLAUSIBILITY}:level:zone1"].examined == 3


# -- configuration --------------------------------------------------------------------


def test_the_shipped_section_parses_and_says_where_its_bounds_come_from():
    assert CONFIG.enabled and CONFIG.min_history_days <= CONFIG.history_days
    assert set(CONFIG.columns) == {*SPEC.feature_names, *SPEC.target_names}
    assert "benchmarks/collect_plausibility.py" in SPEC.raw["plausibility"]["note"]


def spec_with(section) -> DatasetSpec:
    raw = copy.deepcopy(dict(SPEC.raw))
    if section is None:
        raw.pop("plausibility")
    else:
        raw["plausibility"] = section
    return parse_spec(raw)


def test_an_absent_section_gives_the_defaults_and_disabled_passes(year):
    config = PlausibilityConfig.from_spec(spec_with(None))
    assert config.enabled and set(config.columns) == {*SPEC.feature_names, *SPEC.target_names}
    off = spec_with({**SPEC.raw["plausibility"], "enabled": False})
    checks = judge(before(year, "2017-03-15"), with_column(one_day(year, "2017-03-15"), "zone1", 0.0), off)
    assert [(c.name, c.passed) for c in checks] == [(PLAUSIBILITY, True)] and "disabled" in checks[0].detail


@pytest.mark.parametrize("change,match", [
    ({"history_days": "28"}, "history_days must be an integer"),
    ({"history_days": 14}, "history_days 14 is shorter than the 28 days"),
    ({"min_history_days": 40, "history_days": 35}, "min_history_days 40 exceeds"),
    ({"enabled": "yes"}, "enabled must be true or false"),
    ({"bounds": {}}, r"unknown keys \['bounds'\]"),
    ({"clock": {"max_ratio": 2}}, r"clock.max_ratio must be a number in \[0, 1\]"),
    ({"clock": {"lag_minutes": 25}}, "must divide a day and clock.lag_minutes"),
    ({"reference": {"recent": 7}}, r"reference: unknown keys \['recent'\]"),
    ({"defaults": {"level_z": -1}}, "defaults.level_z must be a non-negative number or null"),
    ({"defaults": {"level_floor": None}}, "level_floor must be a non-negative number, not None"),
    ({"columns": {"zone9": {}}}, r"\['zone9'\] are not features or targets"),
    ({"columns": {"zone1": {"stuck_minutes": "1h"}}}, "columns.zone1.stuck_minutes"),
    ({"columns": {"zone1": {"clock_log": 1}}}, "clock_log must be true or false"),
    ({"columns": []}, "columns must be an object"),
])
def test_a_bad_section_is_refused_with_the_key(change, match):
    with pytest.raises(SpecError, match=match):
        PlausibilityConfig.from_spec(spec_with({**SPEC.raw["plausibility"], **change}))


def test_a_section_that_is_not_an_object_is_refused():
    with pytest.raises(SpecError, match="plausibility must be an object"):
        PlausibilityConfig.from_spec(spec_with([1, 2]))
