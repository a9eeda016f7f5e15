"""Training on the processed dataset: chronological holdout, two variants per target.

The holdout is the most recent ``holdout_days`` — never a random split, which on
a 10-minute series leaks neighbouring rows into training and overstates
accuracy. The evaluated model is the one that ships: there is no refit on the
holdout, so predict can be checked against the training-time holdout predictions.
Each exported variant is checked against scikit-learn's own predictions on the
holdout and on missing-value probes (the parity gate).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.core.dataset_spec import TIMESTAMP, DatasetSpec
from shared.core.features import (
    HISTORY,
    NO_HISTORY,
    VARIANTS,
    Actuals,
    HistoryConfig,
    feature_names,
    history_indices,
    model_inputs,
    usable_history,
)
from shared.core.forest import TreeEnsemble
from shared.core.metrics import regression_metrics
from shared.retrain import gates
from shared.retrain.export import from_hist_gradient_boosting, missing_value_probe, parity_error

if TYPE_CHECKING:
    import pandas as pd

# The estimators whose fitted trees export to plain arrays (shared/retrain/export.py).
ESTIMATORS = {"HistGradientBoostingRegressor": "sklearn.ensemble"}
QUANTILES = tuple(np.round(np.linspace(0, 1, 21), 2))
REFERENCE_SAMPLE_ROWS = 4000
HOLDOUT_COVERAGE = 0.9
# The metrics key of the mix predict serves; the gates and every display use it.
SERVED = "served"


@dataclass(frozen=True)
class TrainingConfig:
    """Holdout length, minimum training span, estimator and its parameters."""

    holdout_days: float = 7.0
    min_train_days: float = 7.0
    estimator: str = "HistGradientBoostingRegressor"
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: DatasetSpec, overrides: Mapping[str, Any] | None = None) -> TrainingConfig:
        section = {**spec.section("training"), **dict(overrides or {})}
        config = cls(holdout_days=float(section.get("holdout_days", 7)),
                     min_train_days=float(section.get("min_train_days", 7)),
                     estimator=str(section.get("estimator", "HistGradientBoostingRegressor")),
                     params=dict(section.get("params", {})))
        if config.estimator not in ESTIMATORS:
            raise ValueError(f"estimator {config.estimator!r} does not export to arrays; "
                             f"use one of {sorted(ESTIMATORS)}")
        return config

    def digest(self) -> str:
        """A short hash of the configuration, part of model version ids."""
        text = repr((self.holdout_days, self.min_train_days, self.estimator, sorted(self.params.items())))
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def build(self) -> Any:
        module = importlib.import_module(ESTIMATORS[self.estimator])
        return getattr(module, self.estimator)(**self.params)


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, as a container's cpuset sets it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def fit_threads() -> int:
    """Threads for a fit: the CPUs available, or fewer when ``OMP_NUM_THREADS`` says so."""
    try:
        wanted = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return available_cpus()
    return max(1, min(wanted, available_cpus()))


def fit_bounded(model: Any, X: np.ndarray, y: np.ndarray) -> Any:
    """``model.fit`` with native thread pools (OpenMP in HistGradientBoosting, BLAS) bounded
    to the CPUs this process really has: OpenMP otherwise sizes itself on the host's cores,
    and oversubscribed threads spin against each other."""
    from threadpoolctl import threadpool_limits  # comes with scikit-learn

    with threadpool_limits(limits=fit_threads()):
        return model.fit(X, y)


@dataclass
class Prepared:
    """The dataset as arrays: timestamps, weather columns, targets, actuals, holdout mask."""

    spec: DatasetSpec
    history: HistoryConfig
    timestamps: np.ndarray
    weather: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    actuals: Actuals
    holdout: np.ndarray

    @property
    def slots_per_day(self) -> int:
        return max(1, int(round(86400 / self.spec.interval.total_seconds())))


def prepare(frame: pd.DataFrame, spec: DatasetSpec, holdout_days: float) -> Prepared:
    """Arrays from a canonical frame (sorted, one row per timestamp)."""
    frame = frame.sort_values(TIMESTAMP).drop_duplicates(TIMESTAMP)
    ts = frame[TIMESTAMP].to_numpy(dtype="datetime64[m]")
    targets = {t: frame[t].to_numpy(dtype=float) for t in spec.target_names}
    minutes = int(spec.interval.total_seconds() // 60)
    holdout_start = ts.max() - np.timedelta64(int(round(holdout_days * 1440)), "m") if len(ts) else None
    return Prepared(spec=spec, history=HistoryConfig.from_spec(spec), timestamps=ts,
                    weather={f: frame[f].to_numpy(dtype=float) for f in spec.feature_names},
                    targets=targets, actuals=Actuals(ts, targets, minutes),
                    holdout=(ts > holdout_start) if holdout_start is not None else np.zeros(0, bool))


def inputs(prepared: Prepared, target: str, variant: str, names: list[str],
           mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and scale for the rows in ``mask``."""
    weather = {k: v[mask] for k, v in prepared.weather.items()}
    return model_inputs(prepared.spec, variant, names, target, prepared.timestamps[mask], weather,
                        prepared.actuals, prepared.history)


