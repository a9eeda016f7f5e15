"""Plausibility of a collected batch against the recent accepted history.

Pure (pandas and numpy, no I/O). ``quality.validate`` judges each row alone: a
day of zone 1 at 0, or consumption in MW instead of kW, is inside the physical
range and passes it. This module judges each calendar day of a batch's clean
rows against the accepted days before it, in the spirit of TFDV / Great
Expectations distribution expectations, with its bounds held as data in the
dataset spec's ``plausibility`` section (parsed by ``PlausibilityConfig``).

Every check compares like with like: the day's present slots against the same
slots of the *reference days*, the same weekday of the last
``reference.same_weekday_weeks`` weeks and the last ``reference.recent_days``
days that the history holds (a reference day must cover ``min_coverage`` of the
slots; a check runs with at least ``reference.min_days`` of them). Per column
(a bound of ``null`` turns a check off for that column):

``level``   robust z of the day's mean against the reference days' means of the
            same slots: ``(mean - median) / max(1.4826 MAD, level_floor x |median|)``;
            the floor keeps a tiny MAD from exploding. Fails above ``level_z``.
``spread``  ``ln`` ratio of the day's standard deviation to the reference days'
            median one. Fails above ``spread_log``.
``scale``   ``log10`` ratio of the day's median |value| to the reference days'
            median one: a unit slip (kW -> MW) is -3 decades, a day of zeros
            -inf. Fails above ``scale_decades``.
``stuck``   the longest run of identical consecutive values within the 24 h
            ending at the day's last slot (a short batch continues the run the
            rows before it end on) against ``stuck_minutes``, raised to the
            longest run of a reference day, so a column that is legitimately
            constant for hours (irradiance at 0 all night, humidity at a cap,
            a column constant all along) does not fail.
``copy``    the share of the day's slots exactly equal to the same slots k days
            earlier (k = 1..copy.max_lag_days), less the median share over all
            k, so a legitimately constant column does not fail. Fails above
            ``copy_share``; needs ``copy.min_slots`` slots.
``sign``    the day's share of negative values less the reference days' share.
            Fails above ``sign_share``.

And once per day over the columns with a ``clock_weight``:

``clock``   the shape of the day (each column standardised; ``clock_log``
            columns through log1p first) against the shape of the reference
            profile taken ``clock.lag_minutes`` earlier, at the same time and
            later: mean absolute errors, weighted over the columns. The clock is
            shifted when the better of the two lags has below ``clock.max_ratio``
            x the error at the day's own time. Needs ``clock.min_slots`` slots.

A day is judged when the history holds data on ``min_history_days`` of the
``history_days`` days before it; otherwise a passed ``plausibility`` check says
so. A multi-day batch is judged day by day, against the history plus the
batch's earlier days. ``judge`` returns one ``Check`` per (kind, column) that
ran: ``failed`` days out of ``examined`` days, the failing days (or the closest
call) in its detail.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.collect.quality import PLAUSIBILITY, Check
from shared.core.dataset_spec import TIMESTAMP, DatasetSpec, SpecError

if TYPE_CHECKING:
    import pandas as pd

SECTION = "plausibility"
CLOCK = "clock"  # the clock check's column: it spans the columns with a clock_weight, named in its detail
_MAD_TO_SIGMA = 1.4826
_TINY = 1e-12
FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]


# -- configuration --------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnRules:
    """One column's bounds; ``None`` turns that check off for the column."""

    level_z: float | None = 8.0
    level_floor: float = 0.05
    spread_log: float | None = None
    scale_decades: float | None = 0.5
    stuck_minutes: float | None = 120.0
    copy_share: float | None = 0.5
    sign_share: float | None = 0.5
    clock_weight: float = 0.0
    clock_log: bool = False


_COLUMN_KEYS = {f.name for f in fields(ColumnRules)}
_NOT_NULL = {"level_floor", "clock_weight", "clock_log"}
_TOP_KEYS = {"note", "enabled", "history_days", "min_history_days", "reference", "clock", "copy", "defaults",
             "columns"}
_PART_KEYS = {"reference": {"same_weekday_weeks", "recent_days", "min_days", "min_coverage"},
              "clock": {"lag_minutes", "max_ratio", "min_slots"},
              "copy": {"max_lag_days", "min_slots"}}


