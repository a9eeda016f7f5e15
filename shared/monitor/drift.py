"""Data drift statistics (pure): PSI on reference-quantile bins and the two-sample KS test.

PSI bins come from the reference's deciles, so each holds about a tenth of the
reference; empty bins get a small floor so the logarithm stays finite. The KS
test comes from scipy; its statistic D is the effect size (the largest gap
between the two cumulative distributions), its p-value the significance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

PSI_BINS = 10
PSI_FLOOR = 1e-4
MIN_SAMPLE = 30


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one column: PSI, KS statistic and p-value, sample sizes, verdict."""

    feature: str
    psi: float
    ks_statistic: float
    ks_pvalue: float
    reference_n: int
    recent_n: int
    level: str  # "none", "warn" or "alert"

    @property
    def drifted(self) -> bool:
        return self.level != "none"

    def as_dict(self) -> dict:
        return asdict(self)


def psi(reference: np.ndarray, recent: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of ``recent`` against ``reference``."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1))[1:-1])
    cuts = np.concatenate([[-np.inf], edges, [np.inf]])
    expected = np.histogram(reference, cuts)[0] / len(reference)
    actual = np.histogram(recent, cuts)[0] / len(recent)
    expected = np.clip(expected, PSI_FLOOR, None)
    actual = np.clip(actual, PSI_FLOOR, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def feature_drift(feature: str, reference: np.ndarray, recent: np.ndarray, psi_warn: float,
                  psi_alert: float, ks_pvalue: float, ks_effect: float) -> FeatureDrift | None:
    """Drift of one column, or None when either sample is too small to judge."""
    from scipy.stats import ks_2samp

    reference = reference[np.isfinite(reference)]
    recent = recent[np.isfinite(recent)]
    if len(reference) < MIN_SAMPLE or len(recent) < MIN_SAMPLE:
        return None
    value = psi(reference, recent)
    test = ks_2samp(reference, recent)
    ks_drift = test.pvalue < ks_pvalue and test.statistic >= ks_effect
    level = "alert" if value >= psi_alert else "warn" if value >= psi_warn or ks_drift else "none"
    return FeatureDrift(feature, round(value, 6), round(float(test.statistic), 6),
                        float(test.pvalue), len(reference), len(recent), level)
