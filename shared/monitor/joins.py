"""What a monitor run judges (pure): requests and actuals that are new since the last run.

A run judges a request's inputs once, in the first run after it was logged, and
a (request, timestamp) pair against its actual once, in the first run where
both exist: the request was logged by the run's cut-off and the actual stored.
The previous run's ``Watermark`` says what it judged: requests logged up to
``requests_until`` and actuals stored up to ``data_until``. So a pair is new
when its request is new (and the actual is there), or when its request is old
but its actual arrived since — whatever the window, and never twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.core.features import Actuals


@dataclass(frozen=True)
class Watermark:
    """What a run has judged: requests logged up to an epoch time, actuals up to a timestamp."""

    requests_until: float
    data_until: np.datetime64 | None


@dataclass
class Joined:
    """Predictions and served inputs paired with what was observed at their timestamps.

    ``accuracy`` maps (target, version) to (timestamps, predicted, actual); ``intervals``
    the same key to the logged interval bounds of those pairs (lower, upper), NaN where
    the request had none (a variant without an interval, or a record logged before
    predict served intervals).
    """

    accuracy: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    intervals: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    served: dict[str, np.ndarray] = field(default_factory=dict)
    observed: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return max((len(v) for v in self.served.values()), default=0)


def new_requests(entries: Iterable[Mapping[str, Any]], previous: Watermark, cut: float) -> list[Mapping[str, Any]]:
    """Answered (200) requests logged after the previous run's cut-off and by this run's."""
    return [e for e in entries if e["status"] == 200 and previous.requests_until < e["time"] <= cut]


def inputs_in_time_order(entries: Iterable[Mapping[str, Any]], features: Sequence[str]) -> dict[str, np.ndarray]:
    """Each feature's served values, one per timestamp (the last logged wins), in time order."""
    latest: dict[np.datetime64, tuple[float, ...]] = {}
    for entry in sorted(entries, key=lambda e: e["time"]):
        inputs = entry["inputs"]
        stamps = np.array(inputs["Timestamp"], dtype="datetime64[m]")
        for i, ts in enumerate(stamps):
            latest[ts] = tuple(float(inputs[f][i]) for f in features)
    order = sorted(latest)
    return {f: np.array([latest[ts][j] for ts in order], float) for j, f in enumerate(features)}


def join(entries: Iterable[Mapping[str, Any]], previous: Watermark, cut: float, observed: Actuals,
         features: Sequence[str]) -> Joined:
    """Pairs new since ``previous``: predictions with actuals, served inputs with observed ones.

    ``observed`` holds the stored rows (targets and features) up to ``observed.last``.
    """
    joined = Joined()
    last = observed.last
    if last is None:
        return joined
    step = np.timedelta64(observed.step, "m")
    accuracy: dict[tuple[str, str], list[tuple[np.ndarray, ...]]] = {}
    intervals: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    served: dict[str, list[np.ndarray]] = {f: [] for f in features}
    seen: dict[str, list[np.ndarray]] = {f: [] for f in features}
    for entry in entries:
        if entry["status"] != 200 or entry["time"] > cut:
            continue
        ts = np.array(entry["inputs"]["Timestamp"], dtype="datetime64[m]")
        slots = observed.slots(ts)
        on_grid = observed.origin + slots * step == ts
        fresh_request = entry["time"] > previous.requests_until
        fresh_actual = ts > previous.data_until if previous.data_until is not None else np.ones(len(ts), bool)
        keep = on_grid & (ts <= last) & (fresh_request | fresh_actual)
        for target, predicted in entry["predictions"].items():
            actual = observed.lag(target, slots, 0)
            rows = keep & np.isfinite(actual)
            if rows.any():
                key = (target, entry["versions"][target])
                accuracy.setdefault(key, []).append((ts[rows], np.asarray(predicted, float)[rows], actual[rows]))
                lower, upper = _bounds(entry, target, len(ts))
                intervals.setdefault(key, []).append((lower[rows], upper[rows]))
        for f in features:
            value = observed.lag(f, slots, 0)
            rows = keep & np.isfinite(value)
            served[f].append(np.asarray(entry["inputs"][f], float)[rows])
            seen[f].append(value[rows])
    for key, chunks in accuracy.items():
        ts, predicted, actual = (np.concatenate(parts) for parts in zip(*chunks, strict=True))
        joined.accuracy[key] = (ts, predicted, actual)
        lower, upper = (np.concatenate(parts) for parts in zip(*intervals[key], strict=True))
        joined.intervals[key] = (lower, upper)
    joined.served = {f: np.concatenate(v) if v else np.zeros(0) for f, v in served.items()}
    joined.observed = {f: np.concatenate(v) if v else np.zeros(0) for f, v in seen.items()}
    return joined


def _bounds(entry: Mapping[str, Any], target: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """A logged request's interval bounds for ``target`` (NaN where it has none), ``rows`` each."""
    logged = (entry.get("intervals") or {}).get(target) or {}
    bounds = []
    for side in ("lower", "upper"):
        values = logged.get(side)
        # None (a row without an interval) becomes NaN; a record without bounds, all NaN.
        bounds.append(np.array(values, dtype=float) if isinstance(values, list) and len(values) == rows
                      else np.full(rows, np.nan))
    return bounds[0], bounds[1]