@dataclass(frozen=True)
class PlausibilityConfig:
    """The spec's ``plausibility`` section, typed and checked (see the module docstring)."""

    enabled: bool = True
    history_days: int = 28
    min_history_days: int = 7
    same_weekday_weeks: int = 4
    recent_days: int = 7
    min_reference_days: int = 3
    min_reference_coverage: float = 0.8
    clock_lag_minutes: int = 60
    clock_max_ratio: float = 0.9
    clock_min_slots: int = 72
    copy_max_lag_days: int = 28
    copy_min_slots: int = 12
    columns: Mapping[str, ColumnRules] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: DatasetSpec) -> PlausibilityConfig:
        """Parse ``spec.section("plausibility")``: SpecError naming the key when it is unusable.

        An absent section gives the defaults above for every feature and target.
        """
        raw = spec.raw.get(SECTION, {})
        return cls.parse(raw, spec)

    @classmethod
    def parse(cls, raw: Any, spec: DatasetSpec) -> PlausibilityConfig:
        where = f"spec {spec.name}: {SECTION}"
        raw = _mapping(raw, where)
        _known(raw, _TOP_KEYS, where)
        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            raise SpecError(f"{where}.enabled must be true or false, not {enabled!r}")
        parts = {}
        for name, keys in _PART_KEYS.items():
            parts[name] = _mapping(raw.get(name, {}), f"{where}.{name}")
            _known(parts[name], keys | {"note"}, f"{where}.{name}")
        ref, clock, copy = parts["reference"], parts["clock"], parts["copy"]
        base = cls()
        config = cls(
            enabled=enabled,
            history_days=_int(raw, "history_days", base.history_days, where, 1),
            min_history_days=_int(raw, "min_history_days", base.min_history_days, where, 1),
            same_weekday_weeks=_int(ref, "same_weekday_weeks", base.same_weekday_weeks, f"{where}.reference", 0),
            recent_days=_int(ref, "recent_days", base.recent_days, f"{where}.reference", 0),
            min_reference_days=_int(ref, "min_days", base.min_reference_days, f"{where}.reference", 1),
            min_reference_coverage=_number(ref, "min_coverage", base.min_reference_coverage,
                                           f"{where}.reference", 0.0, 1.0),
            clock_lag_minutes=_int(clock, "lag_minutes", base.clock_lag_minutes, f"{where}.clock", 1),
            clock_max_ratio=_number(clock, "max_ratio", base.clock_max_ratio, f"{where}.clock", 0.0, 1.0),
            clock_min_slots=_int(clock, "min_slots", base.clock_min_slots, f"{where}.clock", 1),
            copy_max_lag_days=_int(copy, "max_lag_days", base.copy_max_lag_days, f"{where}.copy", 2),
            copy_min_slots=_int(copy, "min_slots", base.copy_min_slots, f"{where}.copy", 1),
            columns=_column_rules(raw, spec, where),
        )
        config._check(spec, where)
        return config

    def _check(self, spec: DatasetSpec, where: str) -> None:
        step = spec.interval.total_seconds() / 60
        if self.min_history_days > self.history_days:
            raise SpecError(f"{where}: min_history_days {self.min_history_days} exceeds history_days "
                            f"{self.history_days}")
        needed = max(7 * self.same_weekday_weeks, self.recent_days, self.copy_max_lag_days)
        if needed > self.history_days:
            raise SpecError(f"{where}: history_days {self.history_days} is shorter than the {needed} days that "
                            "reference.same_weekday_weeks x 7, reference.recent_days or copy.max_lag_days look back")
        if self.same_weekday_weeks + self.recent_days == 0:
            raise SpecError(f"{where}.reference: same_weekday_weeks and recent_days are both 0: no reference days")
        if (24 * 60) % step or self.clock_lag_minutes % step:
            raise SpecError(f"{where}: the {step:g}-minute interval must divide a day and clock.lag_minutes "
                            f"({self.clock_lag_minutes})")


