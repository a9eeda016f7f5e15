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

import numpy as np

from shared.core.dataset_spec import DatasetSpec
from shared.core.features import (
    CYCLES,
    HISTORY,
    HISTORY_COLUMNS,
    NO_HISTORY,
    VARIANTS,
    YEARLY,
    Actuals,
    HistoryConfig,
    calendar,
    history_features,
    matrix,
    usable_history,
)
from shared.core.forest import EnsembleBank, TreeEnsemble
from shared.core.registry import ArtifactError, Registry
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


def input_columns(spec: DatasetSpec, targets: Sequence[str]) -> list[str]:
    """The shared input column space of all loaded ensembles."""
    per_target = [f"{t}:{c}" for t in targets for c in HISTORY_COLUMNS]
    return [*spec.feature_names, *CYCLES, *YEARLY, *per_target]


def _column_of(feature: str, target: str, variant: str) -> str:
    return f"{target}:{feature}" if variant == HISTORY and feature in HISTORY_COLUMNS else feature


@dataclass(frozen=True)
class Snapshot:
    """The models one request sees, fused per variant over a shared column space."""

    models: Mapping[str, LoadedModel] = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    banks: Mapping[str, EnsembleBank] = field(default_factory=dict)
    order: tuple[str, ...] = ()

    @classmethod
    def build(cls, spec: DatasetSpec, models: Mapping[str, LoadedModel]) -> Snapshot:
        order = tuple(t for t in spec.target_names if t in models)
        columns = input_columns(spec, order)
        index = {c: i for i, c in enumerate(columns)}
        banks = {}
        if order:
            for variant in VARIANTS:
                ensembles = [models[t].ensembles[variant] for t in order]
                columns_of = [[index[_column_of(f, t, variant)] for f in e.features]
                              for t, e in zip(order, ensembles, strict=True)]
                banks[variant] = EnsembleBank(ensembles, columns_of)
        return cls(dict(models), tuple(columns), banks, order)


class ModelCache:
    """The instance's production models, refreshed from the registry pointers."""

    def __init__(self, registry: Registry, spec: DatasetSpec,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.spec = spec
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
        changed = False
        for target in self.spec.target_names:
            pointer = pointers.get(target)
            if pointer is None:
                continue
            loaded = models.get(target)
            if loaded is not None and loaded.version == pointer["version"]:
                continue
            try:
                ensembles = self.registry.load_ensembles(pointer)
            except (ArtifactError, KeyError, ValueError) as exc:
                self.errors[target] = f"cannot load {pointer['version']}: {exc}"
                log.error("model load failed; the previous model keeps serving", fields={
                    "target": target, "version": pointer["version"], "error": str(exc),
                    "serving": loaded.version if loaded else None})
                continue
            self.errors.pop(target, None)
            models[target] = LoadedModel(target, pointer["version"], pointer["sha256"],
                                         iso_utc(),
                                         ensembles)
            changed = True
            log.info("model loaded", fields={"target": target, "version": pointer["version"],
                                             "previous": loaded.version if loaded else None})
        if changed:
            self.snapshot = Snapshot.build(self.spec, models)  # the one atomic swap
        self.last_check = self.clock()


@dataclass
class Predictions:
    """Per target: values, whether the history variant served each row, and the calendar."""

    values: dict[str, np.ndarray]
    history_used: dict[str, np.ndarray]
    calendar: dict[str, np.ndarray]


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


def predict(snapshot: Snapshot, actuals: Actuals | None, spec: DatasetSpec, history: HistoryConfig,
            ts: np.ndarray, weather: Mapping[str, np.ndarray], targets: Sequence[str],
            threads: int = 1) -> Predictions:
    """Predict ``targets`` for rows (timestamps, weather); every target must be loaded."""
    cal = calendar(ts)
    columns: dict[str, np.ndarray] = {**cal, **weather}
    scale: dict[str, np.ndarray] = {}
    slots = actuals.slots(ts) if actuals is not None else None
    for target in snapshot.order:
        if actuals is None:
            cols = {c: np.full(len(ts), np.nan) for c in HISTORY_COLUMNS}
            level = np.full(len(ts), np.nan)
        else:
            cols, level = history_features(actuals, target, ts, history, slots)
        columns.update({f"{target}:{c}": v for c, v in cols.items()})
        scale[target] = level
    X = matrix(snapshot.columns, columns)
    usable = {t: usable_history(X[:, [snapshot.columns.index(f"{t}:{c}") for c in HISTORY_COLUMNS]], scale[t])
              for t in snapshot.order}
    any_history = np.logical_or.reduce([usable[t] for t in targets])
    any_plain = np.logical_or.reduce([~usable[t] for t in targets])
    values = {t: np.empty(len(ts)) for t in targets}
    if any_history.any():
        out = _bank_predict(snapshot.banks[HISTORY], X[any_history], threads)
        for t in targets:
            k = snapshot.order.index(t)
            values[t][any_history] = out[:, k] * scale[t][any_history]
    if any_plain.any():
        out = _bank_predict(snapshot.banks[NO_HISTORY], X[any_plain], threads)
        for t in targets:
            k = snapshot.order.index(t)
            rows = np.flatnonzero(any_plain)
            plain_rows = ~usable[t][rows]
            values[t][rows[plain_rows]] = out[plain_rows, k]
    return Predictions(values, {t: usable[t] for t in targets}, cal)
