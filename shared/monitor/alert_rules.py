"""Alert rules (pure): measured values and thresholds in, conditions with severity out.

The steel document's rule: a value above its threshold fires; severity is
``high`` above 1.5 x the threshold, else ``medium``. Drift uses its own levels:
PSI at or above the alert level is ``high``; at or above the warn level, or a
significant KS test with a large enough effect, is ``medium``. Every evaluated
condition is returned, firing or not, so an open alert can resolve when its
condition clears; a condition that could not be evaluated is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from shared.monitor.drift import FeatureDrift
from shared.platform.settings import Thresholds  # ALERT_THRESHOLDS, parsed once by the settings

__all__ = ["HIGH", "MEDIUM", "Condition", "Thresholds", "accuracy_condition", "drift_conditions",
           "operations_conditions", "threshold_condition"]

HIGH, MEDIUM = "high", "medium"


@dataclass(frozen=True)
class Condition:
    """One evaluated condition. ``key`` identifies it across runs."""

    metric: str
    subject: str
    value: float
    threshold: float
    firing: bool
    severity: str | None
    target: str | None = None
    model_version: str | None = None
    detail: str = ""

    @property
    def key(self) -> str:
        return f"{self.metric}:{self.subject}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "key": self.key}


def threshold_condition(metric: str, subject: str, value: float, threshold: float,
                        **extra: Any) -> Condition:
    """Fires above ``threshold``; high above 1.5 x threshold."""
    firing = value > threshold
    severity = (HIGH if value > 1.5 * threshold else MEDIUM) if firing else None
    return Condition(metric, subject, round(float(value), 6), threshold, firing, severity, **extra)


def drift_conditions(source: str, drifts: Iterable[FeatureDrift], thresholds: Thresholds,
                     model_version: str | None) -> list[Condition]:
    """One condition per feature (PSI and KS levels) and one for the share drifted."""
    drifts = list(drifts)
    out = []
    for d in drifts:
        severity = HIGH if d.level == "alert" else MEDIUM if d.level == "warn" else None
        out.append(Condition("drift", f"{source}:{d.feature}", d.psi, thresholds.psi_alert, d.drifted,
                             severity, model_version=model_version,
                             detail=f"PSI {d.psi:.3f}, KS D {d.ks_statistic:.3f} (p {d.ks_pvalue:.2g}), "
                                    f"n {d.recent_n} vs {d.reference_n}"))
    if drifts:
        share = sum(d.drifted for d in drifts) / len(drifts)
        out.append(threshold_condition("drift_share", source, share, thresholds.drift_share,
                                       model_version=model_version,
                                       detail=f"{sum(d.drifted for d in drifts)} of {len(drifts)} drifted"))
    return out


def accuracy_condition(target: str, version: str, window_mape: float, holdout_mape: float,
                       rows: int, thresholds: Thresholds) -> Condition:
    """MAPE over the window against the model's holdout MAPE (both in %)."""
    increase = (window_mape - holdout_mape) / 100
    return threshold_condition("mape_increase", target, increase, thresholds.mape_increase,
                               target=target, model_version=version,
                               detail=f"window MAPE {window_mape:.3f} % on {rows} rows vs holdout "
                                      f"{holdout_mape:.3f} %")


def operations_conditions(ops: Mapping[str, Any], thresholds: Thresholds) -> list[Condition]:
    """Error rate, latency spike (p95) and daily cost of predict."""
    if not ops.get("requests"):
        return []
    return [
        threshold_condition("error_rate", "predict", ops["error_rate"], thresholds.error_rate,
                            detail=f"{ops['errors']} of {ops['requests']} requests answered 5xx"),
        threshold_condition("latency_spike", "predict", ops["latency_p95_ms"] / 1000,
                            thresholds.latency_spike, detail=f"p95 {ops['latency_p95_ms']:.1f} ms"),
        threshold_condition("cost_daily", "predict", ops["cost_daily_usd"], thresholds.cost_daily,
                            detail=f"{ops['invocations_per_day']:.0f} invocations/day"),
    ]
