"""What the registry records about a trained version: the version record and metadata.json.

Pure assembly from a fit, its gate results and the written files; the retrain
service (``service.py``) decides, writes and promotes. The metrics a record
shows and the gates judge are the ``served`` ones (the mix predict serves);
``champion`` is the production model's served metrics on the same holdout rows.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from shared.core.dataset_spec import DatasetSpec
from shared.core.features import ANCHORS, HISTORY, NO_HISTORY, HistoryConfig
from shared.core.forest import FORMAT_VERSION
from shared.core.frames import content_hash
from shared.core.registry import CANDIDATE, METADATA_FILE, MODEL_FILE, REFERENCE_FILE
from shared.platform.timefmt import iso_utc
from shared.retrain import gates
from shared.retrain.processed import DatasetVersion
from shared.retrain.training import SERVED, TargetFit, TrainingConfig


def library_versions() -> dict[str, str]:
    """The versions of the libraries a model was trained with."""
    import pandas
    import sklearn

    return {"python": platform.python_version(), "numpy": np.__version__,
            "pandas": pandas.__version__, "scikit-learn": sklearn.__version__}


def record_base(fit: TargetFit, dataset: DatasetVersion, version: str, spec: DatasetSpec,
                code_version: str) -> dict[str, Any]:
    """The fields every version record has, decided or not: identity, rows and lineage."""
    return {"version": version, "target": fit.target, "status": CANDIDATE,
            "created_at": iso_utc(timespec="microseconds"), "dataset": spec.name,
            "dataset_version": dataset.version, "dataset_sha256": dataset.sha256, "rows": fit.rows,
            "code_version": code_version,
            "lineage": {"dataset_version": dataset.version, "batches": len(dataset.batch_ids),
                        "last_batch": dataset.batch_ids[-1], "start": dataset.start,
                        "end": dataset.end, "rows": dataset.rows, "sha256": dataset.sha256}}


def holdout_summary(fit: TargetFit) -> dict[str, Any]:
    """The holdout's range, size and prediction hash (predict can be checked against it)."""
    return {"start": str(fit.holdout_timestamps.min()), "end": str(fit.holdout_timestamps.max()),
            "rows": len(fit.holdout_actual), "prediction_sha256": fit.prediction_hash}


def artifact_metadata(base: Mapping[str, Any], fit: TargetFit, config: TrainingConfig, spec: DatasetSpec,
                      results: list[gates.GateResult], champion: Mapping[str, float] | None,
                      model_bytes: bytes, reference_bytes: bytes) -> dict[str, Any]:
    """The content of ``metadata.json``, written next to the model files."""
    return json_safe({
        **{k: base[k] for k in ("version", "created_at", "target", "dataset", "code_version", "lineage")},
        "estimator": config.estimator, "params": dict(config.params),
        "artifact_format": FORMAT_VERSION,
        "features": {v: list(e.features) for v, e in fit.ensembles.items()},
        "target_transform": {**{m: f"ratio_to_{a}" for m, a in ANCHORS.items() if m in fit.ensembles},
                             HISTORY: "ratio_to_level", NO_HISTORY: "identity"},
        "history": asdict(HistoryConfig.from_spec(spec)),
        "intervals": intervals_summary(fit), "refit": fit.refit,
        "metrics": fit.metrics, "gated_metrics": SERVED, "seasonal_naive": fit.naive, "champion": champion,
        "gates": [r.as_dict() for r in results], "holdout": holdout_summary(fit),
        "library_versions": library_versions(),
        "sha256": {MODEL_FILE: content_hash(model_bytes), REFERENCE_FILE: content_hash(reference_bytes)},
        "reference": fit.reference,
    })


def version_record(base: Mapping[str, Any], fit: TargetFit, results: list[gates.GateResult],
                   champion: Mapping[str, float] | None, files: Mapping[str, str],
                   model_bytes: bytes, reference_bytes: bytes) -> dict[str, Any]:
    """The registry's ``models/<version>`` record of a version whose files are written."""
    return json_safe({**base, "metrics": fit.metrics, "gated_metrics": SERVED, "seasonal_naive": fit.naive,
            "champion": champion, "gates": [r.as_dict() for r in results], "holdout": holdout_summary(fit),
            "variants": list(fit.ensembles), "features": {v: list(e.features) for v, e in fit.ensembles.items()},
            "artifact_format": FORMAT_VERSION,
            "artifact": files[MODEL_FILE], "sha256": content_hash(model_bytes),
            "reference_artifact": files[REFERENCE_FILE], "reference_sha256": content_hash(reference_bytes),
            # Quantiles of the training rows: the monitor's range checks read them here.
            "reference": {"quantile_levels": fit.reference["quantile_levels"],
                          "columns": fit.reference["columns"]},
            "metadata_artifact": files[METADATA_FILE], "size_bytes": len(model_bytes),
            "intervals": intervals_summary(fit), "refit": fit.refit})


def intervals_summary(fit: TargetFit) -> dict[str, Any]:
    """Each variant's interval bounds (ratios to the prediction) as the record shows them."""
    return {v: {"level": t.level, "lower": round(float(t.lower.min()), 4), "upper": round(float(t.upper.max()), 4)}
            for v, t in fit.intervals.items()}


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float as None: a metric not measured (a variant with no
    holdout rows, say after a gap in the data) is stored as null, which JSON can hold."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def promotion_reason(fit: TargetFit, champion: Mapping[str, float] | None) -> str:
    """Why a candidate that passed every gate is promoted (served MAPEs, like with like)."""
    return (f"passed gates: served MAPE {fit.metrics[SERVED]['mape']:.3f} vs seasonal-naive "
            f"{fit.naive['mape']:.3f}" + (f" and production {champion['mape']:.3f}" if champion else ""))
