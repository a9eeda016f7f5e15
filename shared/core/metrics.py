"""Forecast accuracy metrics (pure numpy). MAPE is in percent."""

from __future__ import annotations

import numpy as np


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAPE (%), RMSE, MAE and R² of ``predicted`` against ``actual``; rows with a NaN are left out."""
    y = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    ok = np.isfinite(y) & np.isfinite(p)
    y, p = y[ok], p[ok]
    if not len(y):
        return {"mape": float("nan"), "rmse": float("nan"), "mae": float("nan"), "r2": float("nan"),
                "n": 0}
    err = p - y
    nonzero = y != 0
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {
        "mape": float(np.mean(np.abs(err[nonzero] / y[nonzero])) * 100) if nonzero.any() else float("nan"),
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": float(1 - np.sum(err ** 2) / ss_tot) if ss_tot > 0 else float("nan"),
        "n": len(y),
    }
