"""Two trainings on the same data and configuration, side by side.

Fixed seeds and byte-reproducible artifacts mean the two runs must agree on
every metric, every holdout prediction (by hash) and every model file (by hash).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from shared.dataset_spec import DatasetSpec
from shared.registry import ensembles_to_bytes, sha256
from shared.training import TrainingConfig, fit_target, prepare

if TYPE_CHECKING:
    import pandas as pd


def one_run(frame: "pd.DataFrame", spec: DatasetSpec, config: TrainingConfig) -> dict[str, Any]:
    started = time.perf_counter()
    prepared = prepare(frame, spec, config.holdout_days)
    targets = {}
    for target in spec.target_names:
        fit = fit_target(prepared, target, config)
        targets[target] = {"metrics": fit.metrics, "seasonal_naive": fit.naive,
                           "prediction_sha256": fit.prediction_hash,
                           "model_sha256": sha256(ensembles_to_bytes(fit.ensembles)) if fit.ensembles else None}
    return {"targets": targets, "seconds": round(time.perf_counter() - started, 3)}


def report(frame: "pd.DataFrame", spec: DatasetSpec, config: TrainingConfig, data: str) -> dict[str, Any]:
    """Run training twice and compare; ``identical`` is the verdict."""
    first, second = one_run(frame, spec, config), one_run(frame, spec, config)
    differences = [f"{t}.{key}" for t in spec.target_names for key in first["targets"][t]
                   if first["targets"][t][key] != second["targets"][t][key]]
    return {"dataset": spec.name, "data": data, "rows": int(len(frame)),
            "estimator": config.estimator, "params": dict(config.params),
            "seeds": {"random_state": config.params.get("random_state")},
            "runs": [first, second], "identical": not differences, "differences": differences}
