"""Serving: hot-loaded production models and the prediction core (numpy only).

Each instance holds one immutable ``Snapshot`` of the production models. It looks
at the registry pointers at most every ``MODEL_REFRESH_SECONDS`` (or at once on
a model-updated push); a changed version is loaded and its sha256 checked
*before* a new snapshot replaces the old one in a single reference assignment.
A request takes the snapshot once, so it never sees a mix of versions or a
half-loaded model. A failed load keeps the old model serving and is reported.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.core.features import (
    CALENDAR_FIELDS,
    MEMBERS,
    TARGET_COLUMNS,
    VARIANTS,
    YEARLY,
    Actuals,
    FeatureContext,
    choose_variants,
    matrix,
    target_history,
)
from shared.core.forest import EnsembleBank, FormatError, TreeEnsemble
from shared.core.intervals import HOURS, IntervalTable
from shared.core.registry import ArtifactError, ModelArtifact, Registry
from shared.platform.log import get_logger
from shared.platform.timefmt import iso_utc

log = get_logger("serving")
# Batches at least this large are split across threads (numpy releases the GIL).
PARALLEL_ROWS = 4096


@dataclass(frozen=True)
class LoadedModel:
    """One target's production version, loaded and verified."""

    target: str
    version: str
    sha256: str
    loaded_at: str
    ensembles: Mapping[str, TreeEnsemble]
    intervals: Mapping[str, IntervalTable] = field(default_factory=dict)

    @property
    def variants(self) -> list[str]:
        """The variants this version can serve (its first member of each is present)."""
        return [v for v in VARIANTS if MEMBERS[v][0] in self.ensembles]


def input_columns(context: FeatureContext, targets: Sequence[str]) -> list[str]:
    """The shared input column space of all loaded ensembles."""
    per_target = [f"{t}:{c}" for t in targets for c in TARGET_COLUMNS]
    return [*context.base_columns(), *YEARLY, *per_target]


def _column_of(feature: str, target: str) -> str:
    return f"{target}:{feature}" if feature in TARGET_COLUMNS else feature


def check_inputs(context: FeatureContext, artifact: ModelArtifact) -> None:
    """ArtifactError when a member needs an input this code does not compute, or a
    version lacks the no-history fallback every row can be served by."""
    known = set(input_columns(context, [""])) | set(TARGET_COLUMNS)
    for member, ensemble in artifact.ensembles.items():
        unknown = sorted(set(ensemble.features) - known)
        if unknown:
            raise ArtifactError(f"member {member} needs inputs this code does not compute: {unknown}")
    if MEMBERS[VARIANTS[-1]][0] not in artifact.ensembles:
        raise ArtifactError(f"the version has no {VARIANTS[-1]} member to serve rows without history")


@dataclass(frozen=True)
class BankLayout:
    """Where one variant's bank output columns go: the bank's columns are grouped by target
    (``Snapshot.order``), ``starts[g]`` is group ``g``'s first column, ``targets[g]`` its
    target and ``owner[k]`` the target of column ``k``."""

    owner: np.ndarray
    starts: np.ndarray
    targets: np.ndarray

    @classmethod
    def of(cls, pairs: Sequence[tuple[str, str]], order: Sequence[str]) -> BankLayout:
        owner = np.array([order.index(t) for t, _ in pairs], dtype=np.intp)
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        return cls(owner, starts, owner[starts])


