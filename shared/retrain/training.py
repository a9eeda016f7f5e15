"""Training on the processed dataset: chronological holdout, three variants per target.

The holdout is the most recent ``holdout_days`` — never a random split, which on
a 10-minute series leaks neighbouring rows into training and overstates
accuracy. The gates judge the model trained without the holdout; with
``refit`` the members that ship are then refit on every row (``refit_on_all``),
and the record keeps both prediction hashes. Each exported member is checked
against scikit-learn's own predictions on the holdout and on missing-value
probes (the parity gate). Each variant's holdout errors give its interval table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.core.dataset_spec import TIMESTAMP, DatasetSpec
from shared.core.features import (
    DAY_AHEAD,
    DAY_AHEAD_WEEK,
    MEMBERS,
    VARIANTS,
    Actuals,
    FeatureContext,
    HistoryConfig,
    TargetHistory,
    choose_variants,
    matrix,
    target_history,
    variant_of,
)
from shared.core.forest import TreeEnsemble
from shared.core.intervals import IntervalTable, fit_interval_table
from shared.core.metrics import regression_metrics
from shared.retrain import gates
from shared.retrain.export import (
    from_hist_gradient_boosting,
    missing_value_probe,
    parity_error,
    with_check_rows,
)

if TYPE_CHECKING:
    import pandas as pd

# OpenMP threads that wait by spinning starve each other on a busy machine: measured on
# 2 cores with one other busy process, a 35-day fit and refit of one target took over
# 300 s with 2 spinning threads, 1.9 s with 2 passive ones, 0.9 s with one. The runtime
# reads this when scikit-learn first loads, which happens later, in ``TrainingConfig.build``.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
    # Train the day-ahead twin anchored on the last 7 days and serve the mean of both.
    twin: bool = False
    # After the gates pass, serve members refit on every row, the holdout included.
    refit: bool = False

    @classmethod
    def from_spec(cls, spec: DatasetSpec, overrides: Mapping[str, Any] | None = None) -> TrainingConfig:
        section = {**spec.section("training"), **dict(overrides or {})}
        config = cls(holdout_days=float(section.get("holdout_days", 7)),
                     min_train_days=float(section.get("min_train_days", 7)),
                     estimator=str(section.get("estimator", "HistGradientBoostingRegressor")),
                     params=dict(section.get("params", {})),
                     twin=bool(section.get("twin", False)), refit=bool(section.get("refit", False)))
        if config.estimator not in ESTIMATORS:
            raise ValueError(f"estimator {config.estimator!r} does not export to arrays; "
                             f"use one of {sorted(ESTIMATORS)}")
        return config

    def digest(self) -> str:
        """A short hash of the configuration, part of model version ids."""
        text = repr((self.holdout_days, self.min_train_days, self.estimator, sorted(self.params.items()),
                     self.twin, self.refit))
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
    context: FeatureContext
    timestamps: np.ndarray
    weather: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    actuals: Actuals
    holdout: np.ndarray

    @property
    def slots_per_day(self) -> int:
        return self.context.per_day

    @property
    def history(self) -> HistoryConfig:
        return self.context.history


def prepare(frame: pd.DataFrame, spec: DatasetSpec, holdout_days: float,
            calendar_extra: Mapping[str, Any] | None = None) -> Prepared:
    """Arrays from a canonical frame (sorted, one row per timestamp); ``calendar_extra``
    holds the special days an operator added to the spec's."""
    frame = frame.sort_values(TIMESTAMP).drop_duplicates(TIMESTAMP)
    ts = frame[TIMESTAMP].to_numpy(dtype="datetime64[m]")
    targets = {t: frame[t].to_numpy(dtype=float) for t in spec.target_names}
    minutes = int(spec.interval.total_seconds() // 60)
    holdout_start = ts.max() - np.timedelta64(int(round(holdout_days * 1440)), "m") if len(ts) else None
    return Prepared(spec=spec, context=FeatureContext.from_spec(spec, calendar_extra), timestamps=ts,
                    weather={f: frame[f].to_numpy(dtype=float) for f in spec.feature_names},
                    targets=targets, actuals=Actuals(ts, targets, minutes),
                    holdout=(ts > holdout_start) if holdout_start is not None else np.zeros(0, bool))


@dataclass
class Rows:
    """Every input column and the history of one target, for the rows of a mask."""

    columns: dict[str, np.ndarray]
    history: TargetHistory
    timestamps: np.ndarray

    def matrix(self, names: list[str] | tuple[str, ...]) -> np.ndarray:
        return matrix(names, self.columns)


def rows(prepared: Prepared, target: str, mask: np.ndarray) -> Rows:
    """Inputs of every member and the usable rows of every variant, for the rows in ``mask``."""
    ts = prepared.timestamps[mask]
    history = target_history(prepared.context, prepared.actuals, target, ts)
    columns = {**prepared.context.shared_columns(ts, {k: v[mask] for k, v in prepared.weather.items()}),
               **history.columns}
    return Rows(columns, history, ts)


def variant_predictions(ensembles: Mapping[str, TreeEnsemble], data: Rows, variant: str,
                        where: np.ndarray) -> np.ndarray:
    """One variant's predictions for the rows in ``where``: the mean of its members'
    ratio predictions, each times its own scale."""
    members = [m for m in MEMBERS[variant] if m in ensembles]
    total = np.zeros(int(where.sum()))
    for member in members:
        ensemble = ensembles[member]
        total += ensemble.predict(data.matrix(ensemble.features)[where]) * data.history.scale[member][where]
    return total / len(members)


def served_predictions(ensembles: Mapping[str, TreeEnsemble], data: Rows) -> tuple[np.ndarray, np.ndarray]:
    """Predictions as predict serves them: each row by the first variant whose inputs
    exist (``choose_variants``). Returns (predictions, index in VARIANTS per row)."""
    available = [v for v in VARIANTS if MEMBERS[v][0] in ensembles]
    chosen = choose_variants(data.history.usable, available)
    out = np.full(len(chosen), np.nan)
    for k, variant in enumerate(VARIANTS):
        where = chosen == k
        if where.any() and variant in available:
            out[where] = variant_predictions(ensembles, data, variant, where)
    return out, chosen


@dataclass
class TargetFit:
    """One target's trained members, holdout evaluation, parity check and monitoring reference.

    ``metrics`` holds each variant's holdout metrics (on the rows its inputs exist for)
    and ``served``: the mix predict serves, which the gates judge.
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
    intervals: dict[str, IntervalTable] = field(default_factory=dict)
    refit: dict[str, Any] | None = None  # how the served members were refit on the holdout too

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


def members_to_train(config: TrainingConfig) -> list[str]:
    """The ensembles one target trains, the day-ahead twin only when configured."""
    return [m for v in VARIANTS for m in MEMBERS[v] if m != DAY_AHEAD_WEEK or config.twin]


def fit_members(prepared: Prepared, target: str, config: TrainingConfig, train_mask: np.ndarray,
                members: list[str]) -> tuple[dict[str, TreeEnsemble], dict[str, Any], dict[str, int]]:
    """Fit ``members`` on the rows of ``train_mask`` whose inputs exist. Returns the exported
    ensembles, the fitted scikit-learn models (for the parity check) and rows per member."""
    data = rows(prepared, target, train_mask)
    y = prepared.targets[target][train_mask]
    base = prepared.context.base_columns()
    ensembles, models, counts = {}, {}, {}
    for member in members:
        names = prepared.context.feature_names(member)
        X = data.matrix(names)
        # Partial history is kept (the trees route a missing lag); the base inputs and the
        # scale must be there, and the variant's inputs must exist, as predict requires.
        usable = (data.history.usable[variant_of(member)] & np.isfinite(y)
                  & np.isfinite(data.matrix(base)).all(axis=1) & np.isfinite(data.history.scale[member]))
        counts[member] = int(usable.sum())
        if not counts[member]:
            continue
        X = X[usable]
        # A column with no value yet (a 14-day lag in a series' first two weeks) cannot be
        # binned; held constant it is never split on, so what predict later sends is unused.
        X[:, ~np.isfinite(X).any(axis=0)] = 0.0
        model = fit_bounded(config.build(), X, y[usable] / data.history.scale[member][usable])
        models[member] = model
        ensembles[member] = with_check_rows(from_hist_gradient_boosting(model, names), model, X)
    return ensembles, models, counts


def _parity(ensembles: Mapping[str, TreeEnsemble], models: Mapping[str, Any],
            data: Rows) -> gates.GateResult:
    errors, probe_rows = {}, 0
    for member, model in models.items():
        probe = missing_value_probe(data.matrix(ensembles[member].features))
        errors[member] = parity_error(model, ensembles[member], probe)
        probe_rows += len(probe)
    return gates.parity_gate(errors, probe_rows)


def fit_target(prepared: Prepared, target: str, config: TrainingConfig) -> TargetFit:
    """Train one target's members on the training rows and evaluate them on the holdout."""
    y = prepared.targets[target]
    train_mask = ~prepared.holdout & np.isfinite(y)
    hold_mask = prepared.holdout & np.isfinite(y)
    per_day = prepared.slots_per_day
    members = members_to_train(config)
    train_rows = rows(prepared, target, train_mask)
    main_rows = int((train_rows.history.usable[DAY_AHEAD]).sum())
    data = gates.data_gate(main_rows, int(hold_mask.sum()), int(config.min_train_days * per_day),
                           int(HOLDOUT_COVERAGE * config.holdout_days * per_day))
    if data.status == gates.FAILED:
        return TargetFit(target, {}, {}, {}, data, prepared.timestamps[hold_mask], y[hold_mask],
                         np.zeros(0), {}, {}, {DAY_AHEAD: main_rows})
    ensembles, models, counts = fit_members(prepared, target, config, train_mask, members)
    held = rows(prepared, target, hold_mask)
    actual = y[hold_mask]
    predicted, _ = served_predictions(ensembles, held)
    metrics: dict[str, dict[str, float]] = {}
    intervals: dict[str, IntervalTable] = {}
    hours = (held.timestamps - held.timestamps.astype("datetime64[D]")).astype(np.int64) // 60
    for variant in VARIANTS:
        if MEMBERS[variant][0] not in ensembles:
            continue
        # Each variant on every holdout row its inputs exist for, as if it served them all:
        # the fallbacks' accuracy and intervals are measured, not assumed.
        where = held.history.usable[variant]
        forced = np.full(len(actual), np.nan)
        if where.any():
            forced[where] = variant_predictions(ensembles, held, variant, where)
        metrics[variant] = regression_metrics(actual[where], forced[where])
        table = fit_interval_table(hours, actual, forced)
        if table is not None:
            intervals[variant] = table
    metrics[SERVED] = regression_metrics(actual, predicted)
    slots = prepared.actuals.slots(held.timestamps)
    naive = regression_metrics(actual, prepared.actuals.lag(target, slots, 7 * per_day))
    reference, sample = _reference(prepared, target, train_mask, predicted - actual, metrics[SERVED])
    return TargetFit(target, ensembles, metrics, naive, data, held.timestamps, actual, predicted,
                     reference, sample, counts, _parity(ensembles, models, held), intervals)


def refit_on_all(prepared: Prepared, target: str, config: TrainingConfig, fit: TargetFit) -> TargetFit:
    """``fit`` with its members refit on every row, the holdout included, so the served
    model learns from the most recent days. The holdout metrics, intervals and gate
    results stay those of the evaluated fit (the refit has no unseen rows left); the
    parity check is redone on the refit members."""
    y = prepared.targets[target]
    everything = np.isfinite(y)
    ensembles, models, counts = fit_members(prepared, target, config, everything, list(fit.ensembles))
    held = rows(prepared, target, prepared.holdout & everything)
    predicted, _ = served_predictions(ensembles, held)
    parity = _parity(ensembles, models, held)
    return dataclasses.replace(fit, ensembles=ensembles, parity=parity, holdout_predicted=predicted,
                               refit={"rows": counts, "evaluated_prediction_sha256": fit.prediction_hash})


def evaluate_champion(ensembles: Mapping[str, TreeEnsemble], prepared: Prepared, target: str,
                      seen_until: np.datetime64 | None = None) -> dict[str, float]:
    """A production model's served metrics on this run's holdout rows after ``seen_until``
    (the end of the data it was refit on; None: every holdout row), with the serving rule
    of the candidate's ``served`` metrics, so the gate compares like with like."""
    mask = prepared.holdout & np.isfinite(prepared.targets[target])
    if seen_until is not None:
        mask &= prepared.timestamps > seen_until
    if not mask.any():
        return regression_metrics(np.zeros(0), np.zeros(0))
    predicted, _ = served_predictions(ensembles, rows(prepared, target, mask))
    return regression_metrics(prepared.targets[target][mask], predicted)


def candidate_on(fit: TargetFit, seen_until: np.datetime64 | None) -> dict[str, float]:
    """The candidate's served holdout metrics on the rows after ``seen_until`` (all when None)."""
    keep = np.ones(len(fit.holdout_actual), bool) if seen_until is None else fit.holdout_timestamps > seen_until
    return regression_metrics(fit.holdout_actual[keep], fit.holdout_predicted[keep])

