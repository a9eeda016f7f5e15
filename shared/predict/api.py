"""The predict function's HTTP interface: routes, auth, strict request validation, response shapes.

A request is one observation as the energy document defines it
(``Temperature``, ``Humidity``, ``WindSpeed``, ``GeneralDiffuseFlows``,
``DiffuseFlows``, ``Timestamp``) or ``{"instances": [...]}``; either may name
``targets``. Every offending field is reported with its path and the reason.
Validation is vectorised so a 10,000-row batch stays cheap.
"""

from __future__ import annotations

import hmac
import itertools
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.core.dataset_spec import DatasetSpec
from shared.core.features import CALENDAR_FIELDS
from shared.core.intervals import LEVEL
from shared.platform.errors import ForecastError, InvalidRequest, NotFound, Unauthorized, field_error
from shared.platform.http import (
    allow_method,
    allowed_with_extras,
    is_pubsub_push,
    read_json_object,
    read_push_envelope,
    status_for,
)
from shared.platform.timefmt import iso_utc, parse_iso_local
from shared.predict.serving import Predictions

if TYPE_CHECKING:
    from shared.predict.service import PredictService

TIMESTAMP_FIELD = "Timestamp"
PREDICT_PATHS = ("/", "/predict")
GET_PATHS = ("/health", "/openapi.json")
DOCS_PATH = "/docs"  # the Swagger UI page; its assets under /docs/<name>
MAX_REPORTED_ERRORS = 100
# The docs page loads nothing from another host; Swagger UI needs inline styles and data: images.
DOCS_CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")
_NUMBER = (int, float)
_NUMBER_TYPES = {int, float}
FORMATS = ("instances", "columns")
# Timestamps a forecast may be asked for: far wider than any series, narrow enough that
# every offset arithmetic and datetime64 conversion stays in range.
EARLIEST = np.datetime64("1900-01-01T00:00", "us")
LATEST = np.datetime64("2199-12-31T23:59:59.999999", "us")
# How a timestamp off the series' grid may be brought onto it (absent: it is refused).
ROUNDINGS = ("floor",)
# Request options, at the top level or, as Vertex AI callers send them, under ``parameters``.
OPTIONS = ("targets", "format", "rounding")
SINGLE_OPTIONS = ("targets", "rounding")


@dataclass(frozen=True)
class PredictRequest:
    """A validated request: timestamps (datetime64[m]), feature columns, targets."""

    single: bool
    timestamps: np.ndarray
    weather: dict[str, np.ndarray]
    targets: tuple[str, ...]
    instances: list[Mapping[str, Any]]
    format: str = "instances"


def _looks_like_datetime(text: str) -> bool:
    """``YYYY-MM-DD`` then a time: a date alone, a week date or an ordinal date names no time of day."""
    return len(text) >= 16 and text[4:5] == "-" and text[5:7].isdigit() and text[10:11] in ("T", " ")


def _parse_one_timestamp(value: str, spec: DatasetSpec) -> np.datetime64 | None:
    """The timestamp as local datetime64[us]; None when it is not a date and a time of day;
    NaT when out of range."""
    raw = value.strip()
    if not _looks_like_datetime(raw):
        return None
    try:
        parsed = parse_iso_local(raw, spec.utc_offset)
    except OverflowError:  # an offset that takes the time past year 1 or 9999
        return np.datetime64("NaT")
    if parsed is None:
        return None
    local = np.datetime64(parsed, "us")
    return local if EARLIEST <= local <= LATEST else np.datetime64("NaT")


def _fast_timestamps(values: list[Any], spec: DatasetSpec) -> np.ndarray | None:
    """All values parsed at once when they all look like date-times and parse in range, else None."""
    if not all(isinstance(v, str) and _looks_like_datetime(v) for v in values):
        return None
    aware = [v.endswith("Z") or v[-6] in "+-" for v in values]
    try:
        if any(aware):
            with warnings.catch_warnings():  # process-wide state: only when there is something to silence
                warnings.simplefilter("ignore")  # numpy notes it converts offsets to UTC
                parsed = np.array(values, dtype="datetime64[us]")
        else:
            parsed = np.array(values, dtype="datetime64[us]")
    except ValueError:
        return None
    if spec.utc_offset and any(aware):
        parsed[np.array(aware)] += np.timedelta64(int(spec.utc_offset.total_seconds() * 1e6), "us")
    return parsed if ((parsed >= EARLIEST) & (parsed <= LATEST)).all() else None


