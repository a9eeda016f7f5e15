"""Features, computed the same way at training and at serving time (numpy only).

Two model variants per target:

- ``history``: weather, daily and weekly cycle encodings, and history known a
  day ahead — consumption at the same slot 1 and 7 days earlier and the level of
  the day ending 1 day (and 7 days) earlier. The model learns consumption
  relative to that level (``y / mean_1d``), so it carries the series' level
  forward instead of extrapolating it from the calendar.
- ``no_history``: weather and calendar only (with the yearly cycle), used when
  the requested time is too far past the last known actuals.

Only numpy is imported here: predict loads this module on its cold-start path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.core.dataset_spec import DatasetSpec

HISTORY = "history"
NO_HISTORY = "no_history"
VARIANTS = (HISTORY, NO_HISTORY)
CYCLES = ("tod_sin", "tod_cos", "dow_sin", "dow_cos")
YEARLY = ("doy_sin", "doy_cos")
HISTORY_COLUMNS = ("r_lag_1d", "r_lag_7d", "r_mean_7d")
# A window mean needs at least this share of its slots present.
MIN_WINDOW_COVERAGE = 0.5


@dataclass(frozen=True)
class HistoryConfig:
    """Where the history features look, in slots of the series' interval."""

    lag_short: int
    lag_long: int
    window: int

    @classmethod
    def from_spec(cls, spec: DatasetSpec) -> HistoryConfig:
        """From the spec's optional ``history`` section (days; defaults 1, 7, 1)."""
        section = spec.section("history")
        per_day = int(round(86400 / spec.interval.total_seconds())) or 1
        return cls(lag_short=int(round(float(section.get("lag_short_days", 1)) * per_day)),
                   lag_long=int(round(float(section.get("lag_long_days", 7)) * per_day)),
                   window=max(1, int(round(float(section.get("window_days", 1)) * per_day))))

    @property
    def reach(self) -> int:
        """How many slots before a timestamp its features reach back."""
        return self.lag_long + self.window


def feature_names(spec: DatasetSpec, variant: str) -> list[str]:
    """The model's input columns for one variant, in order."""
    base = [*spec.feature_names, *CYCLES]
    if variant == HISTORY:
        return base + list(HISTORY_COLUMNS)
    if variant == NO_HISTORY:
        return base + list(YEARLY)
    raise ValueError(f"unknown variant {variant!r}")