def _known(raw: Mapping[str, Any], keys: set[str], where: str) -> None:
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise SpecError(f"{where}: unknown keys {unknown} (known: {sorted(keys)})")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be an object, not {value!r}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(raw: Mapping[str, Any], key: str, default: float, where: str, lo: float, hi: float) -> float:
    value = raw.get(key, default)
    if not _is_number(value) or not lo <= value <= hi:
        raise SpecError(f"{where}.{key} must be a number in [{lo:g}, {hi:g}], not {value!r}")
    return float(value)


def _int(raw: Mapping[str, Any], key: str, default: int, where: str, lo: int) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise SpecError(f"{where}.{key} must be an integer >= {lo}, not {value!r}")
    return value


def _rules(entry: Any, base: ColumnRules, where: str) -> ColumnRules:
    entry = _mapping(entry, where)
    _known(entry, _COLUMN_KEYS | {"note"}, where)
    changes: dict[str, Any] = {}
    for key, value in entry.items():
        if key == "note":
            continue
        if key == "clock_log":
            if not isinstance(value, bool):
                raise SpecError(f"{where}.clock_log must be true or false, not {value!r}")
            changes[key] = value
        elif value is None and key not in _NOT_NULL:
            changes[key] = None  # the check is off for this column
        elif not _is_number(value) or value < 0:
            allowed = "a non-negative number" + ("" if key in _NOT_NULL else " or null (off)")
            raise SpecError(f"{where}.{key} must be {allowed}, not {value!r}")
        else:
            changes[key] = float(value)
    return replace(base, **changes)


def _column_rules(raw: Mapping[str, Any], spec: DatasetSpec, where: str) -> dict[str, ColumnRules]:
    defaults = _rules(raw.get("defaults", {}), ColumnRules(), f"{where}.defaults")
    overrides = _mapping(raw.get("columns", {}), f"{where}.columns")
    names = [*spec.feature_names, *spec.target_names]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise SpecError(f"{where}.columns: {unknown} are not features or targets of the spec ({names})")
    return {name: _rules(overrides.get(name, {}), defaults, f"{where}.columns.{name}")
            for name in names if overrides.get(name, {}) is not None}  # null: the column is not judged


# -- measurements ---------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One check of one column (or of the clock) on one day: the measured value against its bound."""

    kind: str
    column: str
    day: str
    value: float
    bound: float
    failed: bool
    text: str

    @property
    def severity(self) -> float:
        """How close to failing, as value / bound (the clock: bound / value); above 1 fails."""
        if self.kind == "clock":
            return self.bound / self.value if self.value > 0 else math.inf
        if self.bound == 0:
            return math.inf if self.failed else 0.0
        return abs(self.value) / self.bound


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "-inf" if value < 0 else "inf"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 0.01 or size == 0:
        return f"{value:.3g}"
    return f"{value:.2e}"