def _timestamps(values: list[Any], spec: DatasetSpec, errors: list[dict], path: Any,
                rounding: str | None) -> np.ndarray:
    """Local timestamps as datetime64[m] on the series' grid; off-grid ones are errors unless
    ``rounding`` is ``floor``."""
    parsed = _fast_timestamps(values, spec)
    if parsed is None:
        parsed = np.zeros(len(values), dtype="datetime64[us]")
        for i, value in enumerate(values):
            if value is _MISSING:
                errors.append(field_error(path(i, TIMESTAMP_FIELD), "missing"))
            elif not isinstance(value, str):
                errors.append(field_error(path(i, TIMESTAMP_FIELD), "wrong type", expected="ISO 8601 string"))
            elif (ts := _parse_one_timestamp(value, spec)) is None:
                errors.append(field_error(path(i, TIMESTAMP_FIELD), "unparseable timestamp", value=value[:64],
                                          expected="YYYY-MM-DDTHH:MM[:SS][Z|±HH:MM]"))
            elif np.isnat(ts):
                errors.append(field_error(path(i, TIMESTAMP_FIELD), "timestamp out of range", value=value[:64],
                                          min=str(EARLIEST), max=str(LATEST)))
            else:
                parsed[i] = ts
    step = int(spec.interval.total_seconds() * 1_000_000)
    off_grid = parsed.astype(np.int64) % step
    if rounding == "floor":
        parsed = parsed - off_grid.astype("timedelta64[us]")
    elif off_grid.any():
        minutes = spec.interval.total_seconds() / 60
        errors += [field_error(path(i, TIMESTAMP_FIELD), "not on the series' grid", value=str(values[i])[:64],
                               interval_minutes=minutes, hint='send "rounding": "floor" to floor it to the grid')
                   for i in np.flatnonzero(off_grid)[:MAX_REPORTED_ERRORS]]
    return parsed.astype("datetime64[m]")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _weather(instances: list[Any], spec: DatasetSpec, errors: list[dict], path: Any) -> dict[str, np.ndarray]:
    """The feature columns: every value checked at once in the usual all-valid request, field
    by field (naming each offending value) otherwise."""
    names = [c.name for c in spec.features]
    columns = [[inst.get(f) for inst in instances] for f in names]
    if set(map(type, itertools.chain.from_iterable(columns))) <= _NUMBER_TYPES:
        try:
            values = np.array(columns, dtype=float)  # (fields, rows): each field's values contiguous
        except OverflowError:  # an int beyond float's range: the field's check names it
            values = None
        low, high = np.array(spec.feature_range)[:, :, None]
        if values is not None and ((values >= low) & (values <= high)).all():  # NaN and infinities fail too
            return dict(zip(names, values, strict=True))
    return {c.name: _numbers(c.name, [inst.get(c.name, _MISSING) for inst in instances], c.min, c.max, errors, path)
            for c in spec.features}


def _numbers(name: str, values: list[Any], lo: float, hi: float, errors: list[dict], path: Any) -> np.ndarray:
    """One field's values; each offending one is an error naming it."""
    arr = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        if value is _MISSING:
            errors.append(field_error(path(i, name), "missing"))
        elif isinstance(value, bool) or not isinstance(value, _NUMBER):
            errors.append(field_error(path(i, name), "wrong type", expected="number"))
        elif not _finite(value):
            errors.append(field_error(path(i, name), "not a finite number"))
        elif not lo <= value <= hi:
            errors.append(field_error(path(i, name), "outside the physical range", value=value,
                                      min=lo, max=hi))
        else:
            arr[i] = value
    return arr


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def parse_request(body: Mapping[str, Any], spec: DatasetSpec, max_instances: int,
                  available_targets: Sequence[str]) -> PredictRequest:
    """Validate a predict body; InvalidRequest lists every offending field."""
    errors: list[dict] = []
    single = "instances" not in body
    fields = (*spec.feature_names, TIMESTAMP_FIELD)
    options, places = _options(body, single, errors)
    if single:
        # One observation takes ``targets`` and ``rounding`` beside its fields (``format`` is a batch's).
        instances: list[Any] = [{k: v for k, v in body.items() if k not in SINGLE_OPTIONS}]

        def path(i: int, name: str) -> str:
            return name
    else:
        instances = body["instances"]
        errors += [field_error(k, "unknown field")
                   for k in sorted(set(body) - {"instances", "parameters", *OPTIONS})]
        if not isinstance(instances, list) or not instances:
            raise InvalidRequest("invalid request", [*errors, field_error(
                "instances", "must be a non-empty list of observations")])
        if len(instances) > max_instances:
            raise InvalidRequest("batch too large", [field_error(
                "instances", "batch too large", count=len(instances), max=max_instances)])

        def path(i: int, name: str) -> str:
            return f"instances[{i}].{name}"

    targets = _targets(options.get("targets"), places.get("targets", "targets"), spec, available_targets, errors)
    response_format = options.get("format", "instances") if not single else "instances"
    if response_format not in FORMATS:
        errors.append(field_error(places.get("format", "format"), "unknown response format", allowed=list(FORMATS)))
    rounding = options.get("rounding")
    if rounding is not None and rounding not in ROUNDINGS:
        errors.append(field_error(places["rounding"], "unknown rounding", allowed=list(ROUNDINGS)))
        rounding = None
    allowed = set(fields)
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            errors.append(field_error(f"instances[{i}]", "wrong type", expected="object"))
            instances[i] = {}
        elif not allowed.issuperset(inst):
            errors += [field_error(path(i, k) if not single else k, "unknown field")
                       for k in sorted(set(inst) - allowed)]
    weather = _weather(instances, spec, errors, path)
    timestamps = _timestamps([inst.get(TIMESTAMP_FIELD, _MISSING) for inst in instances], spec,
                             errors, path, rounding)
    if errors:
        raise InvalidRequest("invalid request", errors[:MAX_REPORTED_ERRORS]
                       + ([{"field": "...", "reason": f"{len(errors) - MAX_REPORTED_ERRORS} more errors"}]
                          if len(errors) > MAX_REPORTED_ERRORS else []))
    return PredictRequest(single, timestamps, weather, targets, instances, response_format)