@dataclass(frozen=True)
class Snapshot:
    """The models one request sees, fused per variant over a shared column space.

    ``banks[variant]`` evaluates every member of that variant for every target in one
    pass; its output column ``k`` is ``(target, member)`` = ``bank_members[variant][k]``,
    placed by ``layouts[variant]``. ``lower_ratio``/``upper_ratio`` ``[target, variant,
    hour]`` hold each version's interval tables (NaN where a variant has none).
    """

    models: Mapping[str, LoadedModel] = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    banks: Mapping[str, EnsembleBank] = field(default_factory=dict)
    bank_members: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    order: tuple[str, ...] = ()
    layouts: Mapping[str, BankLayout] = field(default_factory=dict)
    weather_columns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.intp))
    lower_ratio: np.ndarray = field(default_factory=lambda: np.zeros((0, len(VARIANTS), HOURS)))
    upper_ratio: np.ndarray = field(default_factory=lambda: np.zeros((0, len(VARIANTS), HOURS)))

    @classmethod
    def build(cls, context: FeatureContext, models: Mapping[str, LoadedModel]) -> Snapshot:
        order = tuple(t for t in context.spec.target_names if t in models)
        columns = input_columns(context, order)
        index = {c: i for i, c in enumerate(columns)}
        banks, bank_members, layouts = {}, {}, {}
        for variant in VARIANTS:
            pairs = tuple((t, m) for t in order for m in MEMBERS[variant] if m in models[t].ensembles)
            if not pairs:
                continue
            ensembles = [models[t].ensembles[m] for t, m in pairs]
            columns_of = [[index[_column_of(f, t)] for f in e.features]
                          for (t, _), e in zip(pairs, ensembles, strict=True)]
            banks[variant] = EnsembleBank(ensembles, columns_of)
            bank_members[variant] = pairs
            layouts[variant] = BankLayout.of(pairs, order)
        ratios = np.full((2, len(order), len(VARIANTS), HOURS), np.nan)
        for i, target in enumerate(order):
            for j, variant in enumerate(VARIANTS):
                table = models[target].intervals.get(variant)
                if table is not None:
                    ratios[:, i, j] = table.lower, table.upper
        weather = np.array([index[f] for f in context.spec.feature_names], dtype=np.intp)
        return cls(dict(models), tuple(columns), banks, bank_members, order, layouts, weather, *ratios)


def trial_prediction(snapshot: Snapshot) -> None:
    """FormatError unless every bank of ``snapshot`` predicts finite values for a row of zeros
    and a row of missing values (each member already reproduced its training-time check rows)."""
    rows = np.vstack([np.zeros(len(snapshot.columns)), np.full(len(snapshot.columns), np.nan)])
    for variant, bank in snapshot.banks.items():
        if not np.isfinite(bank.predict(rows)).all():
            raise FormatError(f"the {variant} models predict non-finite values")


