"""Features, computed the same way at training and at serving time (numpy only).

A target is forecast by one of three variants, the first whose inputs exist:

- ``day_ahead``: anchored on the previous calendar day, which must be complete.
  It learns consumption as a ratio to that day's mean from same-slot values 1, 2,
  7 and 14 days back, the same-slot mean of the last 7 days, the means of the day
  a week back and of the last 7 days, and the previous day's last value and
  last-hour mean (all as ratios to the anchor). Its optional twin
  (``day_ahead_week``) learns the same quantities relative to the last 7 days'
  mean; the variant then serves the mean of both.
- ``history``: the rolling fallback when the previous day is incomplete (actuals
  arrive in parts, or a request looks two days ahead): same-slot values 1 and 7
  days back and the level of the 24 hours ending a day before the slot.
- ``no_history``: weather and calendar only (with the yearly cycle), when no
  actual reaches the requested time.

Every variant also sees the weather, daily and weekly cycles, the region's
holidays (``special_days``) and the sun's position (``daylight``) when the spec
names them. Only numpy is imported here: predict loads this module on its
cold-start path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.core.dataset_spec import DatasetSpec
from shared.core.daylight import DAYLIGHT_COLUMNS, Location, daylight
from shared.core.special_days import CALENDAR_COLUMNS, SpecialDays

DAY_AHEAD = "day_ahead"
HISTORY = "history"
NO_HISTORY = "no_history"
# In order of preference: a row is served by the first variant whose inputs exist.
VARIANTS = (DAY_AHEAD, HISTORY, NO_HISTORY)
DAY_AHEAD_WEEK = "day_ahead_week"
# The ensembles ("members") a variant may average; the first is required.
MEMBERS = {DAY_AHEAD: (DAY_AHEAD, DAY_AHEAD_WEEK), HISTORY: (HISTORY,), NO_HISTORY: (NO_HISTORY,)}
CYCLES = ("tod_sin", "tod_cos", "dow_sin", "dow_cos")
YEARLY = ("doy_sin", "doy_cos")
HISTORY_COLUMNS = ("r_lag_1d", "r_lag_7d", "r_mean_7d")
# The day-ahead quantities; each member divides them by its anchor and leaves its anchor out.
DAY_AHEAD_LAG_DAYS = (1, 2, 7, 14)
_DAY_AHEAD_STATS = (*(f"lag_{d}d" for d in DAY_AHEAD_LAG_DAYS), "slot_mean_7d", "mean_d7",
                    "mean_7d", "mean_d1", "last", "last_hour")
ANCHORS = {DAY_AHEAD: "mean_d1", DAY_AHEAD_WEEK: "mean_7d"}
PREFIXES = {DAY_AHEAD: "d_", DAY_AHEAD_WEEK: "w_"}
# A window mean needs at least this share of its slots present.
MIN_WINDOW_COVERAGE = 0.5
# The day-ahead anchor needs the previous day this complete: a reading or two lost
# by the feed does not send a whole day to the weaker fallback.
ANCHOR_COVERAGE = 0.95


def member_columns(member: str) -> tuple[str, ...]:
    """The per-target history columns of one member (none for ``no_history``)."""
    if member == HISTORY:
        return HISTORY_COLUMNS
    if member in ANCHORS:
        return tuple(PREFIXES[member] + s for s in _DAY_AHEAD_STATS if s != ANCHORS[member])
    return ()


TARGET_COLUMNS = (*HISTORY_COLUMNS, *member_columns(DAY_AHEAD), *member_columns(DAY_AHEAD_WEEK))


def variant_of(member: str) -> str:
    """The variant a member serves in."""
    return next(v for v, members in MEMBERS.items() if member in members)


@dataclass(frozen=True)
class HistoryConfig:
    """Where the rolling ``history`` variant looks, in slots of the series' interval."""

    lag_short: int
    lag_long: int
    window: int

    @classmethod
    def from_spec(cls, spec: DatasetSpec) -> HistoryConfig:
        """From the spec's optional ``history`` section (days; defaults 1, 7, 1)."""
        section = spec.section("history")
        per_day = slots_per_day(spec)
        return cls(lag_short=int(round(float(section.get("lag_short_days", 1)) * per_day)),
                   lag_long=int(round(float(section.get("lag_long_days", 7)) * per_day)),
                   window=max(1, int(round(float(section.get("window_days", 1)) * per_day))))

    @property
    def reach(self) -> int:
        """How many slots before a timestamp the rolling features reach back."""
        return self.lag_long + self.window