def _options(body: Mapping[str, Any], single: bool,
             errors: list[dict]) -> tuple[dict[str, Any], dict[str, str]]:
    """``targets``, ``format`` and ``rounding`` from the top level or from Vertex AI's
    ``parameters`` object (a batch only), and where each was given (``format`` or
    ``parameters.format``, for error paths); one given in both places is an error."""
    options: dict[str, Any] = {}
    places: dict[str, str] = {}
    for name in SINGLE_OPTIONS if single else OPTIONS:
        if name in body:
            options[name], places[name] = body[name], name
    if single or "parameters" not in body:
        return options, places
    parameters = body["parameters"]
    if not isinstance(parameters, dict):
        errors.append(field_error("parameters", "wrong type", expected="object"))
        return options, places
    errors += [field_error(f"parameters.{k}", "unknown field") for k in sorted(set(parameters) - set(OPTIONS))]
    for name in OPTIONS:
        if name not in parameters:
            continue
        if name in options:
            errors.append(field_error(f"parameters.{name}", "given twice", also=name))
        options[name], places[name] = parameters[name], f"parameters.{name}"
    return options, places


def _targets(value: Any, where: str, spec: DatasetSpec, available: Sequence[str],
             errors: list[dict]) -> tuple[str, ...]:
    if value is None:
        return tuple(available) or tuple(spec.target_names)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        errors.append(field_error(where, "wrong type", expected="non-empty list of target names"))
        return ()
    unknown = [i for i, v in enumerate(value) if v not in spec.target_names]
    errors += [field_error(f"{where}[{i}]", "unknown target", value=value[i], allowed=spec.target_names)
               for i in unknown]
    return tuple(dict.fromkeys(value))


def _nullable(values: np.ndarray) -> list[list[float | None]]:
    """Rounded values as nested lists, NaN (no interval for that row) as null."""
    rounded = np.round(values, 4).tolist()
    if not np.isnan(values).any():
        return rounded
    return [[None if math.isnan(v) else v for v in inner] for inner in rounded]


def response(request: PredictRequest, result: Predictions, versions: Mapping[str, str],
             spec: DatasetSpec) -> dict[str, Any]:
    """The response body: ``predictions``, one item per observation, for one observation and
    for many alike; a single observation's answer adds the energy document's fields
    (``legacy_fields``).

    One snapshot serves a whole request, so the model version of each target is the
    same for every instance and is given once (``model_versions``). A batch may ask
    for ``"format": "columns"``: one list per field instead of one object per
    instance, several times cheaper to encode and decode for large batches.
    """
    targets = result.targets
    body: dict[str, Any] = {"prediction_timestamp": iso_utc(timespec="microseconds"),
                            "model_versions": {t: versions[t] for t in targets}, "interval_level": LEVEL}
    # One list per target (per field for the calendar), as the columns format sends them;
    # instances are zipped from them row by row.
    values = np.round(result.values.T, 4).tolist()
    lower, upper = _nullable(result.lower.T), _nullable(result.upper.T)
    variants, calendar = result.variant_names().T.tolist(), result.calendar.T.tolist()
    if request.format == "columns":
        body.update(columns={"predictions": dict(zip(targets, values, strict=True)),
                             "intervals": {t: {"lower": lo, "upper": up}
                                           for t, lo, up in zip(targets, lower, upper, strict=True)},
                             "variants": dict(zip(targets, variants, strict=True)),
                             "derived_features": dict(zip(CALENDAR_FIELDS, calendar, strict=True))})
        return body
    body["predictions"] = [
        {"predictions": dict(zip(targets, row, strict=True)),
         "intervals": {t: {"lower": lo, "upper": up} for t, lo, up in zip(targets, los, ups, strict=True)},
         "variants": dict(zip(targets, names, strict=True)),
         "derived_features": dict(zip(CALENDAR_FIELDS, cal, strict=True))}
        for row, los, ups, names, cal in zip(*(zip(*lists, strict=True) for lists in (values, lower, upper, variants,
                                                                                       calendar)), strict=True)]
    if request.single:
        body.update(legacy_fields(request, body["predictions"][0], versions, spec))
    return body


