"""Features: calendar fields, cycle encodings and day-ahead history (pure numpy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.core.dataset_spec import load_spec
from shared.core.features import (
    HISTORY,
    NO_HISTORY,
    Actuals,
    HistoryConfig,
    calendar,
    feature_names,
    history_features,
    model_inputs,
)
from shared.core.frames import read_dataset_csv
from shared.platform.settings import PROJECT_ROOT

SPEC = load_spec("tetouan_power")


@pytest.fixture(scope="module")
def year() -> pd.DataFrame:
    return read_dataset_csv((PROJECT_ROOT / "data" / "tetouan_power_2017.csv").read_bytes(), SPEC)


def test_calendar_fields_match_the_energy_documents_example():
    cal = calendar(np.array(["2023-10-29T14:30"], dtype="datetime64[m]"))
    assert {k: int(cal[k][0]) for k in ("Day", "Month", "Hour", "Minute", "DayWeek", "QuarterYear",
                                         "DayYear")} == {"Day": 29, "Month": 10, "Hour": 14, "Minute": 30,
                                                         "DayWeek": 7, "QuarterYear": 4, "DayYear": 302}


def test_cycle_encodings_lie_on_the_unit_circle_and_repeat():
    ts = np.arange(np.datetime64("2017-03-06T00:00"), np.datetime64("2017-03-20T00:00"),
                   np.timedelta64(10, "m"))
    cal = calendar(ts)
    assert np.allclose(cal["tod_sin"] ** 2 + cal["tod_cos"] ** 2, 1)
    assert np.allclose(cal["dow_sin"][:1008], cal["dow_sin"][1008:])  # one week later, same value
    assert cal["DayWeek"][0] == 1  # 2017-03-06 was a Monday


def test_history_features_are_the_day_ahead_lags_and_level(year):
    ts = year["timestamp"].to_numpy("datetime64[m]")
    y = year["zone1"]
    actuals = Actuals(ts, {"zone1": y.to_numpy()}, 10)
    config = HistoryConfig.from_spec(SPEC)
    assert (config.lag_short, config.lag_long, config.window) == (144, 1008, 144)
    cols, level = history_features(actuals, "zone1", ts, config)
    mean_1d = y.shift(144).rolling(144).mean().to_numpy()
    assert np.allclose(level[1200:], mean_1d[1200:])
    assert np.allclose(cols["r_lag_7d"][1200:], (y.shift(1008) / mean_1d).to_numpy()[1200:])
    assert np.allclose(cols["r_mean_7d"][1200:],
                       (y.shift(1008).rolling(144).mean() / mean_1d).to_numpy()[1200:])
    assert np.isnan(cols["r_lag_7d"][:1008]).all()  # no history before the data starts


def test_history_needs_only_actuals_up_to_one_day_before():
    ts = np.arange(np.datetime64("2017-01-01T00:00"), np.datetime64("2017-01-10T00:00"),
                   np.timedelta64(10, "m"))
    values = np.arange(len(ts), dtype=float) + 100
    actuals = Actuals(ts, {"z": values}, 10)
    config = HistoryConfig(144, 1008, 144)
    last = ts[-1]
    ahead = np.array([last + np.timedelta64(1440, "m"), last + np.timedelta64(1450, "m")])
    cols, level = history_features(actuals, "z", ahead, config)
    assert np.isfinite(level[0]) and np.isfinite(cols["r_lag_1d"][0])
    assert np.isnan(cols["r_lag_1d"][1])  # more than a day past the last actual


def test_a_window_with_too_many_gaps_has_no_level():
    ts = np.arange(np.datetime64("2017-01-01T00:00"), np.datetime64("2017-01-03T00:00"),
                   np.timedelta64(10, "m"))
    values = np.ones(len(ts))
    keep = np.ones(len(ts), bool)
    keep[:100] = False  # most of the first day missing
    actuals = Actuals(ts[keep], {"z": values[keep]}, 10)
    _, level = history_features(actuals, "z", np.array([np.datetime64("2017-01-02T23:50")]),
                                HistoryConfig(144, 1008, 144))
    assert np.isnan(level[0])


def test_model_inputs_follow_the_variant_feature_order(year):
    ts = year["timestamp"].to_numpy("datetime64[m]")[-10:]
    weather = {f: year[f].to_numpy()[-10:] for f in SPEC.feature_names}
    names = feature_names(SPEC, NO_HISTORY)
    X, scale = model_inputs(SPEC, NO_HISTORY, names, "zone1", ts, weather, None, HistoryConfig.from_spec(SPEC))
    assert X.shape == (10, len(names)) and np.all(scale == 1)
    assert np.allclose(X[:, names.index("Humidity")], weather["Humidity"])
    X, scale = model_inputs(SPEC, HISTORY, feature_names(SPEC, HISTORY), "zone1", ts, weather, None,
                            HistoryConfig.from_spec(SPEC))
    assert np.isnan(scale).all()  # no actuals: the history variant cannot serve