def slots_per_day(spec: DatasetSpec) -> int:
    return max(1, int(round(86400 / spec.interval.total_seconds())))


def reach_slots(spec: DatasetSpec) -> int:
    """How many slots before a timestamp any variant's features reach back."""
    per_day = slots_per_day(spec)
    return max(HistoryConfig.from_spec(spec).reach, (max(DAY_AHEAD_LAG_DAYS) + 1) * per_day)


@dataclass(frozen=True)
class FeatureContext:
    """What the features of a series need besides its actuals: the spec, the rolling
    history's reach, the region's special days and the series' place."""

    spec: DatasetSpec
    history: HistoryConfig
    special_days: SpecialDays | None = None
    location: Location | None = None
    per_day: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_day", slots_per_day(self.spec))

    @classmethod
    def from_spec(cls, spec: DatasetSpec, calendar_extra: Mapping[str, Any] | None = None) -> FeatureContext:
        """From the spec's ``history``, ``calendar`` and ``location`` sections, plus the
        calendar entries an operator added (``calendar_extra``)."""
        section = spec.section("calendar")
        special = SpecialDays.merged(section, calendar_extra) if section or calendar_extra else None
        location = Location.from_spec(spec.section("location"), spec.utc_offset.total_seconds() / 60)
        return cls(spec, HistoryConfig.from_spec(spec), special, location)

    def base_columns(self) -> list[str]:
        """The inputs every variant shares: weather, cycles, calendar, daylight."""
        return [*self.spec.feature_names, *CYCLES,
                *(CALENDAR_COLUMNS if self.special_days is not None else ()),
                *(DAYLIGHT_COLUMNS if self.location is not None else ())]

    def feature_names(self, member: str) -> list[str]:
        """One member's input columns, in order."""
        if member == NO_HISTORY:
            return self.base_columns() + list(YEARLY)
        columns = member_columns(member)
        if not columns:
            raise ValueError(f"unknown model member {member!r}")
        return self.base_columns() + list(columns)

    def shared_columns(self, ts: np.ndarray, weather: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every column that does not depend on a target's actuals."""
        ts = to_minutes(ts)
        columns: dict[str, np.ndarray] = {**calendar(ts), **weather}
        if self.special_days is not None:
            columns.update(self.special_days.columns(ts))
        if self.location is not None:
            columns.update(daylight(ts, self.location))
        return columns


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
    """Known values of each target on the series grid, for lag and window lookups.

    Window sums are assembled from per-day sums and within-day cumulative sums on a
    grid aligned to midnight, so a window's mean depends only on the values inside
    it: predict (holding the last weeks) and training (holding the whole history)
    compute bit-identical features, and a tree split never flips between the two on
    rounding. A running sum over all history would differ in the last bits.
    """

    def __init__(self, timestamps: np.ndarray, values: Mapping[str, np.ndarray],
                 interval_minutes: int) -> None:
        ts = to_minutes(timestamps)
        self.step = int(interval_minutes)
        self.per_day = max(1, 1440 // self.step)
        if len(ts):
            self.origin = ts.min().astype("datetime64[D]").astype("datetime64[m]")
            slots = ((ts - self.origin).astype(np.int64)) // self.step
            days = int(slots.max()) // self.per_day + 1
        else:
            self.origin, slots, days = np.datetime64(0, "m"), np.zeros(0, np.int64), 0
        self.last = ts.max() if len(ts) else None
        self.dense: dict[str, np.ndarray] = {}
        self._within: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, vals in values.items():
            dense = np.full(days * self.per_day, np.nan)
            dense[slots] = np.asarray(vals, dtype=float)
            self.dense[name] = dense
            grid = dense.reshape(days, self.per_day)
            present = ~np.isnan(grid)
            # Sums and counts of each day's first k slots, a zero column in front.
            zero = np.zeros((days, 1))
            self._within[name] = (np.hstack([zero, np.cumsum(np.where(present, grid, 0.0), axis=1)]),
                                  np.hstack([zero, np.cumsum(present, axis=1)]))
        # The day-ahead quantities depend on the calendar day only: computed once per day here,
        # looked up per row (``day_ahead_stats``), so a request pays index lookups.
        self.by_day = {name: self._day_stats(name) for name in values}

    def _day_stats(self, name: str) -> dict[str, np.ndarray]:
        """Per day index D (0 .. days): the day-level day-ahead quantities known at D's start."""
        sums, counts = self._within[name]
        days, p = sums.shape[0], self.per_day
        day_sum = np.concatenate([[0.0], sums[:, -1]]) if days else np.zeros(1)  # shifted: [D] = day D-1
        day_n = np.concatenate([[0.0], counts[:, -1]]) if days else np.zeros(1)
        hour = max(1, p // 24)
        with np.errstate(invalid="ignore", divide="ignore"):
            prev_mean = day_sum / day_n
            week_sum, week_n = np.zeros(days + 1), np.zeros(days + 1)
            for back in range(min(7, days + 1)):  # days D-1 .. D-7, always summed in this order
                week_sum[back:] += day_sum[:days + 1 - back]
                week_n[back:] += day_n[:days + 1 - back]
            tail_sum = np.concatenate([[0.0], sums[:, -1] - sums[:, -1 - hour]]) if days else np.zeros(1)
            tail_n = np.concatenate([[0.0], counts[:, -1] - counts[:, -1 - hour]]) if days else np.zeros(1)
            mean_d7 = np.full(days + 1, np.nan)
            if days >= 6:
                ok7 = day_n[:days + 1 - 6] >= MIN_WINDOW_COVERAGE * p
                mean_d7[6:] = np.where(ok7, prev_mean[:days + 1 - 6], np.nan)
            last = np.concatenate([[np.nan], self.dense[name][p - 1::p]])
            return {"mean_d1": np.where(day_n >= ANCHOR_COVERAGE * p, prev_mean, np.nan),
                    "mean_d7": mean_d7,
                    # Any known day of the last seven gives this mean: it needs no more than the anchor.
                    "mean_7d": np.where(week_n >= ANCHOR_COVERAGE * p, week_sum / week_n, np.nan),
                    "last": last,
                    "last_hour": np.where(tail_n >= MIN_WINDOW_COVERAGE * hour, tail_sum / tail_n, np.nan)}

    def day_lookup(self, name: str, stat: str, slots: np.ndarray) -> np.ndarray:
        """A day-level quantity for the day of each slot (NaN outside the known days)."""
        table = self.by_day[name][stat]
        day = slots // self.per_day
        ok = (day >= 0) & (day < len(table))
        out = np.full(len(slots), np.nan)
        out[ok] = table[day[ok]]
        return out

    def slots(self, ts: np.ndarray) -> np.ndarray:
        return (to_minutes(ts) - self.origin).astype(np.int64) // self.step

    def lags(self, name: str, slots: np.ndarray, backs: np.ndarray) -> np.ndarray:
        """A (rows, len(backs)) matrix: the value ``backs[j]`` slots before each slot (NaN where unknown)."""
        dense = self.dense[name]
        idx = slots[:, None] - np.asarray(backs)[None, :]
        ok = (idx >= 0) & (idx < len(dense))
        return np.where(ok, dense[np.where(ok, idx, 0)] if len(dense) else np.nan, np.nan)

    def lag(self, name: str, slots: np.ndarray, back: int | np.ndarray) -> np.ndarray:
        """Value ``back`` slots before each slot (NaN where unknown)."""
        dense = self.dense[name]
        idx = slots - back
        ok = (idx >= 0) & (idx < len(dense))
        out = np.full(len(slots), np.nan)
        out[ok] = dense[idx[ok]]
        return out

    def _sum(self, name: str, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sum and count of the known values in slots ``start`` .. ``end - 1`` (clipped to the grid)."""
        sums, counts = self._within[name]
        if not sums.shape[0]:
            return np.zeros(len(start)), np.zeros(len(start), np.int64)
        size = sums.shape[0] * self.per_day
        start, end = np.clip(start, 0, size), np.clip(end, 0, size)
        d0, o0 = np.divmod(start, self.per_day)
        d1, o1 = np.divmod(end, self.per_day)
        days = sums.shape[0]
        d0c, d1c = np.minimum(d0, days - 1), np.minimum(d1, days - 1)
        tail1 = np.where(d1 < days, 1, 0)  # end == size: the head of a day past the grid is empty
        same = d0 == d1
        head_s = np.where(tail1 == 1, sums[d1c, o1], 0.0)
        head_n = np.where(tail1 == 1, counts[d1c, o1], 0)
        total_s = np.where(same, head_s - sums[d0c, o0], (sums[d0c, -1] - sums[d0c, o0]) + head_s)
        total_n = np.where(same, head_n - counts[d0c, o0], (counts[d0c, -1] - counts[d0c, o0]) + head_n)
        middle = np.maximum(d1 - d0 - 1, 0)
        for k in range(1, int(middle.max(initial=0)) + 1):
            inside = middle >= k
            day = np.minimum(d0 + k, days - 1)
            total_s = total_s + np.where(inside, sums[day, -1], 0.0)
            total_n = total_n + np.where(inside, counts[day, -1], 0)
        empty = end <= start
        return np.where(empty, 0.0, total_s), np.where(empty, 0, total_n)

    def window_mean(self, name: str, slots: np.ndarray, end_back: int | np.ndarray, width: int,
                    coverage: float = MIN_WINDOW_COVERAGE) -> np.ndarray:
        """Mean over the ``width`` slots ending ``end_back`` slots before each slot, where
        at least ``coverage`` of them are known (NaN elsewhere)."""
        end = slots - end_back + 1
        total, n = self._sum(name, end - width, end)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / n
        return np.where(n >= coverage * width, mean, np.nan)


def history_features(actuals: Actuals, target: str, ts: np.ndarray, config: HistoryConfig,
                     slots: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The rolling variant's scale-free columns and the level (``mean_1d``) they are relative to."""
    slots = actuals.slots(ts) if slots is None else slots
    level = actuals.window_mean(target, slots, config.lag_short, config.window)
    with np.errstate(invalid="ignore", divide="ignore"):
        columns = {
            "r_lag_1d": actuals.lag(target, slots, config.lag_short) / level,
            "r_lag_7d": actuals.lag(target, slots, config.lag_long) / level,
            "r_mean_7d": actuals.window_mean(target, slots, config.lag_long, config.window) / level,
        }
    return columns, level


def day_ahead_stats(actuals: Actuals, target: str, ts: np.ndarray, slots: np.ndarray,
                    per_day: int) -> dict[str, np.ndarray]:
    """The day-ahead quantities in the target's unit, from actuals up to the end of the
    previous calendar day of each timestamp (nothing of the day itself)."""
    back_days = sorted({*range(1, 8), *DAY_AHEAD_LAG_DAYS})
    same_slot = actuals.lags(target, slots, np.array(back_days) * per_day)
    stats = {f"lag_{d}d": same_slot[:, back_days.index(d)] for d in DAY_AHEAD_LAG_DAYS}
    week = same_slot[:, :7]
    known = np.isfinite(week).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        stats["slot_mean_7d"] = np.where(known >= 4, np.nansum(week, axis=1) / known, np.nan)
    for stat in ("mean_d1", "mean_d7", "mean_7d", "last", "last_hour"):
        stats[stat] = actuals.day_lookup(target, stat, slots)
    return stats


@dataclass
class TargetHistory:
    """One target's history columns for a set of timestamps: every member's columns,
    each member's scale (what its ratio prediction is multiplied by) and, per variant,
    the rows whose inputs exist."""

    columns: dict[str, np.ndarray]
    scale: dict[str, np.ndarray]
    usable: dict[str, np.ndarray]


def _valid(scale: np.ndarray) -> np.ndarray:
    return np.isfinite(scale) & (scale != 0)


def target_history(context: FeatureContext, actuals: Actuals | None, target: str, ts: np.ndarray,
                   slots: np.ndarray | None = None, fallback_only: bool = False) -> TargetHistory:
    """The history columns, scales and usable rows of one target.

    One rule decides which rows each variant may serve, in training, holdout scoring
    (the candidate's and the champion's) and predict, so their metrics describe the
    same rows: ``day_ahead`` needs a complete previous day; ``history`` needs every
    rolling column and its level; ``no_history`` serves anything. ``fallback_only``
    (predict) computes the rolling columns only for rows ``day_ahead`` cannot serve:
    the others never read them, and the day-ahead rows are the usual ones.
    """
    n = len(ts)
    if actuals is None or target not in actuals.dense:
        nan = np.full(n, np.nan)
        none = np.zeros(n, bool)
        return TargetHistory({c: nan for c in TARGET_COLUMNS},
                             {m: nan for m in (DAY_AHEAD, DAY_AHEAD_WEEK, HISTORY)} | {NO_HISTORY: np.ones(n)},
                             {DAY_AHEAD: none, HISTORY: none, NO_HISTORY: np.ones(n, bool)})
    slots = actuals.slots(ts) if slots is None else slots
    stats = day_ahead_stats(actuals, target, ts, slots, context.per_day)
    columns: dict[str, np.ndarray] = {}
    scale = {NO_HISTORY: np.ones(n)}
    with np.errstate(invalid="ignore", divide="ignore"):
        for member, anchor in ANCHORS.items():
            scale[member] = stats[anchor]
            columns.update({PREFIXES[member] + s: stats[s] / stats[anchor]
                            for s in _DAY_AHEAD_STATS if s != anchor})
    day_ahead = _valid(scale[DAY_AHEAD]) & _valid(scale[DAY_AHEAD_WEEK])
    need = ~day_ahead if fallback_only else np.ones(n, bool)
    rolling = {c: np.full(n, np.nan) for c in HISTORY_COLUMNS}
    level = np.full(n, np.nan)
    if need.any():
        part, part_level = history_features(actuals, target, ts[need], context.history, slots[need])
        for c in HISTORY_COLUMNS:
            rolling[c][need] = part[c]
        level[need] = part_level
    columns.update(rolling)
    scale[HISTORY] = level
    usable = {DAY_AHEAD: day_ahead,
              HISTORY: np.isfinite(np.column_stack([rolling[c] for c in HISTORY_COLUMNS])).all(axis=1)
              & _valid(level),
              NO_HISTORY: np.ones(n, bool)}
    return TargetHistory(columns, scale, usable)


def matrix(names: Sequence[str], columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Stack named columns into a float64 (rows, features) matrix in model order."""
    return np.column_stack([np.asarray(columns[n], dtype=float) for n in names])


def choose_variants(usable: Mapping[str, np.ndarray], available: Sequence[str]) -> np.ndarray:
    """Per row, the index in ``VARIANTS`` of the first available variant whose inputs exist."""
    n = len(next(iter(usable.values())))
    chosen = np.full(n, VARIANTS.index(NO_HISTORY))
    for variant in reversed(VARIANTS):
        if variant in available:
            chosen[usable[variant]] = VARIANTS.index(variant)
    return chosen