def legacy_fields(request: PredictRequest, item: Mapping[str, Any], versions: Mapping[str, str],
                  spec: DatasetSpec) -> dict[str, Any]:
    """What the energy document's callers read from a single observation's answer, beside the
    common shape: its ``input_features``, the legacy prediction field and ``model_version``."""
    fields: dict[str, Any] = {"input_features": {
        **{f: request.weather[f][0].item() for f in spec.feature_names},
        TIMESTAMP_FIELD: request.instances[0][TIMESTAMP_FIELD], **item["derived_features"]}}
    legacy = spec.section("api")
    legacy_target = legacy.get("legacy_target")
    main_target = str(legacy_target) if legacy_target in request.targets else request.targets[0]
    if legacy.get("legacy_prediction_field") and main_target == legacy_target:
        fields[legacy["legacy_prediction_field"]] = item["predictions"][main_target]
    fields["model_version"] = versions[main_target]
    return fields


class PredictApi:
    """Routes one HTTP request to the service and shapes its answer."""

    def __init__(self, service: PredictService, api_key: str = "") -> None:
        # openapi imports this module's field names, so it is imported here, not at the top.
        from shared.predict.openapi import DocsAssets, document

        self.service = service
        self.api_key = api_key
        self.openapi = document(service.spec, service.max_instances, api_key_required=bool(api_key),
                                max_body_bytes=service.settings.max_request_bytes)
        self.docs_assets = DocsAssets()  # found and read on the first /docs request, not at cold start
        self._docs_page: str | None = None

    def handle(self, request: Any) -> tuple[Any, int, dict[str, str]]:
        """Dispatch one HTTP request: (body, status, extra headers)."""
        if is_pubsub_push(request):
            read_push_envelope(request)
            return self.service.model_updated(), 200, {}
        path = request.path.rstrip("/") or "/"
        if path in PREDICT_PATHS:
            methods: tuple[str, ...] = ("POST",)
        elif path in GET_PATHS or path == DOCS_PATH or path.startswith(DOCS_PATH + "/"):
            methods = ("GET",)
        else:
            raise NotFound(f"no route {path}")
        if allow_method(request, methods) is None:  # OPTIONS
            return "", 204, {"Allow": ", ".join(allowed_with_extras(methods))}
        if path in PREDICT_PATHS:
            self._authorize(request)
            return self.predict(request)
        if path == "/health":
            body = self.service.health()
            return body, 200 if body["status"] == "ok" else 503, {}
        if path == "/openapi.json":
            return self.openapi, 200, {}
        return self.docs(path, request.path.endswith("/"))

    def docs(self, path: str, trailing_slash: bool = False) -> tuple[str, int, dict[str, str]]:
        """The Swagger UI page or one of its allow-listed assets (read from the package on first use)."""
        if path == DOCS_PATH:
            if trailing_slash:  # the page's relative URLs resolve from /docs, not /docs/
                return "", 308, {"Location": "../docs"}
            if self._docs_page is None:
                from shared.predict.openapi import docs_page

                self._docs_page = docs_page(self.openapi, self.docs_assets.version())
            return self._docs_page, 200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache",
                                          "Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff"}
        text, content_type = self.docs_assets.get(path[len(DOCS_PATH) + 1:])
        # Asset URLs carry Swagger UI's version (?v=), so a new pin is a new URL.
        return text, 200, {"Content-Type": content_type, "Cache-Control": "public, max-age=31536000, immutable",
                           "X-Content-Type-Options": "nosniff"}

    def _authorize(self, request: Any) -> None:
        if self.api_key:
            given = request.headers.get("X-API-Key", "")
            if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                raise Unauthorized("missing or wrong API key")

    def predict(self, request: Any) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Parse, predict, answer; every outcome (errors too) goes to the prediction log."""
        started = time.perf_counter()
        status, details = 500, {}
        try:
            service = self.service
            parsed = parse_request(read_json_object(request, allow_empty=False), service.spec,
                                   service.max_instances, service.available_targets())
            served = service.predict(parsed)
            body = response(parsed, served.result, served.versions, service.spec)
            status, details = 200, service.logged(parsed, served)
            return body, 200, {}
        except ForecastError as exc:
            status = status_for(exc)
            details = {"error": exc.message,
                       "error_fields": [e.get("field") for e in getattr(exc, "errors", [])][:20]}
            raise
        finally:
            self.service.record_request(status, (time.perf_counter() - started) * 1000, details)

