"""Prediction intervals: split-conformal ratios actual / predicted, per hour of day."""

from __future__ import annotations

import numpy as np
import pytest

from shared.core.intervals import (
    HOURS,
    LEVEL,
    MIN_RATIOS,
    NOMINAL_LEVEL,
    IntervalTable,
    coverage,
    fit_interval_table,
)


def synthetic(n: int, sigma: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hours, actuals and predictions with a known multiplicative (lognormal) error."""
    rng = np.random.default_rng(seed)
    hours = rng.integers(0, 24, n)
    predicted = 20000 + 8000 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 500, n)
    actual = predicted * rng.lognormal(0.0, sigma, n)
    return hours, actual, predicted


def test_levels():
    assert LEVEL == 0.8 and NOMINAL_LEVEL == 0.85


def test_held_out_coverage_is_close_to_the_nominal_level():
    hours, actual, predicted = synthetic(2000)
    fit, test = slice(0, 1000), slice(1000, None)
    table = fit_interval_table(hours[fit], actual[fit], predicted[fit])
    assert table is not None and table.level == LEVEL
    assert table.lower.shape == table.upper.shape == (HOURS,)
    assert (table.lower < 1).all() and (table.upper > 1).all() and (table.lower < table.upper).all()
    # With lognormal(0, 0.05) errors the central 85 % is exp(±1.44 · 0.05).
    assert np.allclose(table.lower, np.exp(-1.44 * 0.05), atol=0.01)
    assert np.allclose(table.upper, np.exp(1.44 * 0.05), atol=0.01)
    lower, upper = table.bounds(hours[test], predicted[test])
    inside, counted = coverage(actual[test], lower, upper)
    assert counted == 1000
    assert inside / counted == pytest.approx(NOMINAL_LEVEL, abs=0.04)


def test_a_wider_error_gives_a_wider_table():
    narrow = fit_interval_table(*synthetic(1000, sigma=0.03))
    wide = fit_interval_table(*synthetic(1000, sigma=0.10))
    assert narrow is not None and wide is not None
    assert (wide.upper / wide.lower > narrow.upper / narrow.lower).all()


def test_the_nominal_level_sets_the_quantiles():
    hours, actual, predicted = synthetic(2000)
    tight = fit_interval_table(hours, actual, predicted, level=0.5, nominal=0.5)
    loose = fit_interval_table(hours, actual, predicted)
    assert tight is not None and loose is not None and tight.level == 0.5
    assert (tight.lower > loose.lower).all() and (tight.upper < loose.upper).all()
    inside, counted = coverage(actual, *tight.bounds(hours, predicted))
    assert inside / counted == pytest.approx(0.5, abs=0.04)


def test_too_few_finite_ratios_give_no_table():
    hours, actual, predicted = synthetic(40)
    assert fit_interval_table(hours[: MIN_RATIOS - 1], actual[: MIN_RATIOS - 1], predicted[: MIN_RATIOS - 1]) is None
    assert fit_interval_table(hours[:MIN_RATIOS], actual[:MIN_RATIOS], predicted[:MIN_RATIOS]) is not None
    # Missing actuals, missing predictions and zero predictions do not count.
    actual, predicted = actual.copy(), predicted.copy()
    actual[:10] = np.nan
    predicted[10:20] = np.nan
    predicted[20:30] = 0.0
    assert fit_interval_table(hours, actual, predicted) is None  # 10 finite ratios left
    assert fit_interval_table(hours[:0], actual[:0], predicted[:0]) is None


def test_non_finite_ratios_do_not_move_the_bounds():
    hours, actual, predicted = synthetic(600)
    clean = fit_interval_table(hours, actual, predicted)
    dirty = fit_interval_table(np.r_[hours, [3, 4, 5]], np.r_[actual, [np.nan, 5.0, 1.0]],
                               np.r_[predicted, [1.0, 0.0, np.inf * 0]])
    assert clean is not None and dirty is not None
    assert np.array_equal(clean.lower, dirty.lower) and np.array_equal(clean.upper, dirty.upper)


def test_bounds_scale_the_prediction_by_the_hours_ratios():
    lower, upper = np.linspace(0.8, 0.9, HOURS), np.linspace(1.1, 1.2, HOURS)
    table = IntervalTable(LEVEL, lower, upper)
    lo, hi = table.bounds(np.array([0, 5, 23, 29, -1]), np.array([100.0, 200.0, 300.0, 400.0, 500.0]))
    assert np.allclose(lo, [100 * lower[0], 200 * lower[5], 300 * lower[23], 400 * lower[5], 500 * lower[23]])
    assert np.allclose(hi, [100 * upper[0], 200 * upper[5], 300 * upper[23], 400 * upper[5], 500 * upper[23]])


def test_arrays_round_trip():
    table = fit_interval_table(*synthetic(500))
    assert table is not None
    arrays = table.to_arrays("zone1_day_ahead_")
    assert set(arrays) == {"zone1_day_ahead_level", "zone1_day_ahead_lower", "zone1_day_ahead_upper"}
    # As an artifact would store them (np.savez keeps a 0-d array for the level).
    back = IntervalTable.from_arrays({k: np.array(v) for k, v in arrays.items()}, "zone1_day_ahead_")
    assert back is not None
    assert back.level == table.level
    assert np.array_equal(back.lower, table.lower) and np.array_equal(back.upper, table.upper)
    assert IntervalTable.from_arrays(arrays, "zone2_day_ahead_") is None  # none stored under that prefix


@pytest.mark.parametrize("bad", [
    {"lower": np.full(23, 0.9)},
    {"upper": np.full((2, 24), 1.1)},
    {"lower": np.r_[np.full(23, 0.9), np.nan]},
    {"upper": np.r_[np.inf, np.full(23, 1.1)]},
])
def test_from_arrays_refuses_bad_bounds(bad):
    arrays = {"p_level": np.array(0.8), "p_lower": np.full(HOURS, 0.9), "p_upper": np.full(HOURS, 1.1)}
    assert IntervalTable.from_arrays(arrays, "p_") is not None
    arrays.update({f"p_{k}": v for k, v in bad.items()})
    with pytest.raises(ValueError, match="p_"):
        IntervalTable.from_arrays(arrays, "p_")


def test_coverage_counts_only_finite_triples():
    actual = np.array([1.0, 2.0, 3.0, np.nan, 5.0, 6.0, 7.0])
    lower = np.array([0.0, 2.5, 3.0, 0.0, np.nan, 0.0, 8.0])
    upper = np.array([2.0, 3.0, 3.0, 9.0, 9.0, np.inf, 9.0])
    # Row 0 inside, 1 below, 2 on both bounds (inside), 3-5 not counted, 6 below.
    assert coverage(actual, lower, upper) == (2, 4)
    assert coverage(np.array([]), np.array([]), np.array([])) == (0, 0)