def served_predictions(ensembles: Mapping[str, TreeEnsemble], prepared: Prepared, target: str,
                       mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictions as predict serves them: the history variant where its inputs exist,
    the no-history variant elsewhere (``usable_history``, the rule predict applies).
    Returns (predictions, history_used)."""
    hist = ensembles[HISTORY]
    X, scale = inputs(prepared, target, HISTORY, list(hist.features), mask)
    usable = usable_history(X[:, history_indices(hist.features)], scale)
    out = np.full(int(mask.sum()), np.nan)
    if usable.any():
        out[usable] = hist.predict(X[usable]) * scale[usable]
    if (~usable).any() and NO_HISTORY in ensembles:
        plain = ensembles[NO_HISTORY]
        Xn, _ = inputs(prepared, target, NO_HISTORY, list(plain.features), mask)
        out[~usable] = plain.predict(Xn[~usable])
    return out, usable


@dataclass
class TargetFit:
    """One target's trained variants, holdout evaluation, parity check and monitoring reference.

    ``metrics`` holds each variant's holdout metrics and ``served``: the mix predict
    serves, which the gates judge.
    """

    target: str
    ensembles: dict[str, TreeEnsemble]
    metrics: dict[str, dict[str, float]]
    naive: dict[str, float]
    data_gate: gates.GateResult
    holdout_timestamps: np.ndarray
    holdout_actual: np.ndarray
    holdout_predicted: np.ndarray
    reference: dict[str, Any]
    reference_sample: dict[str, np.ndarray]
    rows: dict[str, int]
    parity: gates.GateResult | None = None  # None when the data gate stopped training

    @property
    def prediction_hash(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.holdout_predicted).tobytes()).hexdigest()


def _quantiles(values: np.ndarray) -> list[float]:
    values = values[np.isfinite(values)]
    return [float(q) for q in np.quantile(values, QUANTILES)] if len(values) else []


def _reference(prepared: Prepared, target: str, train: np.ndarray, residuals: np.ndarray,
               metrics: Mapping[str, float]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """What the monitor compares recent data against: quantiles, a sample, holdout error."""
    columns = {**{f: prepared.weather[f][train] for f in prepared.spec.feature_names},
               target: prepared.targets[target][train]}
    summary = {name: {"quantiles": _quantiles(v), "mean": float(np.nanmean(v)),
                      "std": float(np.nanstd(v))} for name, v in columns.items()}
    rng = np.random.default_rng(0)
    n = int(train.sum())
    pick = np.sort(rng.choice(n, size=min(n, REFERENCE_SAMPLE_ROWS), replace=False))
    sample = {name: v[pick] for name, v in columns.items()}
    reference = {"quantile_levels": list(QUANTILES), "columns": summary, "sample_rows": len(pick),
                 "holdout": {**metrics, "residual_quantiles": _quantiles(residuals)}}
    return reference, sample


def fit_target(prepared: Prepared, target: str, config: TrainingConfig) -> TargetFit:
    """Train both variants of one target and evaluate them on the holdout."""
    spec = prepared.spec
    y = prepared.targets[target]
    train_mask = ~prepared.holdout & np.isfinite(y)
    hold_mask = prepared.holdout & np.isfinite(y)
    ensembles: dict[str, TreeEnsemble] = {}
    rows: dict[str, int] = {}
    metrics: dict[str, dict[str, float]] = {}
    parity: dict[str, float] = {}
    probe_rows = 0
    per_day = prepared.slots_per_day
    for variant in VARIANTS:
        names = feature_names(spec, variant)
        X, scale = inputs(prepared, target, variant, names, train_mask)
        # Train on complete rows; for the history variant these are the rows it would serve.
        usable = np.isfinite(X).all(axis=1) & usable_history(X[:, history_indices(names)], scale)
        rows[variant] = int(usable.sum())
        if variant == HISTORY:
            data = gates.data_gate(rows[variant], int(hold_mask.sum()),
                                   int(config.min_train_days * per_day),
                                   int(HOLDOUT_COVERAGE * config.holdout_days * per_day))
            if data.status == gates.FAILED:
                return TargetFit(target, {}, {}, {}, data, prepared.timestamps[hold_mask],
                                 y[hold_mask], np.zeros(0), {}, {}, rows)
        model = fit_bounded(config.build(), X[usable], y[train_mask][usable] / scale[usable])
        ensembles[variant] = from_hist_gradient_boosting(model, names)
        probe = missing_value_probe(inputs(prepared, target, variant, names, hold_mask)[0])
        parity[variant] = parity_error(model, ensembles[variant], probe)
        probe_rows += len(probe)

    actual = y[hold_mask]
    predicted, history_used = served_predictions(ensembles, prepared, target, hold_mask)
    metrics[HISTORY] = regression_metrics(actual[history_used], predicted[history_used])
    Xn, _ = inputs(prepared, target, NO_HISTORY, list(ensembles[NO_HISTORY].features), hold_mask)
    metrics[NO_HISTORY] = regression_metrics(actual, ensembles[NO_HISTORY].predict(Xn))
    metrics[SERVED] = regression_metrics(actual, predicted)
    slots = prepared.actuals.slots(prepared.timestamps[hold_mask])
    naive = regression_metrics(actual, prepared.actuals.lag(target, slots, prepared.history.lag_long))
    reference, sample = _reference(prepared, target, train_mask, predicted - actual, metrics[SERVED])
    return TargetFit(target, ensembles, metrics, naive, data, prepared.timestamps[hold_mask], actual,
                     predicted, reference, sample, rows, gates.parity_gate(parity, probe_rows))


def evaluate_champion(ensembles: Mapping[str, TreeEnsemble], prepared: Prepared,
                      target: str) -> dict[str, float]:
    """A production model's served metrics on this run's holdout rows: the same rows and
    the same serving rule as the candidate's ``served`` metrics, so the gate compares like
    with like."""
    mask = prepared.holdout & np.isfinite(prepared.targets[target])
    predicted, _ = served_predictions(ensembles, prepared, target, mask)
    return regression_metrics(prepared.targets[target][mask], predicted)

