"""Gates and metrics (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.core.dataset_spec import load_spec
from shared.core.metrics import regression_metrics
from shared.retrain import gates


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


@pytest.mark.parametrize("naive", [{"mape": float("nan")}, {"mape": None}])
def test_a_holdout_without_a_seasonal_naive_reference_skips_the_skill_gate_not_the_champion(naive):
    results = gates.evaluate(gates.GateConfig(), GOOD, naive, {"mape": 2.5})
    skill = next(r for r in results if r.name == "skill")
    assert skill.status == gates.SKIPPED and "gap in the data" in skill.detail
    assert gates.failures(results)[0].startswith("champion")  # a worse candidate still loses
    assert gates.passed(gates.evaluate(gates.GateConfig(), GOOD, naive, {"mape": 3.0}))


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


def _gate(results, name):
    return next(r for r in results if r.name == name)


# December 2017, zone 2: seasonal naive 2.443, the serving model 2.663 and the candidate 2.630 —
# both lose to seasonal naive; rejecting the candidate would keep the worse model.
ZONE2 = {"mape": 2.630, "r2": 0.95, "rmse": 800.0}


def test_a_candidate_that_loses_to_naive_but_beats_production_on_the_same_holdout_passes_skill():
    results = gates.evaluate(gates.GateConfig(), ZONE2, {"mape": 2.443}, {"mape": 2.663})
    skill = _gate(results, "skill")
    assert skill.status == gates.PASSED and gates.passed(results)
    assert skill.value == 2.630 and skill.threshold == pytest.approx(2.443)  # still the naive bound
    assert skill.detail == ("loses to seasonal-naive MAPE 2.443 but beats production (2.630 vs 2.663 on "
                            "the same rows; production loses to seasonal naive too)")


def test_a_production_model_is_compared_on_the_rows_it_never_saw_only():
    """A production model refit on days this holdout shares is in-sample there: the champion
    gate compares it with the candidate on the newer rows alone, like with like."""
    whole = {"mape": 3.0, "r2": 0.95, "rmse": 800.0}
    newest_day = {"mape": 3.6, "r2": 0.94, "rmse": 900.0, "n": 144}
    production = {"mape": 3.1, "r2": 0.95, "rmse": 820.0, "n": 144}
    champion = _gate(gates.evaluate(gates.GateConfig(), whole, {"mape": 5.0}, production, newest_day),
                     "champion")
    assert champion.status == gates.FAILED and champion.value == 3.6  # 3.6 > 3.1 x 1.1 on the same rows
    assert "144 holdout rows it never saw" in champion.detail
    fair = gates.evaluate(gates.GateConfig(), whole, {"mape": 5.0}, production, {**newest_day, "mape": 3.2})
    assert _gate(fair, "champion").status == gates.PASSED


@pytest.mark.parametrize("candidate,production", [
    (2.663, 2.630),  # worse than both seasonal naive and production
    (2.663, 2.663),  # a tie is not better
])
def test_a_candidate_that_loses_to_naive_and_does_not_beat_production_fails_skill(candidate, production):
    results = gates.evaluate(gates.GateConfig(), {**ZONE2, "mape": candidate}, {"mape": 2.443},
                             {"mape": production})
    assert _gate(results, "skill").status == gates.FAILED
    assert gates.failures(results) == [f"skill: {candidate:.4g} vs 2.443 (must beat seasonal-naive MAPE 2.443)"]


@pytest.mark.parametrize("champion", [None, {"mape": float("nan")}])
def test_without_a_measured_production_mape_the_skill_gate_keeps_the_naive_rule(champion):
    results = gates.evaluate(gates.GateConfig(), ZONE2, {"mape": 2.443}, champion)
    skill = _gate(results, "skill")
    assert skill.status == gates.FAILED and skill.detail == "must beat seasonal-naive MAPE 2.443"
    beaten = gates.evaluate(gates.GateConfig(), ZONE2, {"mape": 2.7}, champion)
    assert _gate(beaten, "skill").status == gates.PASSED


# Measured mid-November 2017, zone 3: the 8 % bound kept a production model worse than the candidate.
ZONE3 = {"mape": 11.67, "r2": 0.85, "rmse": 1500.0}


def test_an_absolute_bound_never_keeps_a_model_worse_than_the_candidate_on_the_same_rows():
    results = gates.evaluate(gates.GateConfig(mape_max=8.0, r2_min=0.80), ZONE3, {"mape": 13.0},
                             {"mape": 11.94, "r2": 0.84, "rmse": 1550.0})
    mape = _gate(results, "mape")
    assert mape.status == gates.PASSED and gates.passed(results)
    assert (mape.value, mape.threshold) == (11.67, 8.0)  # the record still shows the bound exceeded
    assert mape.detail == ("holdout MAPE (%) 11.67 above the bound 8 but production 11.94 on the same "
                           "rows is worse: keeping it would serve the worse model")


@pytest.mark.parametrize("champion", [{"mape": 11.5}, {"mape": 11.67}, None, {"mape": float("nan")}])
def test_a_candidate_beyond_a_bound_and_not_better_than_a_measured_production_fails_it(champion):
    results = gates.evaluate(gates.GateConfig(mape_max=8.0, r2_min=0.80), ZONE3, {"mape": 13.0}, champion)
    mape = _gate(results, "mape")
    assert mape.status == gates.FAILED and mape.detail == "holdout MAPE (%)"
    assert "mape" in {r.name for r in results if r.status == gates.FAILED}


@pytest.mark.parametrize("name,config,production,status", [
    ("r2", gates.GateConfig(r2_min=0.90), {"mape": 12.0, "r2": 0.80}, gates.PASSED),  # higher R² is better
    ("r2", gates.GateConfig(r2_min=0.90), {"mape": 12.0, "r2": 0.86}, gates.FAILED),
    ("r2", gates.GateConfig(r2_min=0.90), {"mape": 12.0, "r2": float("nan")}, gates.FAILED),
    ("r2", gates.GateConfig(r2_min=0.90), {"mape": 12.0, "r2": None}, gates.FAILED),
    ("rmse", gates.GateConfig(mape_max=None, rmse_max=1000), {"mape": 12.0, "rmse": 1600.0}, gates.PASSED),
    ("rmse", gates.GateConfig(mape_max=None, rmse_max=1000), {"mape": 12.0, "rmse": 1400.0}, gates.FAILED),
    ("rmse", gates.GateConfig(mape_max=None, rmse_max=1000), {"mape": 12.0}, gates.FAILED),
])
def test_r2_and_rmse_bounds_compare_with_production_on_that_very_metric(name, config, production, status):
    gate = _gate(gates.evaluate(config, ZONE3, {"mape": 13.0}, production), name)
    assert gate.status == status and gate.threshold == getattr(config, f"{name}_min" if name == "r2" else
                                                                f"{name}_max")
    side = "below" if name == "r2" else "above"
    assert (f"{side} the bound" in gate.detail) == (status == gates.PASSED)


def test_a_non_finite_candidate_metric_never_passes_for_being_better():
    broken = {"mape": float("nan"), "r2": float("nan"), "rmse": float("nan")}
    results = gates.evaluate(gates.GateConfig(rmse_max=1000), broken, {"mape": 2.0},
                             {"mape": 50.0, "r2": -3.0, "rmse": 9000.0})
    assert {r.name for r in results if r.status == gates.FAILED} >= {"mape", "r2", "rmse", "skill"}


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


@pytest.fixture(scope="module")
def trained():
    from shared.core.frames import read_dataset_csv
    from shared.retrain.training import TrainingConfig, fit_target, prepare

    spec = load_spec("tetouan_power")
    frame = read_dataset_csv(spec.read_replay_data(), spec)
    frame = frame[frame["timestamp"] < frame["timestamp"].min() + np.timedelta64(28, "D")]
    prepared = prepare(frame, spec, 7)
    config = TrainingConfig.from_spec(spec)
    return prepared, fit_target(prepared, "zone3", config)


def test_the_champion_gate_compares_served_with_served_on_the_same_rows(trained):
    """A production model identical to the candidate scores exactly the candidate's gated
    (served) metrics on the same rows — not its history-only ones."""
    from shared.retrain.training import SERVED, evaluate_champion

    prepared, fit = trained
    champion = evaluate_champion(fit.ensembles, prepared, "zone3")
    assert champion == fit.metrics[SERVED]
    results = gates.evaluate(gates.GateConfig(champion_tolerance=0.0), fit.metrics[SERVED], fit.naive, champion)
    gate = next(r for r in results if r.name == "champion")
    assert gate.value == gate.threshold == fit.metrics[SERVED]["mape"] and gate.status == gates.PASSED


def test_training_records_a_passing_parity_gate(trained):
    _, fit = trained
    assert fit.parity is not None and fit.parity.name == "parity"
    assert fit.parity.status == gates.PASSED and fit.parity.value <= gates.PARITY_TOLERANCE
    assert "history" in fit.parity.detail and "no_history" in fit.parity.detail


def test_metrics_not_measured_are_stored_as_null():
    from shared.core.metrics import regression_metrics
    from shared.retrain.metadata import json_safe

    empty = regression_metrics(np.array([np.nan]), np.array([1.0]))
    assert json_safe({"history": empty, "served": [1.5, float("inf")]}) == {
        "history": {"mape": None, "rmse": None, "mae": None, "r2": None, "n": 0}, "served": [1.5, None]}
