"""Gates and metrics (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.retrain import gates
from shared.core.dataset_spec import load_spec
from shared.core.metrics import regression_metrics


def test_metrics_on_known_values():
    m = regression_metrics(np.array([100.0, 200.0, 300.0]), np.array([110.0, 190.0, 300.0]))
    assert m["mape"] == pytest.approx((10 + 5 + 0) / 3)
    assert m["rmse"] == pytest.approx(np.sqrt(200 / 3))
    assert m["mae"] == pytest.approx(20 / 3)
    assert m["r2"] == pytest.approx(1 - 200 / 20000)
    assert regression_metrics(np.array([1.0, np.nan]), np.array([1.0, 5.0]))["n"] == 1


def test_tetouan_gate_bounds_come_from_the_spec_with_target_overrides():
    spec = load_spec("tetouan_power")
    assert gates.gate_config(spec, "zone1").rmse_max == 3000.0
    assert gates.gate_config(spec, "zone3").mape_max == 8.0


GOOD = {"mape": 3.0, "r2": 0.95, "rmse": 800.0}


def test_a_candidate_that_beats_naive_and_champion_passes():
    results = gates.evaluate(gates.GateConfig(rmse_max=1000), GOOD, {"mape": 4.0}, {"mape": 3.1})
    assert gates.passed(results)
    assert [r.status for r in results] == ["passed"] * 5


def test_no_production_model_skips_the_champion_gate():
    results = gates.evaluate(gates.GateConfig(), GOOD, {"mape": 4.0}, None)
    assert results[-1].status == gates.SKIPPED and gates.passed(results)
    assert results[2].status == gates.SKIPPED  # no RMSE bound configured


@pytest.mark.parametrize("naive,champion,failed", [
    ({"mape": 2.9}, None, "skill"),
    ({"mape": 4.0}, {"mape": 2.5}, "champion"),
])
def test_failed_gates_say_which_and_why(naive, champion, failed):
    results = gates.evaluate(gates.GateConfig(champion_tolerance=0.1), GOOD, naive, champion)
    assert not gates.passed(results)
    (reason,) = gates.failures(results)
    assert reason.startswith(failed)


def test_absolute_bounds_and_nan_fail():
    results = gates.evaluate(gates.GateConfig(mape_max=2.0, r2_min=0.99), GOOD, {"mape": 9}, None)
    assert {r.name for r in results if r.status == gates.FAILED} == {"mape", "r2"}
    nan = gates.evaluate(gates.GateConfig(), {"mape": float("nan"), "r2": 0.9, "rmse": 1}, {"mape": 9}, None)
    assert not gates.passed(nan)


def test_data_gate():
    assert gates.data_gate(1008, 1000, 1008, 907).status == gates.PASSED
    assert gates.data_gate(1007, 1000, 1008, 907).status == gates.FAILED


def test_unknown_gate_settings_are_refused():
    from shared.core.dataset_spec import parse_spec

    spec = parse_spec({"name": "x", "timestamp": {"column": "t", "format": "%Y", "interval_minutes": 10},
                       "targets": [{"name": "y", "min": 0, "max": 1}],
                       "gates": {"defaults": {"mape_maximum": 3}}})
    with pytest.raises(ValueError, match="mape_maximum"):
        gates.gate_config(spec, "y")