class _Grid:
    """History and batch on one regular slot grid: values[column, slot], NaN where absent."""

    def __init__(self, history: pd.DataFrame | None, batch: pd.DataFrame, columns: list[str], spec: DatasetSpec,
                 history_days: int) -> None:
        self.columns = columns
        self.step = int(spec.interval.total_seconds() * 1e9)  # ns
        self.per_day = int(86_400 * 10**9 // self.step)
        self.step_minutes = spec.interval.total_seconds() / 60
        frames = [(history, False), (batch, True)]
        stamps = [_stamps(frame) for frame, _ in frames]
        day_ns = 86_400 * 10**9
        batch_ts = stamps[1][0][stamps[1][1]]
        first_day = int(batch_ts.min()) - int(batch_ts.min()) % day_ns
        first = min(int(ts[valid].min()) for ts, valid in stamps if valid.any())
        # History older than history_days before the batch's first day is never looked at.
        self.origin_ns = max(first - first % day_ns, first_day - history_days * day_ns)
        last = int(batch_ts.max())
        self.n_days = (last - self.origin_ns) // day_ns + 1
        size = self.n_days * self.per_day
        self.values: FloatArray = np.full((len(columns), size), np.nan)
        self.in_batch = np.zeros(size, dtype=bool)
        for (frame, is_batch), (ts, valid) in zip(frames, stamps, strict=True):
            if not valid.any():
                continue
            offset = ts - self.origin_ns
            ok = valid & (offset >= 0) & (offset % self.step == 0)
            slots = offset[ok] // self.step
            ok_slots = slots < size
            slots = slots[ok_slots]
            self.values[:, slots] = _floats(frame, columns)[:, ok][:, ok_slots]
            if is_batch:
                self.in_batch[slots] = True
        present = ~np.isnan(self.values).all(axis=0)
        self.day_has_data = present.reshape(self.n_days, self.per_day).any(axis=1)
        self.batch_days = [int(d) for d in np.flatnonzero(self.in_batch.reshape(self.n_days, self.per_day).any(axis=1))]
        self.origin_day = np.datetime64(self.origin_ns, "ns").astype("datetime64[D]")

    def day_name(self, day: int) -> str:
        return str(self.origin_day + np.timedelta64(day, "D"))

    def weekday_name(self, day: int) -> str:
        names = ("Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday")  # 1970-01-01 a Thursday
        return names[int((self.origin_day + np.timedelta64(day, "D")).astype(np.int64)) % 7]

    def when(self, slot: int) -> str:
        return str(np.datetime64(self.origin_ns + slot * self.step, "ns").astype("datetime64[m]")).replace("T", " ")


def _stamps(frame: pd.DataFrame | None) -> tuple[IntArray, np.ndarray[Any, np.dtype[np.bool_]]]:
    """A frame's timestamps as int64 nanoseconds and which are valid (empty for no frame or no column)."""
    import pandas as pd

    if frame is None or TIMESTAMP not in frame.columns or not len(frame):
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=bool)
    column = frame[TIMESTAMP]
    if column.dtype.kind != "M" or getattr(column.dtype, "tz", None) is not None:
        column = pd.to_datetime(column, errors="coerce")
    ts = column.to_numpy("datetime64[ns]")
    return ts.astype(np.int64), ~np.isnat(ts)


def _floats(frame: pd.DataFrame, columns: list[str]) -> FloatArray:
    """The frame's ``columns`` as floats, columns x rows; NaN for a missing column or a non-number."""
    import pandas as pd

    out = np.full((len(columns), len(frame)), np.nan)
    for i, column in enumerate(columns):
        if column not in frame.columns:
            continue
        series = frame[column]
        try:
            out[i] = series.to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError):
            out[i] = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return out