def to_minutes(timestamps: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Timestamps as datetime64[m] (naive local time of the series)."""
    return np.asarray(timestamps, dtype="datetime64[m]")


def calendar(ts: np.ndarray) -> dict[str, np.ndarray]:
    """Cycle encodings and the energy document's calendar fields for datetime64[m] values."""
    days = ts.astype("datetime64[D]")
    minute_of_day = (ts - days).astype(np.int64)
    dow = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    months = days.astype("datetime64[M]")
    day_of_year = (days - days.astype("datetime64[Y]")).astype(np.int64) + 1
    tod = minute_of_day / 1440.0
    doy = (day_of_year - 1) / 365.25
    month = months.astype(np.int64) % 12 + 1
    return {
        "tod_sin": np.sin(2 * np.pi * tod), "tod_cos": np.cos(2 * np.pi * tod),
        "dow_sin": np.sin(2 * np.pi * dow / 7), "dow_cos": np.cos(2 * np.pi * dow / 7),
        "doy_sin": np.sin(2 * np.pi * doy), "doy_cos": np.cos(2 * np.pi * doy),
        "Day": (days - months).astype(np.int64) + 1, "Month": month,
        "Hour": minute_of_day // 60, "Minute": minute_of_day % 60, "DayWeek": dow + 1,
        "QuarterYear": (month - 1) // 3 + 1, "DayYear": day_of_year,
    }


CALENDAR_FIELDS = ("Day", "Month", "Hour", "Minute", "DayWeek", "QuarterYear", "DayYear")


class Actuals:
    """Known values of each target on the series grid, for lag and window lookups."""

    def __init__(self, timestamps: np.ndarray, values: Mapping[str, np.ndarray],
                 interval_minutes: int) -> None:
        ts = to_minutes(timestamps)
        self.step = int(interval_minutes)
        if len(ts):
            self.origin = ts.min()
            slots = ((ts - self.origin).astype(np.int64)) // self.step
            size = int(slots.max()) + 1
        else:
            self.origin, slots, size = np.datetime64(0, "m"), np.zeros(0, np.int64), 0
        self.last = ts.max() if len(ts) else None
        self.dense: dict[str, np.ndarray] = {}
        self.prefix: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, vals in values.items():
            dense = np.full(size, np.nan)
            dense[slots] = np.asarray(vals, dtype=float)
            self.dense[name] = dense
            present = ~np.isnan(dense)
            self.prefix[name] = (np.concatenate([[0.0], np.cumsum(np.where(present, dense, 0.0))]),
                                 np.concatenate([[0], np.cumsum(present)]))

    def slots(self, ts: np.ndarray) -> np.ndarray:
        return (to_minutes(ts) - self.origin).astype(np.int64) // self.step

    def lag(self, name: str, slots: np.ndarray, back: int) -> np.ndarray:
        """Value ``back`` slots before each slot (NaN where unknown)."""
        dense = self.dense[name]
        idx = slots - back
        ok = (idx >= 0) & (idx < len(dense))
        out = np.full(len(slots), np.nan)
        out[ok] = dense[idx[ok]]
        return out

    def window_mean(self, name: str, slots: np.ndarray, end_back: int, width: int) -> np.ndarray:
        """Mean over the ``width`` slots ending ``end_back`` slots before each slot."""
        sums, counts = self.prefix[name]
        top = len(sums) - 1
        hi = np.minimum(np.maximum(slots - end_back + 1, 0), top)
        lo = np.minimum(np.maximum(slots - end_back + 1 - width, 0), top)
        n = counts[hi] - counts[lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (sums[hi] - sums[lo]) / n
        return np.where(n >= MIN_WINDOW_COVERAGE * width, mean, np.nan)


def history_features(actuals: Actuals, target: str, ts: np.ndarray, config: HistoryConfig,
                     slots: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The scale-free history columns and the level (``mean_1d``) they are relative to.

    ``slots`` (``actuals.slots(ts)``) may be passed when computing several targets.
    """
    slots = actuals.slots(ts) if slots is None else slots
    level = actuals.window_mean(target, slots, config.lag_short, config.window)
    with np.errstate(invalid="ignore", divide="ignore"):
        columns = {
            "r_lag_1d": actuals.lag(target, slots, config.lag_short) / level,
            "r_lag_7d": actuals.lag(target, slots, config.lag_long) / level,
            "r_mean_7d": actuals.window_mean(target, slots, config.lag_long, config.window) / level,
        }
    return columns, level


def history_indices(names: Sequence[str]) -> list[int]:
    """Positions of the history columns among ``names`` (none for ``no_history``)."""
    return [i for i, name in enumerate(names) if name in HISTORY_COLUMNS]


def usable_history(history: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Rows the history model may serve: every history column finite and a finite,
    non-zero level to multiply by. The one rule for training, holdout scoring (the
    candidate's and the champion's) and serving, so their metrics describe the same rows.

    ``history`` is a (rows, history columns) matrix; with no columns only ``scale`` counts.
    """
    return np.isfinite(np.asarray(history, dtype=float)).all(axis=1) & np.isfinite(scale) & (scale != 0)


def matrix(names: Sequence[str], columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Stack named columns into a float64 (rows, features) matrix in model order."""
    return np.column_stack([np.asarray(columns[n], dtype=float) for n in names])


def model_inputs(spec: DatasetSpec, variant: str, names: Sequence[str], target: str, ts: np.ndarray,
                 weather: Mapping[str, np.ndarray], actuals: Actuals | None,
                 config: HistoryConfig) -> tuple[np.ndarray, np.ndarray]:
    """The input matrix for ``names`` and the scale predictions are multiplied by.

    The ``history`` variant predicts consumption relative to the level of the day
    ending one day earlier, so its scale is that level; ``no_history`` predicts
    the value itself (scale 1). Rows whose history is unknown hold NaN.
    """
    ts = to_minutes(ts)
    columns: dict[str, np.ndarray] = {**calendar(ts), **weather}
    scale = np.ones(len(ts))
    if variant == HISTORY:
        if actuals is None:
            history = {c: np.full(len(ts), np.nan) for c in HISTORY_COLUMNS}
            scale = np.full(len(ts), np.nan)
        else:
            history, scale = history_features(actuals, target, ts, config)
        columns.update(history)
    return matrix(names, columns), scale