class ModelCache:
    """The instance's production models, refreshed from the registry pointers."""

    def __init__(self, registry: Registry, context: FeatureContext,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.context = context
        self.spec = context.spec
        self.clock = clock
        self.snapshot = Snapshot()
        self.errors: dict[str, str] = {}
        self.last_check: float | None = None
        self._lock = threading.Lock()

    def seconds_since_check(self) -> float | None:
        return None if self.last_check is None else round(self.clock() - self.last_check, 3)

    def refresh(self) -> None:
        """Check the pointers and load what changed (one caller at a time)."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        try:
            pointers = self.registry.production_pointers()
        except Exception as exc:  # the store is unreachable: keep serving, report it
            log.error("pointer check failed", fields={"error": f"{type(exc).__name__}: {exc}"})
            self.errors["registry"] = f"pointer check failed: {type(exc).__name__}"
            self.last_check = self.clock()
            return
        self.errors.pop("registry", None)
        models = dict(self.snapshot.models)
        changed: list[str] = []
        for target in self.spec.target_names:
            pointer = pointers.get(target)
            if pointer is None:
                continue
            loaded = models.get(target)
            if loaded is not None and loaded.version == pointer["version"]:
                self.errors.pop(target, None)  # e.g. rolled back to the version that serves
                continue
            try:
                candidate = self._load(target, pointer)
            except Exception as exc:  # whatever the artifact holds, it never reaches a request
                self._refuse(target, pointer, loaded, f"{type(exc).__name__}: {exc}")
                continue
            models[target] = candidate
            changed.append(target)
        if changed:
            try:
                snapshot = Snapshot.build(self.context, models)
                trial_prediction(snapshot)
            except Exception as exc:  # the new versions together do not serve: keep the old ones
                for target in changed:
                    self._refuse(target, pointers[target], self.snapshot.models.get(target),
                                 f"trial prediction failed: {type(exc).__name__}: {exc}")
            else:
                self.snapshot = snapshot  # the one atomic swap
                for target in changed:
                    self.errors.pop(target, None)
                    log.info("model loaded", fields={"target": target, "version": models[target].version})
        self.last_check = self.clock()

    def _load(self, target: str, pointer: Mapping[str, Any]) -> LoadedModel:
        """The pointer's version, read, hash-checked and verified (``TreeEnsemble.verify``)."""
        artifact = self.registry.load_model(pointer)
        check_inputs(self.context, artifact)
        return LoadedModel(target, pointer["version"], pointer["sha256"], iso_utc(),
                           artifact.ensembles, artifact.intervals)

    def _refuse(self, target: str, pointer: Mapping[str, Any], serving: LoadedModel | None, reason: str) -> None:
        self.errors[target] = f"cannot load {pointer.get('version')}: {reason}"[:500]
        log.error("model load failed; the previous model keeps serving", fields={
            "target": target, "version": pointer.get("version"), "error": reason[:500],
            "serving": serving.version if serving else None})


@dataclass(frozen=True)
class Predictions:
    """One row per observation, one column per requested target (``targets``): the values,
    the variant that served each (index in ``VARIANTS``), the interval bounds (NaN where
    the version has no table for that variant), and the calendar (``CALENDAR_FIELDS``)."""

    targets: tuple[str, ...]
    values: np.ndarray
    variants: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    calendar: np.ndarray

    def variant_names(self) -> np.ndarray:
        """The serving variant's name per row and target."""
        return _VARIANT_NAMES[self.variants]


_VARIANT_NAMES = np.asarray(VARIANTS)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _bank_predict(bank: EnsembleBank, X: np.ndarray, threads: int) -> np.ndarray:
    global _pool
    if threads <= 1 or len(X) < PARALLEL_ROWS:
        return bank.predict(X)
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="predict")
    parts = np.array_split(X, threads)
    return np.vstack(list(_pool.map(bank.predict, parts)))


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class RowInputs:
    """Everything a prediction needs but the weather, for a set of rows: the input matrix
    with the weather columns unset, the variant chosen per row and target (columns in
    ``Snapshot.order``), per bank the weight of each output column (the member's scale
    over the variant's member count), and the calendar (``CALENDAR_FIELDS``). It depends
    only on the timestamps (given the snapshot, the actuals and the calendar), so
    ``InputCache`` can keep it per timestamp."""

    x: np.ndarray
    chosen: np.ndarray
    weights: dict[str, np.ndarray]
    calendar: np.ndarray

    def row(self, i: int) -> RowInputs:
        """Row ``i`` alone (views)."""
        return RowInputs(self.x[i:i + 1], self.chosen[i:i + 1],
                         {v: w[i:i + 1] for v, w in self.weights.items()}, self.calendar[i:i + 1])

    @classmethod
    def concat(cls, parts: Sequence[RowInputs]) -> RowInputs:
        """The rows of ``parts``, in order."""
        if len(parts) == 1:
            return parts[0]
        return cls(np.concatenate([p.x for p in parts]), np.concatenate([p.chosen for p in parts]),
                   {v: np.concatenate([p.weights[v] for p in parts]) for v in parts[0].weights},
                   np.concatenate([p.calendar for p in parts]))


def row_inputs(snapshot: Snapshot, actuals: Actuals | None, context: FeatureContext, ts: np.ndarray) -> RowInputs:
    """``RowInputs`` for timestamps, computed for all rows at once."""
    n = len(ts)
    unset = {f: np.zeros(n) for f in context.spec.feature_names}
    columns = context.shared_columns(ts, unset)
    slots = actuals.slots(ts) if actuals is not None else None
    chosen, scale = [], {}
    for target in snapshot.order:
        h = target_history(context, actuals, target, ts, slots, fallback_only=True)
        columns.update({f"{target}:{c}": v for c, v in h.columns.items()})
        chosen.append(choose_variants(h.usable, snapshot.models[target].variants))
        scale[target] = h.scale
    weights = {}
    for variant, pairs in snapshot.bank_members.items():
        share = {t: 1 / sum(o == t for o, _ in pairs) for t, _ in pairs}  # a variant serves its members' mean
        weights[variant] = np.column_stack([scale[t][m] * share[t] for t, m in pairs])
    return RowInputs(matrix(snapshot.columns, columns), np.column_stack(chosen).astype(np.intp), weights,
                     np.column_stack([columns[k] for k in CALENDAR_FIELDS]))


