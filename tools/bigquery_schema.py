"""BigQuery schemas of what the functions write to the bucket, per dataset spec.

``python -m tools.bigquery_schema`` writes ``terraform/bigquery/<spec>/prediction_log.json``
for every spec in ``shared/core/specs/``; Terraform's external tables read them
(terraform/bigquery.tf). The prediction log's columns are named after the spec's
features and targets, so each spec has its own schema; tests check the files are
current and that every record predict writes fits them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.core.dataset_spec import DatasetSpec, load_spec
from shared.platform import names
from shared.platform.settings import PROJECT_ROOT

OUT = PROJECT_ROOT / "terraform" / "bigquery"
SPECS = PROJECT_ROOT / "shared" / "core" / "specs"


def _field(name: str, kind: str, mode: str = "NULLABLE", fields: list[dict[str, Any]] | None = None,
           description: str = "") -> dict[str, Any]:
    field: dict[str, Any] = {"name": name, "type": kind, "mode": mode}
    if description:
        field["description"] = description
    if fields is not None:
        field["fields"] = fields
    return field


def prediction_log_schema(spec: DatasetSpec) -> list[dict[str, Any]]:
    """One request per line: predict's ``record_request`` (shared/predict/service.py)."""
    per_target = spec.target_names
    return [
        _field("request_id", "STRING", "REQUIRED"),
        _field("time", "FLOAT64", "REQUIRED", description="Unix time the request was answered."),
        _field("status", "INT64", "REQUIRED", description="HTTP status of the answer."),
        _field("latency_ms", "FLOAT64", "REQUIRED"),
        _field("rows", "INT64", description="Observations in the request (answered requests)."),
        _field("versions", "RECORD", fields=[_field(t, "STRING") for t in per_target],
               description="Model version that served each target."),
        _field("inputs", "RECORD", description="The request's observations, one array entry per row.",
               fields=[_field("Timestamp", "STRING", "REPEATED"),
                       *(_field(f, "FLOAT64", "REPEATED") for f in spec.feature_names)]),
        _field("predictions", "RECORD", fields=[_field(t, "FLOAT64", "REPEATED") for t in per_target]),
        _field("variants", "RECORD", fields=[_field(t, "STRING", "REPEATED") for t in per_target],
               description="Model member that served each row (day_ahead, history, no_history)."),
        _field("intervals", "RECORD", fields=[
            _field(t, "RECORD", fields=[_field("lower", "FLOAT64", "REPEATED"), _field("upper", "FLOAT64", "REPEATED")])
            for t in per_target]),
        _field("error", "STRING", description="Why a request was refused."),
        _field("error_fields", "STRING", "REPEATED", description="The request fields the error names."),
        _field(names.PREDICTION_LOG_DROPPED, "INT64",
               description="Requests dropped (buffer full while storage failed) before this one."),
    ]


def write_all() -> list[Path]:
    """Write every spec's schema files; returns the paths written."""
    written = []
    for path in sorted(SPECS.glob("*.json")):
        spec = load_spec(path.stem)
        target = OUT / spec.name / "prediction_log.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(prediction_log_schema(spec), indent=2) + "\n", encoding="utf-8")
        written.append(target)
    return written


if __name__ == "__main__":
    for written_path in write_all():
        print(written_path.relative_to(PROJECT_ROOT))
