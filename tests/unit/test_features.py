"""Features: calendar fields, cycles, the rolling history and the day-ahead variant (pure numpy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.core.dataset_spec import load_spec, parse_spec
from shared.core.daylight import DAYLIGHT_COLUMNS
from shared.core.features import (
    DAY_AHEAD,
    DAY_AHEAD_WEEK,
    HISTORY,
    HISTORY_COLUMNS,
    NO_HISTORY,
    TARGET_COLUMNS,
    VARIANTS,
    YEARLY,
    Actuals,
    FeatureContext,
    HistoryConfig,
    calendar,
    choose_variants,
    day_ahead_stats,
    history_features,
    matrix,
    member_columns,
    reach_slots,
    target_history,
    variant_of,
)
from shared.core.frames import read_dataset_csv
from shared.core.special_days import CALENDAR_COLUMNS
from shared.platform.settings import PROJECT_ROOT

SPEC = load_spec("tetouan_power")
PER_DAY = 144
TEN = np.timedelta64(10, "m")
DAY_STATS = ("lag_1d", "lag_2d", "lag_7d", "lag_14d", "slot_mean_7d", "mean_d7", "mean_7d", "mean_d1",
             "last", "last_hour")


@pytest.fixture(scope="module")
def year() -> pd.DataFrame:
    return read_dataset_csv((PROJECT_ROOT / "data" / "tetouan_power_2017.csv").read_bytes(), SPEC)


@pytest.fixture(scope="module")
def context() -> FeatureContext:
    return FeatureContext.from_spec(SPEC)


def day_slots(day: str) -> np.ndarray:
    start = np.datetime64(f"{day}T00:00")
    return np.arange(start, start + np.timedelta64(1, "D"), TEN)


def actuals_of(year: pd.DataFrame, target: str = "zone1", keep: np.ndarray | None = None,
               values: np.ndarray | None = None) -> Actuals:
    ts = year["timestamp"].to_numpy("datetime64[m]")
    vals = year[target].to_numpy(dtype=float) if values is None else values
    if keep is not None:
        ts, vals = ts[keep], vals[keep]
    return Actuals(ts, {target: vals}, 10)


def assert_same_history(a, b) -> None:
    assert a.columns.keys() == b.columns.keys()
    for name in a.columns:
        np.testing.assert_allclose(a.columns[name], b.columns[name], rtol=1e-12, equal_nan=True, err_msg=name)
    for member in a.scale:
        np.testing.assert_allclose(a.scale[member], b.scale[member], rtol=1e-12, equal_nan=True, err_msg=member)
    for variant in a.usable:
        assert np.array_equal(a.usable[variant], b.usable[variant]), variant


# --- calendar and cycles -------------------------------------------------------------------


def test_calendar_fields_match_the_energy_documents_example():
    cal = calendar(np.array(["2023-10-29T14:30"], dtype="datetime64[m]"))
    assert {k: int(cal[k][0]) for k in ("Day", "Month", "Hour", "Minute", "DayWeek", "QuarterYear",
                                         "DayYear")} == {"Day": 29, "Month": 10, "Hour": 14, "Minute": 30,
                                                         "DayWeek": 7, "QuarterYear": 4, "DayYear": 302}


def test_cycle_encodings_lie_on_the_unit_circle_and_repeat():
    ts = np.arange(np.datetime64("2017-03-06T00:00"), np.datetime64("2017-03-20T00:00"), TEN)
    cal = calendar(ts)
    assert np.allclose(cal["tod_sin"] ** 2 + cal["tod_cos"] ** 2, 1)
    assert np.allclose(cal["dow_sin"][:1008], cal["dow_sin"][1008:])  # one week later, same value
    assert cal["DayWeek"][0] == 1  # 2017-03-06 was a Monday


# --- the rolling history variant -----------------------------------------------------------


def test_history_features_are_the_day_ahead_lags_and_level(year):
    ts = year["timestamp"].to_numpy("datetime64[m]")
    y = year["zone1"]
    actuals = actuals_of(year)
    config = HistoryConfig.from_spec(SPEC)
    assert (config.lag_short, config.lag_long, config.window) == (144, 1008, 144)
    cols, level = history_features(actuals, "zone1", ts, config)
    mean_1d = y.shift(144).rolling(144).mean().to_numpy()
    assert np.allclose(level[1200:], mean_1d[1200:])
    assert np.allclose(cols["r_lag_1d"][1200:], (y.shift(144) / mean_1d).to_numpy()[1200:])
    assert np.allclose(cols["r_lag_7d"][1200:], (y.shift(1008) / mean_1d).to_numpy()[1200:])
    assert np.allclose(cols["r_mean_7d"][1200:],
                       (y.shift(1008).rolling(144).mean() / mean_1d).to_numpy()[1200:])
    assert np.isnan(cols["r_lag_7d"][:1008]).all()  # no history before the data starts


def test_history_needs_only_actuals_up_to_one_day_before():
    ts = np.arange(np.datetime64("2017-01-01T00:00"), np.datetime64("2017-01-10T00:00"), TEN)
    values = np.arange(len(ts), dtype=float) + 100
    actuals = Actuals(ts, {"z": values}, 10)
    config = HistoryConfig(144, 1008, 144)
    last = ts[-1]
    ahead = np.array([last + np.timedelta64(1440, "m"), last + np.timedelta64(1450, "m")])
    cols, level = history_features(actuals, "z", ahead, config)
    assert np.isfinite(level[0]) and np.isfinite(cols["r_lag_1d"][0])
    assert np.isnan(cols["r_lag_1d"][1])  # more than a day past the last actual


def test_a_window_with_too_many_gaps_has_no_level():
    ts = np.arange(np.datetime64("2017-01-01T00:00"), np.datetime64("2017-01-03T00:00"), TEN)
    values = np.ones(len(ts))
    keep = np.ones(len(ts), bool)
    keep[:100] = False  # most of the first day missing
    actuals = Actuals(ts[keep], {"z": values[keep]}, 10)
    _, level = history_features(actuals, "z", np.array([np.datetime64("2017-01-02T23:50")]),
                                HistoryConfig(144, 1008, 144))
    assert np.isnan(level[0])


# --- the day-ahead variant -----------------------------------------------------------------


def test_day_ahead_uses_nothing_of_the_day_it_forecasts(year, context):
    ts = year["timestamp"].to_numpy("datetime64[m]")
    y = year["zone1"].to_numpy(dtype=float)
    day = day_slots("2017-03-15")
    base = target_history(context, actuals_of(year), "zone1", day)
    assert base.usable[DAY_AHEAD].all() and base.usable[HISTORY].all()

    rng = np.random.default_rng(0)
    changed = y.copy()
    from_day = ts >= day[0]
    changed[from_day] = changed[from_day] * 3 + rng.normal(0, 5000, from_day.sum())
    assert_same_history(base, target_history(context, actuals_of(year, values=changed), "zone1", day))
    # Nothing at all from the day on: the same columns, scales and usable rows.
    assert_same_history(base, target_history(context, actuals_of(year, keep=~from_day), "zone1", day))

    # One value of the previous day moves the anchor of every slot, and the one-day lag of its slot.
    earlier = y.copy()
    noon = int(np.flatnonzero(ts == np.datetime64("2017-03-14T12:00"))[0])
    earlier[noon] *= 1.5
    moved = target_history(context, actuals_of(year, values=earlier), "zone1", day)
    for member in (DAY_AHEAD, DAY_AHEAD_WEEK, HISTORY):
        assert not np.isclose(moved.scale[member], base.scale[member]).all(), member
    assert (moved.scale[DAY_AHEAD] > base.scale[DAY_AHEAD]).all()  # the whole previous day is the anchor
    at_noon = int(np.flatnonzero(day == np.datetime64("2017-03-15T12:00"))[0])
    assert moved.columns["d_lag_1d"][at_noon] != pytest.approx(base.columns["d_lag_1d"][at_noon])


def test_day_ahead_stats_match_a_pandas_computation(year):
    ts = year["timestamp"].to_numpy("datetime64[m]")
    y = year["zone1"]
    series = y.set_axis(year["timestamp"])
    stats = day_ahead_stats(actuals_of(year), "zone1", ts, np.arange(len(ts)), PER_DAY)

    daily = series.resample("D").mean()
    dates = year["timestamp"].dt.normalize()
    prev_day = dates.map(daily.shift(1)).to_numpy()
    week_ago = dates.map(daily.shift(7)).to_numpy()
    last_7 = dates.map(daily.rolling(7).mean().shift(1)).to_numpy()
    last = dates.map(series.resample("D").last().shift(1)).to_numpy()
    last_hour = dates.map(series[series.index.hour == 23].resample("D").mean().shift(1)).to_numpy()

    after_two_weeks = slice(15 * PER_DAY, None)  # every statistic is defined from then on
    expected = {"mean_d1": prev_day, "mean_d7": week_ago, "mean_7d": last_7, "last_hour": last_hour,
                **{f"lag_{d}d": y.shift(d * PER_DAY).to_numpy() for d in (1, 2, 7, 14)},
                "slot_mean_7d": np.mean([y.shift(d * PER_DAY).to_numpy() for d in range(1, 8)], axis=0)}
    for name, want in expected.items():
        got = stats[name][after_two_weeks]
        assert np.isfinite(got).all(), name
        np.testing.assert_allclose(got, want[after_two_weeks], rtol=1e-9, err_msg=name)
    assert np.array_equal(stats["last"][after_two_weeks], last[after_two_weeks])  # the previous day's 23:50

    # Spot checks by hand, 00:00 and 23:50 included: the previous calendar day, not the last 24 hours.
    for stamp in ("2017-04-10T00:00", "2017-04-10T00:10", "2017-04-10T13:30", "2017-04-10T23:50"):
        i = int(np.flatnonzero(ts == np.datetime64(stamp))[0])
        assert stats["mean_d1"][i] == pytest.approx(series["2017-04-09"].mean(), rel=1e-12)
        assert stats["last"][i] == pytest.approx(series[pd.Timestamp("2017-04-09 23:50")], rel=1e-12)
        assert stats["last_hour"][i] == pytest.approx(series["2017-04-09 23:00":"2017-04-09 23:50"].mean())
        assert stats["mean_7d"][i] == pytest.approx(series["2017-04-03":"2017-04-09"].mean(), rel=1e-12)
        assert stats["mean_d7"][i] == pytest.approx(series["2017-04-03"].mean(), rel=1e-12)


def test_each_member_divides_by_its_anchor(year, context):
    day = day_slots("2017-08-09")
    actuals = actuals_of(year)
    history = target_history(context, actuals, "zone1", day)
    stats = day_ahead_stats(actuals, "zone1", day, actuals.slots(day), PER_DAY)
    series = year["zone1"].set_axis(year["timestamp"])
    prev_mean = series["2017-08-08"].mean()
    week_mean = series["2017-08-02":"2017-08-08"].mean()
    assert np.allclose(history.scale[DAY_AHEAD], prev_mean)
    assert np.allclose(history.scale[DAY_AHEAD_WEEK], week_mean)
    # d_last: the previous day's 23:50 as a ratio to that day's mean, the same for every slot.
    assert np.allclose(history.columns["d_last"], series[pd.Timestamp("2017-08-08 23:50")] / prev_mean)
    assert np.allclose(history.columns["d_mean_7d"], week_mean / prev_mean)
    assert np.allclose(history.columns["w_mean_d1"], prev_mean / week_mean)
    for stat in DAY_STATS:
        if stat != "mean_d1":
            assert np.allclose(history.columns[f"d_{stat}"], stats[stat] / prev_mean), stat
        if stat != "mean_7d":
            assert np.allclose(history.columns[f"w_{stat}"], stats[stat] / week_mean), stat
    assert "d_mean_d1" not in history.columns and "w_mean_7d" not in history.columns
    assert set(history.columns) == set(TARGET_COLUMNS)


def test_the_first_days_keep_a_partial_day_ahead_history(year, context):
    ts = year["timestamp"].to_numpy("datetime64[m]")
    first = ts[: 16 * PER_DAY]
    history = target_history(context, actuals_of(year), "zone1", first)
    lag_14 = history.columns["d_lag_14d"]
    assert np.isnan(lag_14[: 14 * PER_DAY]).all() and np.isfinite(lag_14[14 * PER_DAY:]).all()
    usable = history.usable[DAY_AHEAD]
    assert not usable[:PER_DAY].any()  # 1 January: no previous day
    assert usable[PER_DAY:].all()  # from 2 January, a complete previous day is enough
    # The rolling variant needs a week: on 2-7 January only the day-ahead variant serves.
    assert not history.usable[HISTORY][: 7 * PER_DAY].any() and history.usable[HISTORY][9 * PER_DAY:].all()
    chosen = choose_variants(history.usable, VARIANTS)
    assert (chosen[:PER_DAY] == VARIANTS.index(NO_HISTORY)).all()
    assert (chosen[PER_DAY:] == VARIANTS.index(DAY_AHEAD)).all()


@pytest.mark.parametrize(("missing", "anchored"), [(7, True), (8, False)])
def test_a_previous_day_missing_more_than_5_percent_has_no_anchor(year, context, missing, anchored):
    ts = year["timestamp"].to_numpy("datetime64[m]")
    gap_start = np.datetime64("2017-05-09T02:00")
    gone = (ts >= gap_start) & (ts < gap_start + missing * TEN)
    day = day_slots("2017-05-10")
    actuals = actuals_of(year, keep=~gone)
    history = target_history(context, actuals, "zone1", day)
    assert history.usable[DAY_AHEAD].all() == anchored and history.usable[DAY_AHEAD].any() == anchored
    if anchored:  # the mean of what is there
        kept = year["zone1"].to_numpy()[(ts >= np.datetime64("2017-05-09")) & (ts < day[0]) & ~gone]
        assert len(kept) == PER_DAY - missing
        assert np.allclose(history.scale[DAY_AHEAD], kept.mean())
    # The rolling variant still serves every slot whose own inputs exist: all but the gap's slots.
    in_gap = (day >= gap_start + np.timedelta64(1, "D")) & (day < gap_start + np.timedelta64(1, "D") + missing * TEN)
    assert history.usable[HISTORY][~in_gap].all() and not history.usable[HISTORY][in_gap].any()
    chosen = choose_variants(history.usable, VARIANTS)
    if not anchored:
        assert (chosen[~in_gap] == VARIANTS.index(HISTORY)).all()
        assert (chosen[in_gap] == VARIANTS.index(NO_HISTORY)).all()


def test_without_actuals_only_no_history_serves(year, context):
    day = day_slots("2017-05-10")
    for history in (target_history(context, None, "zone1", day),
                    target_history(context, actuals_of(year, "zone2"), "zone1", day)):  # another target's
        assert history.usable[NO_HISTORY].all()
        assert not history.usable[DAY_AHEAD].any() and not history.usable[HISTORY].any()
        assert set(history.columns) == set(TARGET_COLUMNS)
        assert all(np.isnan(c).all() and len(c) == len(day) for c in history.columns.values())
        assert np.all(history.scale[NO_HISTORY] == 1)
        assert all(np.isnan(history.scale[m]).all() for m in (DAY_AHEAD, DAY_AHEAD_WEEK, HISTORY))
        assert (choose_variants(history.usable, VARIANTS) == VARIANTS.index(NO_HISTORY)).all()


def test_features_need_no_actuals_beyond_their_reach(year, context):
    ts = year["timestamp"].to_numpy("datetime64[m]")
    assert reach_slots(SPEC) >= 14 * PER_DAY + PER_DAY  # the 14-day lag of a day's last slot
    day = day_slots("2017-07-20")
    full = target_history(context, actuals_of(year), "zone1", day)
    reach = reach_slots(SPEC) * TEN
    recent = target_history(context, actuals_of(year, keep=ts >= day[0] - reach), "zone1", day)
    assert_same_history(full, recent)
    assert full.usable[DAY_AHEAD].all() and np.isfinite(full.columns["d_lag_14d"]).all()


def test_choose_variants_prefers_day_ahead_then_history():
    usable = {DAY_AHEAD: np.array([True, True, False, False]),
              HISTORY: np.array([True, False, True, False]),
              NO_HISTORY: np.ones(4, bool)}
    idx = {v: VARIANTS.index(v) for v in VARIANTS}
    assert list(choose_variants(usable, VARIANTS)) == [idx[DAY_AHEAD], idx[DAY_AHEAD], idx[HISTORY],
                                                       idx[NO_HISTORY]]
    # A model without the day-ahead variant serves what it has.
    assert list(choose_variants(usable, (HISTORY, NO_HISTORY))) == [idx[HISTORY], idx[NO_HISTORY], idx[HISTORY],
                                                                   idx[NO_HISTORY]]
    assert list(choose_variants(usable, (DAY_AHEAD, NO_HISTORY))) == [idx[DAY_AHEAD], idx[DAY_AHEAD],
                                                                     idx[NO_HISTORY], idx[NO_HISTORY]]
    assert list(choose_variants(usable, (NO_HISTORY,))) == [idx[NO_HISTORY]] * 4


# --- the feature columns of each member ----------------------------------------------------


def test_each_member_has_its_own_columns(context):
    base = context.base_columns()
    assert base == [*SPEC.feature_names, "tod_sin", "tod_cos", "dow_sin", "dow_cos", *CALENDAR_COLUMNS,
                    *DAYLIGHT_COLUMNS]
    day_ahead = context.feature_names(DAY_AHEAD)
    twin = context.feature_names(DAY_AHEAD_WEEK)
    assert day_ahead == [*base, "d_lag_1d", "d_lag_2d", "d_lag_7d", "d_lag_14d", "d_slot_mean_7d", "d_mean_d7",
                         "d_mean_7d", "d_last", "d_last_hour"]
    assert twin == [*base, "w_lag_1d", "w_lag_2d", "w_lag_7d", "w_lag_14d", "w_slot_mean_7d", "w_mean_d7",
                    "w_mean_d1", "w_last", "w_last_hour"]
    assert "w_mean_7d" not in twin and "d_mean_d1" not in day_ahead
    assert context.feature_names(HISTORY) == base + list(HISTORY_COLUMNS)
    assert context.feature_names(NO_HISTORY) == base + list(YEARLY)
    for member in (DAY_AHEAD, DAY_AHEAD_WEEK, HISTORY, NO_HISTORY):
        names = context.feature_names(member)
        assert len(set(names)) == len(names), member
        assert member_columns(member) == tuple(names[len(base):]) or member == NO_HISTORY
    assert variant_of(DAY_AHEAD_WEEK) == DAY_AHEAD and variant_of(HISTORY) == HISTORY
    with pytest.raises(ValueError, match="unknown"):
        context.feature_names("weekly")


def test_calendar_and_daylight_columns_only_when_the_spec_has_them():
    bare = parse_spec({k: v for k, v in SPEC.raw.items() if k not in ("calendar", "location")})
    plain = FeatureContext.from_spec(bare)
    assert plain.special_days is None and plain.location is None
    assert plain.base_columns() == [*SPEC.feature_names, "tod_sin", "tod_cos", "dow_sin", "dow_cos"]
    for member in (DAY_AHEAD, DAY_AHEAD_WEEK, HISTORY, NO_HISTORY):
        names = plain.feature_names(member)
        assert not set(names) & {*CALENDAR_COLUMNS, *DAYLIGHT_COLUMNS}, member

    # An operator's calendar alone brings the calendar columns, not daylight.
    extra = {"holidays": [{"date": "2017-03-15", "name": "announced"}]}
    announced = FeatureContext.from_spec(bare, extra)
    assert announced.base_columns() == [*plain.base_columns(), *CALENDAR_COLUMNS]
    ts = np.array(["2017-03-14T12:00", "2017-03-15T12:00", "2017-03-16T00:00"], dtype="datetime64[m]")
    cols = announced.shared_columns(ts, {f: np.zeros(3) for f in SPEC.feature_names})
    assert list(cols["holiday"]) == [0, 1, 0] and list(cols["holiday_prev"]) == [0, 0, 1]

    # Location only: daylight without calendar.
    located = FeatureContext.from_spec(parse_spec({k: v for k, v in SPEC.raw.items() if k != "calendar"}))
    assert located.base_columns()[-len(DAYLIGHT_COLUMNS):] == list(DAYLIGHT_COLUMNS)
    assert not set(located.base_columns()) & set(CALENDAR_COLUMNS)


def test_shared_columns_fill_every_input_but_the_history(year, context):
    rows = year.iloc[-20:]
    ts = rows["timestamp"].to_numpy("datetime64[m]")
    weather = {f: rows[f].to_numpy() for f in SPEC.feature_names}
    columns = context.shared_columns(ts, weather)
    history = target_history(context, actuals_of(year), "zone1", ts)
    for member in (DAY_AHEAD, DAY_AHEAD_WEEK, HISTORY, NO_HISTORY):
        names = context.feature_names(member)
        X = matrix(names, {**columns, **history.columns})
        assert X.shape == (20, len(names)) and np.isfinite(X).all(), member
        assert np.array_equal(X[:, names.index("Humidity")], weather["Humidity"])
    # The last evening of the data (30 December, from 20:40): the sun is down, no holiday.
    assert ts[0] == np.datetime64("2017-12-30T20:40")
    assert (columns["sun_elevation"] < -10).all() and (columns["minutes_to_sunset"] < 0).all()
    assert not columns["holiday"].any() and not columns["ramadan"].any()