def _nanmedian(values: FloatArray, axis: int) -> FloatArray:
    """np.nanmedian along ``axis`` without its slow path for small arrays; NaN where all are NaN."""
    moved = np.moveaxis(values, axis, -1)
    ordered = np.sort(moved, axis=-1)  # NaN sorts last
    count = (~np.isnan(moved)).sum(axis=-1)
    lo = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(ordered, np.maximum(count // 2, 0)[..., None], axis=-1)[..., 0]
    return np.where(count > 0, (lo + hi) / 2, np.nan)


def _nanmean(values: FloatArray, axis: int) -> FloatArray:
    count = (~np.isnan(values)).sum(axis=axis)
    total = np.where(np.isnan(values), 0.0, values).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclass
class _Day:
    """One calendar day of the batch with its reference days and their same-slot values."""

    grid: _Grid
    index: int
    slots: IntArray
    config: PlausibilityConfig
    refs: list[int]  # reference days, nearest first
    x: FloatArray  # columns x slots
    ref: FloatArray  # columns x refs x slots, NaN where a reference day covers too little of the slots
    covered: np.ndarray[Any, np.dtype[np.bool_]]  # columns x refs: the reference day covers enough slots
    name: str = ""
    _described: dict[bytes, str] = field(default_factory=dict)

    @property
    def kept(self) -> IntArray:
        """Per column, the reference days kept."""
        return self.covered.sum(axis=1)

    def describe_refs(self, column: int) -> str:
        key = self.covered[column].tobytes()
        if key not in self._described:
            days = [d for d, keep in zip(self.refs, self.covered[column], strict=True) if keep]
            weekday = sum((self.index - d) % 7 == 0 for d in days)
            recent = sum(self.index - d <= self.config.recent_days for d in days)
            self._described[key] = (f"{len(days)} reference days: {weekday} {self.grid.weekday_name(self.index)}s, "
                                    f"{recent} of the last {self.config.recent_days} days")
        return self._described[key]


def _day(grid: _Grid, index: int, config: PlausibilityConfig) -> _Day:
    lo = index * grid.per_day
    slots = np.flatnonzero(grid.in_batch[lo:lo + grid.per_day]).astype(np.int64) + lo
    wanted = [index - 7 * w for w in range(1, config.same_weekday_weeks + 1)]
    wanted += [index - k for k in range(1, config.recent_days + 1)]
    refs = [d for d in sorted(set(wanted), reverse=True) if d >= 0 and grid.day_has_data[d]]
    x = grid.values[:, slots]
    if refs:
        idx = slots[None, :] - (index - np.array(refs))[:, None] * grid.per_day
        ref = grid.values[:, idx]  # columns x refs x slots
        covered = (~np.isnan(ref)).mean(axis=2) >= config.min_reference_coverage
        ref = np.where(covered[:, :, None], ref, np.nan)
    else:
        ref = np.empty((len(grid.columns), 0, len(slots)))
        covered = np.zeros((len(grid.columns), 0), dtype=bool)
    return _Day(grid, index, slots, config, refs, x, ref, covered, grid.day_name(index))


def _distribution_checks(day: _Day) -> list[Finding]:
    """level, spread, scale and sign of every column with enough reference days."""
    cfg, name = day.config, day.name
    x, ref = day.x, day.ref
    if not day.refs:
        return []
    count = (~np.isnan(x)).sum(axis=1)
    mean = _nanmean(x, axis=1)
    ref_means = _nanmean(ref, axis=2)  # columns x refs
    typical = _nanmedian(ref_means, axis=1)
    mad = _MAD_TO_SIGMA * _nanmedian(np.abs(ref_means - typical[:, None]), axis=1)
    std = np.sqrt(_nanmean((x - mean[:, None]) ** 2, axis=1))
    ref_std = _nanmedian(np.sqrt(_nanmean((ref - ref_means[:, :, None]) ** 2, axis=2)), axis=1)
    median = _nanmedian(np.abs(x), axis=1)
    ref_median = _nanmedian(_nanmedian(np.abs(ref), axis=2), axis=1)
    negative = _nanmean(np.where(np.isnan(x), np.nan, (x < 0).astype(float)), axis=1)
    ref_negative = _nanmean(np.where(np.isnan(ref), np.nan, (ref < 0).astype(float)).reshape(len(x), -1), axis=1)
    out: list[Finding] = []
    for i, column in enumerate(day.grid.columns):
        rules = cfg.columns[column]
        if count[i] == 0 or day.kept[i] < cfg.min_reference_days:
            continue
        refs = day.describe_refs(i)
        if rules.level_z is not None:
            scale = max(float(mad[i]), rules.level_floor * abs(float(typical[i])), _TINY)
            z = (float(mean[i]) - float(typical[i])) / scale
            out.append(Finding("level", column, name, z, rules.level_z, abs(z) > rules.level_z,
                               f"{column} {name}: mean {_fmt(mean[i])} over {count[i]} slots vs {_fmt(typical[i])} "
                               f"typical of the same slots on {refs} (robust z {z:+.1f}, bound {rules.level_z:g})"))
        if rules.spread_log is not None and count[i] >= 2:
            floor = max(0.01 * rules.level_floor * abs(float(typical[i])), _TINY)
            ratio = math.log((float(std[i]) + floor) / (float(ref_std[i]) + floor))
            out.append(Finding("spread", column, name, ratio, rules.spread_log, abs(ratio) > rules.spread_log,
                               f"{column} {name}: std {_fmt(std[i])} vs {_fmt(ref_std[i])} typical on {refs} "
                               f"(ln ratio {ratio:+.2f}, bound {rules.spread_log:g})"))
        if rules.scale_decades is not None:
            med, ref_med = float(median[i]), float(ref_median[i])
            if med <= _TINY or ref_med <= _TINY:
                decades = 0.0 if med <= _TINY and ref_med <= _TINY else math.copysign(math.inf, med - ref_med)
            else:
                decades = math.log10(med / ref_med)
            out.append(Finding("scale", column, name, decades, rules.scale_decades,
                               abs(decades) > rules.scale_decades,
                               f"{column} {name}: median |value| {_fmt(med)} vs {_fmt(ref_med)} typical on {refs} "
                               f"({_fmt(decades)} decades, bound {rules.scale_decades:g})"))
        if rules.sign_share is not None:
            gap = float(negative[i]) - float(ref_negative[i])
            out.append(Finding("sign", column, name, gap, rules.sign_share, abs(gap) > rules.sign_share,
                               f"{column} {name}: {100 * negative[i]:.0f}% of values negative vs "
                               f"{100 * ref_negative[i]:.0f}% on {refs} (sign flip above "
                               f"{100 * rules.sign_share:.0f} points)"))
    return out


def _longest_runs(rows: FloatArray) -> tuple[IntArray, IntArray]:
    """Per row: (length, first index) of the longest run of identical consecutive non-NaN values."""
    n_rows, width = rows.shape
    flat = np.hstack([rows, np.full((n_rows, 1), np.nan)]).ravel()  # a NaN ends each row's last run
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])  # NaN != NaN: every NaN starts a run
    lengths = np.diff(np.r_[starts, len(flat)])
    lengths[np.isnan(flat[starts])] = 0
    row = starts // (width + 1)
    order = np.lexsort((-lengths, row))  # by row, longest first
    first = order[np.r_[True, row[order][1:] != row[order][:-1]]]
    best_len = np.zeros(n_rows, dtype=np.int64)
    best_start = np.zeros(n_rows, dtype=np.int64)
    best_len[row[first]] = lengths[first]
    best_start[row[first]] = starts[first] - row[first] * (width + 1)
    return best_len, best_start


