"""Input checks and the monitor's "new since the last run" join, on real 2017 values."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from shared.core.dataset_spec import load_spec
from shared.core.features import Actuals
from shared.monitor import input_checks as checks
from shared.monitor.joins import Watermark, inputs_in_time_order, join, new_requests
from shared.platform.settings import PROJECT_ROOT, Thresholds

SPEC = load_spec("tetouan_power")
T = Thresholds()


@pytest.fixture(scope="module")
def year() -> pd.DataFrame:
    frame = pd.read_csv(io.BytesIO((PROJECT_ROOT / "data" / "tetouan_power_2017.csv").read_bytes()))
    frame = frame.rename(columns=SPEC.rename_map(frame.columns))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], format=SPEC.timestamp_format)
    return frame


def day(year: pd.DataFrame, when: str) -> pd.DataFrame:
    start = pd.Timestamp(when)
    return year[(year.timestamp >= start) & (year.timestamp < start + pd.Timedelta(days=1))]


def test_a_warm_spring_day_is_in_range_but_humidity_as_a_fraction_is_not(year):
    january = year[year.timestamp < "2017-02-01"]
    span = (float(january.Humidity.min()), float(january.Humidity.max()))
    april = day(year, "2017-04-20").Humidity.to_numpy()
    assert checks.range_check("requests", "Humidity", april, span, T).level == checks.NONE
    fraction = checks.range_check("requests", "Humidity", april / 100, span, T, "%")
    assert fraction.level == checks.ALERT and fraction.value == 1.0 and "144 of 144" in fraction.detail


def test_stuck_values_alert_and_a_real_calm_day_does_not(year):
    calm = day(year, "2017-01-15")
    for feature in SPEC.feature_names:
        assert checks.stuck_check("requests", feature, calm[feature].to_numpy(), T).level == checks.NONE, feature
    frozen = checks.stuck_check("requests", "Temperature", np.full(144, 12.3), T)
    assert frozen.level == checks.ALERT and "12.3 (144 times)" in frozen.detail


def test_skew_is_served_against_observed_for_the_same_timestamps(year):
    observed = day(year, "2017-07-10").Temperature.to_numpy()
    assert checks.skew_check("Temperature", observed, observed, T).level == checks.NONE
    shifted = checks.skew_check("Temperature", observed + 5, observed, T)
    assert shifted.level == checks.ALERT and shifted.n == 144
    assert checks.skew_check("Temperature", observed[:10], observed[:10], T) is None  # too few to judge


def entry(time: float, stamps: list[str], temperature: list[float], zone1: list[float]) -> dict:
    inputs = {f: [1.0] * len(stamps) for f in SPEC.feature_names}
    return {"status": 200, "time": time, "inputs": {**inputs, "Timestamp": stamps, "Temperature": temperature},
            "predictions": {"zone1": zone1}, "versions": {"zone1": "v1"}}


def test_a_pair_is_judged_once_when_both_request_and_actual_exist():
    stamps = np.array(["2017-02-05T00:00", "2017-02-05T00:10", "2017-02-05T00:20"], dtype="datetime64[m]")
    stored = Actuals(stamps[:2], {"zone1": np.array([100.0, 110.0]), "Temperature": np.array([9.0, 9.5]),
                                  **{f: np.ones(2) for f in SPEC.feature_names if f != "Temperature"}}, 10)
    logged = [entry(50.0, [str(s) for s in stamps], [9.0, 9.5, 10.0], [90.0, 100.0, 120.0])]
    first = join(logged, Watermark(0.0, None), 100.0, stored, SPEC.feature_names)
    ts, predicted, actual = first.accuracy[("zone1", "v1")]
    assert list(ts) == list(stamps[:2])
    assert list(predicted) == [90.0, 100.0] and list(actual) == [100.0, 110.0]  # 00:20 has no actual yet
    assert list(first.served["Temperature"]) == list(first.observed["Temperature"]) == [9.0, 9.5]

    # Next run: the 00:20 actual arrived; only that pair is new.
    later = Actuals(stamps, {"zone1": np.array([100.0, 110.0, 130.0]), "Temperature": np.array([9.0, 9.5, 10.0]),
                             **{f: np.ones(3) for f in SPEC.feature_names if f != "Temperature"}}, 10)
    second = join(logged, Watermark(100.0, stamps[1]), 200.0, later, SPEC.feature_names)
    assert [list(v) for v in second.accuracy[("zone1", "v1")][1:]] == [[120.0], [130.0]]
    third = join(logged, Watermark(200.0, stamps[2]), 300.0, later, SPEC.feature_names)
    assert third.accuracy == {} and third.rows == 0


def test_new_requests_respect_the_cut_off_and_inputs_come_in_time_order():
    logged = [entry(10.0, ["2017-02-05T00:10", "2017-02-05T00:00"], [2.0, 1.0], [0.0, 0.0]),
              entry(20.0, ["2017-02-05T00:10"], [3.0], [0.0]), entry(40.0, ["2017-02-05T00:20"], [4.0], [0.0])]
    fresh = new_requests(logged, Watermark(5.0, None), 30.0)
    assert [e["time"] for e in fresh] == [10.0, 20.0]  # 40.0 is after the cut-off: the next run's
    assert list(inputs_in_time_order(fresh, SPEC.feature_names)["Temperature"]) == [1.0, 3.0]  # last logged wins