class InputCache:
    """``RowInputs`` per timestamp for small requests, for one (snapshot, actuals, calendar).

    A single observation otherwise recomputes the same history lookups, calendar and
    sun position for every request, although they change only when new actuals, models
    or holidays arrive; a new triple starts an empty cache. Bounded: cleared when full.
    """

    MAX_ROWS = 64  # larger requests compute their inputs vectorised, once
    MAX_ENTRIES = 50_000

    def __init__(self) -> None:
        # The objects themselves, not their ids: an id may be reused once an object is freed.
        self._key: tuple[Snapshot, Actuals | None, FeatureContext] | None = None
        self._rows: dict[int, RowInputs] = {}
        self._lock = threading.Lock()

    def get(self, snapshot: Snapshot, actuals: Actuals | None, context: FeatureContext, ts: np.ndarray) -> RowInputs:
        key = (snapshot, actuals, context)
        minutes = ts.astype(np.int64).tolist()
        with self._lock:
            same = self._key is not None and all(a is b for a, b in zip(key, self._key, strict=True))
            if not same or len(self._rows) > self.MAX_ENTRIES:
                self._key, self._rows = key, {}
            rows = self._rows
        missing = [m for m in dict.fromkeys(minutes) if m not in rows]
        if missing:
            fresh = row_inputs(snapshot, actuals, context, np.array(missing, dtype="datetime64[m]"))
            for array in (fresh.x, fresh.chosen, fresh.calendar, *fresh.weights.values()):
                array.setflags(write=False)  # shared by every request for these timestamps
            for i, minute in enumerate(missing):
                rows[minute] = fresh.row(i)
        return RowInputs.concat([rows[m] for m in minutes])


def predict(snapshot: Snapshot, actuals: Actuals | None, context: FeatureContext, ts: np.ndarray,
            weather: Mapping[str, np.ndarray], targets: Sequence[str], threads: int = 1,
            cache: InputCache | None = None) -> Predictions:
    """Predict ``targets`` for rows (timestamps, weather); every target must be loaded.

    Each row of each target is served by the first variant of its version whose inputs
    exist; a variant with several members serves the mean of their predictions.
    """
    small = cache is not None and len(ts) <= InputCache.MAX_ROWS
    inputs = cache.get(snapshot, actuals, context, ts) if small and cache else row_inputs(
        snapshot, actuals, context, ts)
    X = inputs.x.copy() if small else inputs.x
    for column, name in zip(snapshot.weather_columns, context.spec.feature_names, strict=True):
        X[:, column] = weather[name]
    n, width = len(ts), len(snapshot.order)
    wanted = np.array([snapshot.order.index(t) for t in targets], dtype=np.intp)
    everyone = np.arange(n)
    chosen = _flat(inputs.chosen)[_cells(everyone, wanted, width)]
    totals = np.zeros(n * width)
    for name, bank in snapshot.banks.items():
        variant = VARIANTS.index(name)
        rows = np.flatnonzero((chosen == variant).any(axis=1))
        if not len(rows):
            continue
        layout = snapshot.layouts[name]
        out = _bank_predict(bank, X if len(rows) == n else X[rows], threads)
        # Each row's totals take only the members of the variant chosen for its target.
        served = _flat(inputs.chosen)[_cells(rows, layout.owner, width)] == variant
        weights = inputs.weights[name] if len(rows) == n else inputs.weights[name][rows]
        weighted = np.where(served, out * weights, 0.0)
        totals[_cells(rows, layout.targets, width)] += np.add.reduceat(weighted, layout.starts, axis=1)
    values = totals[_cells(everyone, wanted, width)]
    hours = inputs.calendar[:, CALENDAR_FIELDS.index("Hour")]
    ratio = (wanted * len(VARIANTS) + chosen) * HOURS + hours[:, None]  # [target, variant, hour], flat
    return Predictions(tuple(targets), values, chosen, values * _flat(snapshot.lower_ratio)[ratio],
                       values * _flat(snapshot.upper_ratio)[ratio], inputs.calendar)


def _cells(rows: np.ndarray, columns: np.ndarray, width: int) -> np.ndarray:
    """Flat indices of ``matrix[np.ix_(rows, columns)]`` for a C-ordered matrix ``width`` wide.

    The prediction core indexes only flat arrays: numpy gathers from a 1-d array while
    holding the GIL, but releases and retakes it for any other fancy index (and for
    ``np.take``, ``ufunc.at``), and with a worker's request threads waiting each of those
    is a thread switch (docs/predict.md, "Speed").
    """
    return rows[:, None] * width + columns


def _flat(matrix: np.ndarray) -> np.ndarray:
    return matrix.reshape(-1)