def _stuck(day: _Day) -> list[Finding]:
    """The longest run of each column in the day, the run before it included, against its bound."""
    cfg, grid = day.config, day.grid
    wanted = [i for i, c in enumerate(grid.columns)
              if cfg.columns[c].stuck_minutes is not None and not np.isnan(day.x[i]).all()]
    if not wanted:
        return []
    first, last = int(day.slots[0]), int(day.slots[-1])
    values = grid.values[wanted]
    # The run the rows just before the day end on continues into it: find where each column's run began.
    before = values[:, :first] != values[:, first:first + 1]  # NaN differs from everything
    lo = np.where(before.any(axis=1), first - np.argmax(before[:, ::-1], axis=1), 0) if first else np.zeros(
        len(wanted), dtype=np.int64)
    # Runs are measured within the day's length ending at its last slot, as on the reference days.
    lo = np.maximum(lo, last - grid.per_day + 1)
    start = int(lo.min())
    span = values[:, start:last + 1].copy()
    positions = np.arange(start, last + 1)
    span[:, ~grid.in_batch[start:last + 1] & (positions >= first)] = np.nan  # a gap in the batch breaks a run
    span[positions[None, :] < lo[:, None]] = np.nan
    run, at = _longest_runs(span)
    seen = np.zeros(len(wanted), dtype=np.int64)
    if day.refs:  # the reference days side by side, no run crossing midnight
        rows = (np.array(day.refs)[:, None] * grid.per_day + np.arange(grid.per_day)[None, :]).ravel()
        seen = _longest_runs(values[:, rows].reshape(len(wanted) * len(day.refs), grid.per_day))[0]
        seen = seen.reshape(len(wanted), len(day.refs)).max(axis=1)
    out = []
    for k, i in enumerate(wanted):
        column, minutes = grid.columns[i], cfg.columns[grid.columns[i]].stuck_minutes
        assert minutes is not None
        bound = max(minutes, float(seen[k]) * grid.step_minutes)
        length = float(run[k]) * grid.step_minutes
        value = _fmt(float(span[k, at[k]])) if run[k] else "-"
        out.append(Finding("stuck", column, day.name, length, bound, length > bound,
                           f"{column} {day.name}: {value} repeated {run[k]} times ({length:.0f} min from "
                           f"{grid.when(start + int(at[k]))}); bound {bound:.0f} min (the longer of {minutes:g} min "
                           "and the longest run on the reference days)"))
    return out


