"""Input checks (pure) that tell sensor and pipeline faults from weather.

Weather is not stationary: a week of real weather against a sample of the
training months drifts on every feature, so comparing the two alerts on seasons,
not faults. These checks choose references that seasons do not move:

- **skew**: what callers sent against what was observed *for the same
  timestamps* (the collected rows), by PSI and the KS test. Season, hour of day
  and the weather of the day are the same on both sides, so only a difference
  between the served and the observed values remains: an offset, a unit slip, a
  stuck or dead sensor feeding the caller. Needs the actuals of those timestamps.
- **range**: the share of values outside the serving model's training range,
  widened by ``RANGE_MARGIN`` of its span on each side: a unit slip (humidity as
  a fraction, wind in km/h) or a dead sensor lands there; a warm week does not.
  Needs no actuals, so it fires on the first run that sees the values.
- **stuck**: the share of consecutive values (in time order) that repeat the
  previous one exactly: a frozen or zeroed sensor repeats every value; real
  2017 days repeat at most 31 % (wind speed, humidity).

Each check judges one column from one source (``requests`` or ``collected``)
and returns None when it has fewer than ``MIN_SAMPLE`` values to judge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from shared.monitor.drift import MIN_SAMPLE, feature_drift
from shared.platform.settings import Thresholds

SKEW, RANGE, STUCK = "skew", "range", "stuck"
REQUESTS, COLLECTED = "requests", "collected"
RANGE_MARGIN = 0.1
NONE, WARN, ALERT = "none", "warn", "alert"


@dataclass(frozen=True)
class InputCheck:
    """One check of one column: measured value against its threshold, and the verdict."""

    source: str
    feature: str
    check: str
    value: float
    threshold: float
    level: str
    n: int
    detail: str

    @property
    def firing(self) -> bool:
        return self.level != NONE

    def as_dict(self) -> dict:
        return asdict(self)


def _share_level(share: float, threshold: float) -> str:
    """The steel document's rule for a share: above the threshold fires, above 1.5 x is high."""
    return ALERT if share > 1.5 * threshold else WARN if share > threshold else NONE


def skew_check(feature: str, served: np.ndarray, observed: np.ndarray, thresholds: Thresholds) -> InputCheck | None:
    """Served values against the observations of the same timestamps (PSI and KS levels)."""
    found = feature_drift(feature, np.asarray(observed, float), np.asarray(served, float), thresholds.psi_warn,
                          thresholds.psi_alert, thresholds.ks_pvalue, thresholds.ks_effect)
    if found is None:
        return None
    level = {"alert": ALERT, "warn": WARN}.get(found.level, NONE)
    return InputCheck(REQUESTS, feature, SKEW, found.psi, thresholds.psi_alert, level, found.recent_n,
                      f"served vs observed at the same {found.recent_n} timestamps: PSI {found.psi:.3f}, "
                      f"KS D {found.ks_statistic:.3f} (p {found.ks_pvalue:.2g})")


def range_check(source: str, feature: str, values: np.ndarray, training_range: tuple[float, float],
                thresholds: Thresholds, unit: str = "") -> InputCheck | None:
    """Share of values outside the training range widened by RANGE_MARGIN of its span."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if len(values) < MIN_SAMPLE:
        return None
    low, high = training_range
    margin = RANGE_MARGIN * (high - low)
    outside = (values < low - margin) | (values > high + margin)
    share = float(outside.mean())
    unit = f" {unit}" if unit else ""
    detail = (f"{int(outside.sum())} of {len(values)} values outside {low - margin:.4g}..{high + margin:.4g}{unit} "
              f"(training range {low:.4g}..{high:.4g} ± {RANGE_MARGIN:.0%}); median {np.median(values):.4g}{unit}")
    return InputCheck(source, feature, RANGE, round(share, 6), thresholds.out_of_range_share,
                      _share_level(share, thresholds.out_of_range_share), len(values), detail)


def stuck_check(source: str, feature: str, values: np.ndarray, thresholds: Thresholds) -> InputCheck | None:
    """Share of consecutive values (``values`` in time order) equal to the one before."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if len(values) < MIN_SAMPLE:
        return None
    repeats = np.diff(values) == 0
    share = float(repeats.mean())
    common, count = np.unique(values, return_counts=True)
    detail = (f"{int(repeats.sum())} of {len(repeats)} consecutive values repeat the previous one; "
              f"most frequent {common[count.argmax()]:.4g} ({count.max()} times)")
    return InputCheck(source, feature, STUCK, round(share, 6), thresholds.stuck_share,
                      _share_level(share, thresholds.stuck_share), len(values), detail)


def no_new_data(source: str, feature: str, check: str) -> InputCheck:
    """A row for the report: nothing arrived to judge (the condition is left as it was)."""
    return InputCheck(source, feature, check, 0.0, 0.0, NONE, 0, "no new data")
