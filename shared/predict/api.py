"""The predict API's requests and responses: strict validation, response shapes.

A request is one observation as the energy document defines it
(``Temperature``, ``Humidity``, ``WindSpeed``, ``GeneralDiffuseFlows``,
``DiffuseFlows``, ``Timestamp``) or ``{"instances": [...]}``; either may name
``targets``. Every offending field is reported with its path and the reason.
Validation is vectorised so a 10,000-row batch stays cheap.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import numpy as np

from shared.core.dataset_spec import DatasetSpec
from shared.core.features import CALENDAR_FIELDS
from shared.platform.http import ApiError, field_error
from shared.predict.serving import Predictions
from shared.platform.timefmt import iso_utc

TIMESTAMP_FIELD = "Timestamp"
MAX_REPORTED_ERRORS = 100
_NUMBER = (int, float)
_NUMBER_TYPES = {int, float}
FORMATS = ("instances", "columns")


@dataclass(frozen=True)
class PredictRequest:
    """A validated request: timestamps (datetime64[m]), feature columns, targets."""

    single: bool
    timestamps: np.ndarray
    weather: dict[str, np.ndarray]
    targets: tuple[str, ...]
    instances: list[Mapping[str, Any]]
    format: str = "instances"


def _parse_one_timestamp(value: Any, spec: DatasetSpec) -> np.datetime64 | None:
    if not isinstance(value, str) or len(value) < 10 or value[4:5] != "-":
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone(spec.utc_offset)).replace(tzinfo=None)
    return np.datetime64(parsed.replace(second=0, microsecond=0), "m")


def _timestamps(values: list[Any], spec: DatasetSpec, errors: list[dict], path: Any) -> np.ndarray:
    if all(isinstance(v, str) and len(v) >= 16 and v[4:5] == "-" for v in values):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numpy notes it converts offsets to UTC
                parsed = np.array(values, dtype="datetime64[m]")
            if spec.utc_offset:
                aware = np.array([v.endswith("Z") or v[-6] in "+-" for v in values])
                parsed[aware] += np.timedelta64(int(spec.utc_offset.total_seconds() // 60), "m")
            return parsed
        except ValueError:
            pass
    out = np.empty(len(values), dtype="datetime64[m]")
    for i, value in enumerate(values):
        if value is _MISSING:
            errors.append(field_error(path(i, TIMESTAMP_FIELD), "missing"))
        elif not isinstance(value, str):
            errors.append(field_error(path(i, TIMESTAMP_FIELD), "wrong type", expected="ISO 8601 string"))
        elif (ts := _parse_one_timestamp(value, spec)) is None:
            errors.append(field_error(path(i, TIMESTAMP_FIELD), "unparseable timestamp", value=value[:64]))
        else:
            out[i] = ts
    return out


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _numbers(name: str, values: list[Any], lo: float, hi: float, errors: list[dict], path: Any) -> np.ndarray:
    if set(map(type, values)) <= _NUMBER_TYPES:
        arr = np.array(values, dtype=float)
        bad = ~np.isfinite(arr) | (arr < lo) | (arr > hi)
        if not bad.any():
            return arr
    arr = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        if value is _MISSING:
            errors.append(field_error(path(i, name), "missing"))
        elif isinstance(value, bool) or not isinstance(value, _NUMBER):
            errors.append(field_error(path(i, name), "wrong type", expected="number"))
        elif not math.isfinite(value):
            errors.append(field_error(path(i, name), "not a finite number"))
        elif not lo <= value <= hi:
            errors.append(field_error(path(i, name), "outside the physical range", value=value,
                                      min=lo, max=hi))
        else:
            arr[i] = value
    return arr


def parse_request(body: Mapping[str, Any], spec: DatasetSpec, max_instances: int,
                  available_targets: Sequence[str]) -> PredictRequest:
    """Validate a predict body; ApiError(400) lists every offending field."""
    errors: list[dict] = []
    single = "instances" not in body
    fields = (*spec.feature_names, TIMESTAMP_FIELD)
    if single:
        instances: list[Any] = [{k: v for k, v in body.items() if k != "targets"}]

        def path(i: int, name: str) -> str:
            return name
    else:
        instances = body["instances"]
        errors += [field_error(k, "unknown field") for k in sorted(set(body) - {"instances", "targets", "format"})]
        if not isinstance(instances, list) or not instances:
            raise ApiError(400, "invalid request", [*errors, field_error(
                "instances", "must be a non-empty list of observations")])
        if len(instances) > max_instances:
            raise ApiError(400, "batch too large", [field_error(
                "instances", "batch too large", count=len(instances), max=max_instances)])

        def path(i: int, name: str) -> str:
            return f"instances[{i}].{name}"

    targets = _targets(body.get("targets"), spec, available_targets, errors)
    response_format = body.get("format", "instances") if not single else "instances"
    if response_format not in FORMATS:
        errors.append(field_error("format", "unknown response format", allowed=list(FORMATS)))
    allowed = set(fields)
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            errors.append(field_error(f"instances[{i}]", "wrong type", expected="object"))
            instances[i] = {}
        elif not allowed.issuperset(inst):
            errors += [field_error(path(i, k) if not single else k, "unknown field")
                       for k in sorted(set(inst) - allowed)]
    weather = {f: _numbers(f, [inst.get(f, _MISSING) for inst in instances], spec.column(f).min,
                           spec.column(f).max, errors, path) for f in spec.feature_names}
    timestamps = _timestamps([inst.get(TIMESTAMP_FIELD, _MISSING) for inst in instances], spec,
                             errors, path)
    if errors:
        raise ApiError(400, "invalid request", errors[:MAX_REPORTED_ERRORS]
                       + ([{"field": "...", "reason": f"{len(errors) - MAX_REPORTED_ERRORS} more errors"}]
                          if len(errors) > MAX_REPORTED_ERRORS else []))
    return PredictRequest(single, timestamps, weather, targets, instances, response_format)


def _targets(value: Any, spec: DatasetSpec, available: Sequence[str], errors: list[dict]) -> tuple[str, ...]:
    if value is None:
        return tuple(available) or tuple(spec.target_names)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        errors.append(field_error("targets", "wrong type", expected="non-empty list of target names"))
        return ()
    unknown = [i for i, v in enumerate(value) if v not in spec.target_names]
    errors += [field_error(f"targets[{i}]", "unknown target", value=value[i], allowed=spec.target_names)
               for i in unknown]
    return tuple(dict.fromkeys(value))


def response(request: PredictRequest, result: Predictions, versions: Mapping[str, str],
             spec: DatasetSpec) -> dict[str, Any]:
    """The response body.

    One snapshot serves a whole request, so the model version of each target is the
    same for every instance and is given once (``model_versions``). A batch may ask
    for ``"format": "columns"``: one list per field instead of one object per
    instance, several times cheaper to encode and decode for large batches.
    """
    targets = request.targets
    values = {t: np.round(result.values[t], 4).tolist() for t in targets}
    variants = {t: np.where(result.history_used[t], "history", "no_history").tolist() for t in targets}
    calendar = {k: result.calendar[k].tolist() for k in CALENDAR_FIELDS}
    body: dict[str, Any] = {"prediction_timestamp": iso_utc(timespec="microseconds"),
                            "model_versions": {t: versions[t] for t in targets}}
    if request.format == "columns":
        body.update(columns={"predictions": values, "variants": variants, "derived_features": calendar})
        return body
    rows = range(len(request.timestamps))
    pred_rows = [dict(zip(targets, r)) for r in zip(*(values[t] for t in targets))]
    variant_rows = [dict(zip(targets, r)) for r in zip(*(variants[t] for t in targets))]
    calendar_rows = [dict(zip(CALENDAR_FIELDS, r)) for r in zip(*(calendar[k] for k in CALENDAR_FIELDS))]
    items = [{"predictions": pred_rows[i], "variants": variant_rows[i], "derived_features": calendar_rows[i]}
             for i in rows]
    if not request.single:
        body["predictions"] = items
        return body
    item = items[0]
    body.update(item)
    body["input_features"] = {**{f: request.weather[f][0].item() for f in spec.feature_names},
                              TIMESTAMP_FIELD: request.instances[0][TIMESTAMP_FIELD],
                              **item["derived_features"]}
    legacy = spec.section("api")
    main_target = legacy.get("legacy_target") if legacy.get("legacy_target") in targets else targets[0]
    if legacy.get("legacy_prediction_field") and main_target == legacy.get("legacy_target"):
        body[legacy["legacy_prediction_field"]] = item["predictions"][main_target]
    body["model_version"] = versions[main_target]
    return body