def _copies(day: _Day) -> list[Finding]:
    """Per column: the share of slots equal to k days earlier at the best k, above the share at a typical k."""
    cfg, grid = day.config, day.grid
    wanted = [i for i, c in enumerate(grid.columns) if cfg.columns[c].copy_share is not None]
    if not wanted or len(day.slots) < cfg.copy_min_slots:
        return []
    lags = np.arange(1, cfg.copy_max_lag_days + 1)
    idx = day.slots[None, :] - lags[:, None] * grid.per_day  # lags x slots
    earlier = np.where(idx >= 0, grid.values[wanted][:, np.clip(idx, 0, None)], np.nan)  # columns x lags x slots
    x = day.x[wanted][:, None, :]
    compared = (~np.isnan(earlier) & ~np.isnan(x)).sum(axis=2)
    usable = compared >= cfg.copy_min_slots
    share = np.where(usable, (earlier == x).sum(axis=2) / np.maximum(compared, 1), np.nan)
    typicals = _nanmedian(share, axis=1)
    bests = np.argmax(np.where(usable, share, -1.0), axis=1)
    out = []
    for k, i in enumerate(wanted):
        if usable[k].sum() < 2:
            continue
        column, bound = grid.columns[i], cfg.columns[grid.columns[i]].copy_share
        assert bound is not None
        typical, best = float(typicals[k]), int(bests[k])
        excess = float(share[k, best]) - typical
        out.append(Finding("copy", column, day.name, excess, bound, excess > bound,
                           f"{column} {day.name}: {100 * share[k, best]:.0f}% of {compared[k, best]} slots equal to "
                           f"{lags[best]} days earlier ({grid.day_name(day.index - int(lags[best]))}) vs "
                           f"{100 * typical:.0f}% at a typical lag (excess {100 * excess:.0f} points, bound "
                           f"{100 * bound:.0f})"))
    return out


def _standardised(values: FloatArray) -> FloatArray:
    """Each row at zero mean and unit deviation: its shape alone (NaN for a flat row)."""
    std = values.std(axis=-1, keepdims=True)
    return np.where(std > _TINY, (values - values.mean(axis=-1, keepdims=True)) / std, np.nan)


