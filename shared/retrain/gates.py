"""Validation gates a candidate must pass before it may serve (pure).

Thresholds come from the dataset spec's ``gates`` section: ``defaults`` merged
with ``targets.<name>``. Every gate is recorded with its value and threshold;
a gate that cannot apply (no production model yet) is recorded as skipped.
The metric gates judge the *served* holdout metrics (the history model where its
inputs exist, the no-history model elsewhere, as predict serves), and the
champion's served metrics on the same holdout rows: like is compared with like.

Two rules stop a reference the production model fails too from keeping it serving:
rejecting a better candidate because it misses an absolute bound or seasonal naive
would serve the worse model.

- Absolute bounds (mape, r2, rmse): a candidate outside the bound still passes when
  the production model, measured on the same rows, is worse on that very metric.
- Skill: a candidate that does not beat seasonal naive still passes when its MAPE is
  strictly below the production model's on the same holdout (which then loses to
  seasonal naive too).

Without a production model, or with its metric not measured (missing, None, NaN),
the plain rule applies. The result keeps the configured bound as its threshold, so
a record shows the value beyond the bound, and says in its detail why it passed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from shared.core.dataset_spec import DatasetSpec

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
# The exported arrays must predict like scikit-learn to this relative error: they
# evaluate the same float64 comparisons and sums, so only summation order differs.
PARITY_TOLERANCE = 1e-9


@dataclass(frozen=True)
class GateConfig:
    """Bounds for one target. ``None`` turns a bound off."""

    mape_max: float | None = 5.0
    r2_min: float | None = 0.90
    rmse_max: float | None = None
    # The candidate's MAPE must be at most the seasonal-naive MAPE x (1 - skill_margin).
    skill_margin: float = 0.0
    # ... and at most the production model's MAPE x (1 + champion_tolerance).
    champion_tolerance: float = 0.10


def gate_config(spec: DatasetSpec, target: str) -> GateConfig:
    """The target's gate bounds from the spec (defaults, then per-target overrides)."""
    section = spec.section("gates")
    merged = {**dict(section.get("defaults", {})), **dict(section.get("targets", {}).get(target, {}))}
    merged.pop("note", None)
    known = set(GateConfig.__dataclass_fields__)
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ValueError(f"unknown gate settings for {target}: {unknown}")
    return GateConfig(**merged)


@dataclass(frozen=True)
class GateResult:
    """One gate's outcome with the value it judged and the bound it used."""

    name: str
    status: str
    value: float | None = None
    threshold: float | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bound(name: str, value: float, threshold: float | None, upper: bool, detail: str) -> GateResult:
    if threshold is None:
        return GateResult(name, SKIPPED, value, None, "no bound configured")
    ok = math.isfinite(value) and (value <= threshold if upper else value >= threshold)
    return GateResult(name, PASSED if ok else FAILED, value, threshold, detail)


def data_gate(train_rows: int, holdout_rows: int, min_train_rows: int, min_holdout_rows: int) -> GateResult:
    """Enough rows with complete history for training, and a full enough holdout."""
    ok = train_rows >= min_train_rows and holdout_rows >= min_holdout_rows
    return GateResult("data", PASSED if ok else FAILED, float(train_rows), float(min_train_rows),
                      f"{train_rows} training rows (need {min_train_rows}), {holdout_rows} holdout "
                      f"rows (need {min_holdout_rows})")


def parity_gate(errors: Mapping[str, float], rows: int, tolerance: float = PARITY_TOLERANCE) -> GateResult:
    """The exported arrays predict like the scikit-learn model they came from.

    ``errors`` holds each variant's relative error (``export.parity_error``) over
    ``rows`` holdout and missing-value probe rows; NaN (a non-finite prediction) fails.
    """
    worst = max(errors.values(), key=lambda e: math.inf if math.isnan(e) else e) if errors else 0.0
    detail = (f"max |export - scikit-learn| / max |prediction| over {rows} holdout and missing-value "
              f"probe rows: " + ", ".join(f"{v} {e:.3g}" for v, e in errors.items()))
    return _bound("parity", worst, tolerance, True, detail)


