"""The energy document's drift scenarios, replayed on December 2017.

A model is trained on January–November; December is the evaluation period. Each
scenario perturbs the weather callers send for December the way the document
describes, and the monitor's own input checks judge it day by day, as one run a
day would: the served values against the training range and for stuck values,
and against the observed December weather of the same timestamps (skew). The
model's accuracy on the perturbed inputs is compared with its accuracy on the
real ones. ``benchmarks/monitor_detectors.py`` measures the same checks on every
week of 2017.

    python -m tools.scenarios [--output reports/drift_scenarios.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.cli import format_table
from shared.core.dataset_spec import DatasetSpec, load_spec
from shared.core.frames import read_dataset_csv
from shared.core.metrics import regression_metrics
from shared.monitor import input_checks as checks
from shared.monitor.alert_rules import Condition, Thresholds, accuracy_condition, input_conditions
from shared.platform import runtime
from shared.retrain.service import Retrainer
from shared.retrain.training import Prepared, TrainingConfig, fit_target, prepare, rows, served_predictions

Weather = dict[str, np.ndarray]
TEMPERATURE_SHIFT = 5.0  # degrees


def _temperature_shift(weather: Weather, prepared: Prepared) -> Weather:
    return {**weather, "Temperature": weather["Temperature"] + TEMPERATURE_SHIFT}


def _seasonal_drift(weather: Weather, prepared: Prepared) -> Weather:
    """December timestamps with July's weather: the season the model expects does not come."""
    july = (prepared.timestamps >= np.datetime64("2017-07-01")) & (prepared.timestamps < np.datetime64("2017-08-01"))
    n = len(next(iter(weather.values())))
    return {f: prepared.weather[f][july][:n] for f in weather}


def _missing_features(weather: Weather, prepared: Prepared) -> Weather:
    """The irradiance sensors fail and report zeros (the API refuses absent fields)."""
    return {**weather, "GeneralDiffuseFlows": np.zeros_like(weather["GeneralDiffuseFlows"]),
            "DiffuseFlows": np.zeros_like(weather["DiffuseFlows"])}


SCENARIOS: dict[str, Callable[[Weather, Prepared], Weather]] = {
    "unshifted": lambda weather, prepared: weather,
    "temperature_shift": _temperature_shift,
    "seasonal_drift": _seasonal_drift,
    "missing_features": _missing_features,
}


def judge_days(served: Weather, observed: Weather, days: np.ndarray, training: Weather,
               thresholds: Thresholds) -> dict[str, list[Condition]]:
    """The monitor's request checks, one run per day: firing conditions per day."""
    fired = {}
    for day in np.unique(days):
        rows = days == day
        found: list[checks.InputCheck | None] = []
        for f, values in served.items():
            span = (float(training[f].min()), float(training[f].max()))
            found += [checks.range_check(checks.REQUESTS, f, values[rows], span, thresholds),
                      checks.stuck_check(checks.REQUESTS, f, values[rows], thresholds),
                      checks.skew_check(f, values[rows], observed[f][rows], thresholds)]
        fired[str(day)] = [c for c in input_conditions(checks.REQUESTS, [c for c in found if c], thresholds, None)
                           if c.firing]
    return fired


def run(raw_csv: bytes, spec: DatasetSpec, config: TrainingConfig, thresholds: Thresholds) -> dict[str, Any]:
    """Train on January–November, replay each scenario on December; the report."""
    prepared = prepare(read_dataset_csv(raw_csv, spec), spec, holdout_days=30)
    december = prepared.holdout
    fits = {t: fit_target(prepared, t, config) for t in spec.target_names}
    original = {f: v[december].copy() for f, v in prepared.weather.items()}
    training = {f: v[~december] for f, v in prepared.weather.items()}
    days = prepared.timestamps[december].astype("datetime64[D]")
    results: dict[str, Any] = {}
    baseline: dict[str, dict[str, float]] = {}
    for name, perturb in SCENARIOS.items():
        weather = perturb(original, prepared)
        daily = judge_days(weather, original, days, training, thresholds)
        conditions: list[Condition] = []
        for fired in daily.values():
            conditions += [c for c in fired if c.key not in {k.key for k in conditions}]
        patched = Prepared(spec, prepared.context, prepared.timestamps,
                           {f: _replace(prepared.weather[f], december, weather[f]) for f in weather},
                           prepared.targets, prepared.actuals, prepared.holdout)
        accuracy = {}
        for target, fit in fits.items():
            predicted, _ = served_predictions(fit.ensembles, rows(patched, target, december))
            metrics = regression_metrics(prepared.targets[target][december], predicted)
            baseline.setdefault(target, metrics)
            base = baseline[target]
            accuracy[target] = {**metrics,
                                "rmse_change_pct": 100 * (metrics["rmse"] / base["rmse"] - 1),
                                "mae_change_pct": 100 * (metrics["mae"] / base["mae"] - 1),
                                "r2_change": metrics["r2"] - base["r2"]}
            conditions.append(accuracy_condition(target, "december", metrics["mape"], base["mape"],
                                                 int(metrics["n"]), thresholds))
        results[name] = {"days": len(daily), "accuracy": accuracy,
                         "alerts": [{"alert": c.key, "severity": c.severity, "value": c.value,
                                     "threshold": c.threshold,
                                     "days": sum(any(k.key == c.key for k in fired) for fired in daily.values())}
                                    for c in conditions if c.firing]}
    return {"trained_on": "2017-01-01 .. 2017-11-30", "evaluated_on": "2017-12-01 .. 2017-12-30",
            "temperature_shift_degrees": TEMPERATURE_SHIFT, "scenarios": results}


def _replace(column: np.ndarray, mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = column.copy()
    out[mask] = values
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.scenarios", description=run.__doc__)
    parser.add_argument("--output", default="reports/drift_scenarios.json")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    settings, backends = runtime.start()
    spec = load_spec(settings.dataset_spec)
    report = run(spec.read_replay_data(), spec, Retrainer(settings, backends, spec).config,
                 settings.alert_thresholds)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2, default=str))
    rows = [{"scenario": name,
             "alerts": ", ".join(f"{a['alert']} {a['severity'].upper()}"
                                 + (f" ({a['days']}/{result['days']} days)" if "days" in a else "")
                                 for a in result["alerts"]) or "none",
             **{f"rmse_change_{t}": f"{result['accuracy'][t]['rmse_change_pct']:+.1f}%"
                for t in spec.target_names}}
            for name, result in report["scenarios"].items()]
    columns = ["scenario", "alerts", *(f"rmse_change_{t}" for t in spec.target_names)]
    print(json.dumps(rows, indent=2) if args.json else format_table(rows, columns))
    print(f"report: {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