def _clock(day: _Day) -> Finding | None:
    """Shape error of the day against the reference profile at -lag, 0 and +lag, weighted over columns."""
    cfg, grid = day.config, day.grid
    wanted = [i for i, c in enumerate(grid.columns)
              if cfg.columns[c].clock_weight > 0 and not np.isnan(day.x[i]).all()]
    if not day.refs or not wanted or len(day.slots) < cfg.clock_min_slots:
        return None
    lag = int(cfg.clock_lag_minutes // grid.step_minutes)
    cut = day.index * grid.per_day  # reference values come from before the day only
    back = (day.index - np.array(day.refs)) * grid.per_day
    idx = day.slots[None, None, :] - back[:, None, None] + np.array([-lag, 0, lag])[None, :, None]
    inside = (idx >= 0) & (idx < cut)  # refs x shifts x slots
    values = grid.values[wanted]
    ref = np.where(inside[None], values[:, np.clip(idx, 0, max(cut - 1, 0))], np.nan)  # cols x refs x shifts x slots
    x = day.x[wanted]
    logs = np.array([cfg.columns[grid.columns[i]].clock_log for i in wanted])
    x = np.where(logs[:, None], np.log1p(np.maximum(x, 0)), x)
    ref = np.where(logs[:, None, None, None], np.log1p(np.maximum(ref, 0)), ref)
    # Slots where every column has the day's value and enough reference days at every shift.
    common = ((~np.isnan(ref)).sum(axis=1) >= cfg.min_reference_days).all(axis=(0, 1)) & ~np.isnan(x).any(axis=0)
    if common.sum() < cfg.clock_min_slots:
        return None
    shape = _standardised(x[:, common])  # cols x slots
    profiles = _standardised(_nanmedian(ref[..., common], axis=1))  # cols x shifts x slots
    per_column = np.mean(np.abs(shape[:, None, :] - profiles), axis=2)  # cols x shifts
    ok = ~np.isnan(per_column).any(axis=1)
    if not ok.any():
        return None
    weights = np.array([cfg.columns[grid.columns[i]].clock_weight for i in wanted])
    errors = (weights[ok, None] * per_column[ok]).sum(axis=0)
    if errors[1] <= _TINY:
        return None
    used = [grid.columns[i] for i, keep in zip(wanted, ok, strict=True) if keep]
    best = 0 if errors[0] < errors[2] else 2
    ratio = float(errors[best] / errors[1])
    direction = "earlier" if best == 0 else "later"
    return Finding("clock", CLOCK, day.name, ratio, cfg.clock_max_ratio, ratio < cfg.clock_max_ratio,
                   f"clock of {', '.join(used)} {day.name}: the day's shape matches the reference profile "
                   f"{cfg.clock_lag_minutes} min {direction} with {ratio:.2f} x the error at its own time "
                   f"(a shifted clock below {cfg.clock_max_ratio:g})")


def findings(history: pd.DataFrame, batch: pd.DataFrame, spec: DatasetSpec,
             config: PlausibilityConfig | None = None) -> tuple[list[Finding], dict[str, str]]:
    """Every measurement on every day of the batch; and the days not judged, with the reason."""
    cfg = config or PlausibilityConfig.from_spec(spec)
    columns = [c for c in (*spec.feature_names, *spec.target_names) if c in cfg.columns]
    if not columns or not _stamps(batch)[1].any():
        return [], {}
    grid = _Grid(history, batch, columns, spec, cfg.history_days)
    out: list[Finding] = []
    skipped: dict[str, str] = {}
    for index in grid.batch_days:
        have = int(grid.day_has_data[max(0, index - cfg.history_days):index].sum())
        if have < cfg.min_history_days:
            skipped[grid.day_name(index)] = (f"{have} days with data in the {cfg.history_days} before it, "
                                             f"{cfg.min_history_days} needed")
            continue
        with np.errstate(all="ignore"):  # inf or NaN in odd input gives inf or NaN measures, not warnings
            day = _day(grid, index, cfg)
            out += _distribution_checks(day)
            out += _stuck(day)
            out += _copies(day)
            clock = _clock(day)
        if clock is not None:
            out.append(clock)
    return out, skipped


def judge(history: pd.DataFrame, batch: pd.DataFrame, spec: DatasetSpec,
          config: PlausibilityConfig | None = None) -> list[Check]:
    """The plausibility checks of a batch's clean rows against the accepted ``history`` before it.

    ``history`` and ``batch`` are canonical typed frames (``timestamp`` and the
    spec's columns); the caller passes the accepted rows of the
    ``PlausibilityConfig.from_spec(spec).history_days`` days before the batch.
    One Check per (kind, column) that ran, named ``plausibility:<kind>:<column>``
    (the clock: ``plausibility:clock``), counting days; a passed ``plausibility`` check when there is nothing to
    judge or not enough history. Never raises on short, empty or odd input.
    """
    cfg = config or PlausibilityConfig.from_spec(spec)
    if not cfg.enabled:
        return [Check(PLAUSIBILITY, 0, 0, "plausibility checks disabled in the spec")]
    found, skipped = findings(history, batch, spec, cfg)
    checks: list[Check] = []
    if skipped:
        days = sorted(skipped)
        checks.append(Check(PLAUSIBILITY, 0, len(days),
                            f"not enough history to judge {len(days)} day(s), passed unjudged: "
                            + "; ".join(f"{d}: {skipped[d]}" for d in days[:3]) + (" ..." if len(days) > 3 else "")))
    groups: dict[tuple[str, str], list[Finding]] = {}
    for f in found:
        groups.setdefault((f.kind, f.column), []).append(f)
    for (kind, column), items in groups.items():
        bad = [f for f in items if f.failed]
        if bad:
            detail = "; ".join(f.text for f in bad[:3]) + (f"; and {len(bad) - 3} more days" if len(bad) > 3 else "")
        else:
            detail = "closest: " + max(items, key=lambda f: f.severity).text
        name = f"{PLAUSIBILITY}:{kind}" if kind == CLOCK else f"{PLAUSIBILITY}:{kind}:{column}"
        checks.append(Check(name, len(bad), len(items), detail))
    if not checks:
        checks.append(Check(PLAUSIBILITY, 0, 0, "no rows to judge"))
    return checks