def _measured(metrics: Mapping[str, float] | None, key: str) -> float | None:
    """``metrics[key]`` when it was measured (present and finite), else None."""
    value = None if metrics is None else metrics.get(key)
    return float(value) if value is not None and math.isfinite(value) else None


def _absolute(name: str, value: float, threshold: float | None, upper: bool, label: str,
              production: float | None, same: float) -> GateResult:
    """An absolute bound that never keeps a model worse than the candidate on the same rows:
    outside the bound, the candidate passes when ``production`` (the production model's
    metric on its rows, None when not measured) is worse than ``same`` (the candidate's
    metric on those rows) on this very metric."""
    result = _bound(name, value, threshold, upper, label)
    if result.status != FAILED or production is None or not math.isfinite(same):
        return result
    if not (same < production if upper else same > production):
        return result
    side = "above" if upper else "below"
    return GateResult(name, PASSED, value, threshold,
                      f"{label} {value:.4g} {side} the bound {threshold:g} but production "
                      f"{production:.4g} on the same rows is worse: keeping it would serve the worse model")


def evaluate(config: GateConfig, metrics: Mapping[str, float], naive: Mapping[str, float],
             champion: Mapping[str, float] | None,
             candidate_on_champion_rows: Mapping[str, float] | None = None) -> list[GateResult]:
    """The absolute, skill and champion/challenger gates for a candidate's served holdout
    metrics; ``champion`` is the production model's served metrics on the holdout rows it
    never saw, and ``candidate_on_champion_rows`` the candidate's on those same rows (the
    whole holdout when omitted). A production model refit on the holdout days it shares
    with this holdout is judged only on the newer rows: on the others it is in-sample.

    An absolute bound or the skill gate the candidate misses still passes when the
    production model is measured on the same rows and is worse (see the module doc)."""
    mape = metrics["mape"]
    same = candidate_on_champion_rows if candidate_on_champion_rows is not None else metrics
    results = [
        _absolute("mape", mape, config.mape_max, True, "holdout MAPE (%)", _measured(champion, "mape"),
                  same["mape"]),
        _absolute("r2", metrics["r2"], config.r2_min, False, "holdout R²", _measured(champion, "r2"), same["r2"]),
        _absolute("rmse", metrics["rmse"], config.rmse_max, True, "holdout RMSE", _measured(champion, "rmse"),
                  same["rmse"]),
    ]
    if naive.get("mape") is None or not math.isfinite(naive["mape"]):
        # After a gap in the data (an outage, a retracted batch) the holdout may have no
        # values a week back: the reference is missing, not beaten; the champion still judges.
        results.append(GateResult("skill", SKIPPED, mape, None,
                                  "seasonal-naive not measurable on this holdout (no values a week "
                                  "earlier: a gap in the data)"))
    else:
        skill = _bound("skill", mape, naive["mape"] * (1 - config.skill_margin), True,
                       f"must beat seasonal-naive MAPE {naive['mape']:.3f}")
        production = _measured(champion, "mape")
        if (skill.status == FAILED and production is not None and math.isfinite(same["mape"])
                and same["mape"] < production):
            # Production loses to seasonal naive too: rejecting would keep the worse model.
            skill = GateResult("skill", PASSED, mape, skill.threshold,
                               f"loses to seasonal-naive MAPE {naive['mape']:.3f} but beats production "
                               f"({same['mape']:.3f} vs {production:.3f} on the same rows; production "
                               "loses to seasonal naive too)")
        results.append(skill)
    if champion is None:
        results.append(GateResult("champion", SKIPPED, mape, None, "no production model"))
    else:
        rows = f"{int(champion['n'])} holdout rows it never saw" if "n" in champion else "the same holdout"
        results.append(_bound("champion", same["mape"], champion["mape"] * (1 + config.champion_tolerance),
                              True, f"production MAPE {champion['mape']:.3f} on {rows}"))
    return results


def passed(results: list[GateResult]) -> bool:
    """True when no gate failed."""
    return all(r.status != FAILED for r in results)


def failures(results: list[GateResult]) -> list[str]:
    """Human-readable reasons of the failed gates."""
    return [f"{r.name}: {r.value:.4g} vs {r.threshold:.4g} ({r.detail})" if r.threshold is not None
            and r.value is not None else f"{r.name}: {r.detail}" for r in results if r.status == FAILED]
