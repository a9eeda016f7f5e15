"""The predict API as OpenAPI 3.1 (``GET /openapi.json``) and its interactive docs (``GET /docs``).

Built from the dataset spec, so each feature's physical range in the document is
the one validation enforces, and the request examples are the real observations
of the spec's ``examples`` section. The example responses and the example 400 are
made by the service's own code (``parse_request``, ``response``, ``error_body``),
so they have the shapes the service answers. OpenAPI 3.1 schemas are JSON Schema
2020-12, which the tests use to check real responses against this document.

``/docs`` is Swagger UI, served by the function itself from the pinned
``flask-swagger-ui`` package (its ``dist`` files; nothing of it is imported, and
nothing is loaded from another host, so the page works without internet). The
files are found and read only when ``/docs`` or an asset is first requested:
predict's cold start does not pay for them.
"""

from __future__ import annotations

import html
import importlib.util
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.core.dataset_spec import DatasetSpec
from shared.core.features import CALENDAR_FIELDS, VARIANTS, calendar
from shared.core.intervals import LEVEL
from shared.platform.errors import InvalidRequest, NotFound, Unavailable
from shared.platform.http import DEFAULT_MAX_BODY_BYTES, error_body
from shared.predict.api import FORMATS, ROUNDINGS, TIMESTAMP_FIELD, parse_request, response
from shared.predict.serving import Predictions

VARIANT_NAMES = list(VARIANTS)
API_KEY_HEADER = "X-API-Key"
DOCS_PACKAGE = "flask_swagger_ui"  # ships Swagger UI's dist files; located, never imported
DOCS_ASSETS = {"swagger-ui.css": "text/css; charset=utf-8",  # the only files /docs/<name> serves
               "swagger-ui-bundle.js": "text/javascript; charset=utf-8"}
EXAMPLE_VERSION = "{target}-000012-3f9a1c2e"  # the shape of a registry version: target, dataset seq, digest
FIELD_ERROR_DETAILS = {
    "value": {"description": "the offending value (strings cut to 64 characters)"},
    "min": {"type": "number", "description": "lower bound of the physical range"},
    "max": {"type": "number", "description": "upper bound of the physical range"},
    "expected": {"type": "string", "description": "the expected type"},
    "allowed": {"type": "array", "items": {"type": "string"}, "description": "the accepted values"},
    "count": {"type": "integer", "description": "the number of instances sent"},
    "detail": {"type": "string", "description": "the JSON parser's message"},
}


def _ref(name: str, kind: str = "schemas") -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _map(of: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": {k: of for k in keys}, "additionalProperties": False}


def spec_examples(spec: DatasetSpec) -> list[dict[str, Any]]:
    """The spec's example observations: ``summary``, ``observation`` and the recorded ``actual``."""
    entries = spec.section("examples").get("observations", [])
    return [dict(e) for e in entries if isinstance(e, Mapping) and isinstance(e.get("observation"), Mapping)]


def _response_example(spec: DatasetSpec, body: dict[str, Any], actuals: Sequence[Mapping[str, Any]]) -> Any:
    """What the service answers to ``body`` when each target predicts the consumption recorded then."""
    request = parse_request(json.loads(json.dumps(body)), spec, len(actuals), spec.target_names)
    values = np.array([[float(a[t]) for t in request.targets] for a in actuals])
    cal = calendar(request.timestamps)
    # The day-ahead variant served every row; an interval as wide as the walk-forward's
    # typical one (about -6 % / +7 %), for the shape.
    result = Predictions(request.targets, values, np.zeros(values.shape, dtype=np.intp),
                         np.round(values * 0.94, 1), np.round(values * 1.07, 1),
                         np.column_stack([cal[k] for k in CALENDAR_FIELDS]))
    versions = {t: EXAMPLE_VERSION.format(target=t) for t in request.targets}
    return response(request, result, versions, spec)


def _examples(spec: DatasetSpec) -> dict[str, dict[str, Any]]:
    """Request, 200 and 400 examples from the spec's real observations (empty when it has none)."""
    entries = spec_examples(spec)
    if not entries:
        return {"request": {}, "200": {}, "400": {}}
    observations = [dict(e["observation"]) for e in entries]
    actuals: list[Any] = [e.get("actual") for e in entries]
    summaries = [str(e.get("summary", f"observation {i + 1}")) for i, e in enumerate(entries)]
    both = " and ".join(s.split(" (")[0].lower() for s in summaries)
    cases = [(f"single{i + 1}", f"One observation: {summary}", obs, [actual])
             for i, (summary, obs, actual) in enumerate(zip(summaries, observations, actuals, strict=True))]
    cases += [("oneTarget", f"One observation, one target: {summaries[0]}",
               {**observations[0], "targets": [spec.target_names[0]]}, actuals[:1]),
              ("batch", f"A batch ({both})", {"instances": observations}, actuals),
              ("columns", f"A batch, answered column by column ({both})",
               {"instances": observations, "format": "columns"}, actuals)]
    out: dict[str, dict[str, Any]] = {"request": {name: {"summary": summary, "value": value}
                                                  for name, summary, value, _ in cases}, "200": {}, "400": {}}
    if all(isinstance(a, Mapping) and set(spec.target_names) <= set(a) for a in actuals):
        out["200"] = {name: {"summary": f"{summary}; the predictions shown are the consumption recorded then",
                             "value": _response_example(spec, value, rows)}
                      for name, summary, value, rows in cases}
    for feature in spec.features[:1]:  # one field out of range and the timestamp left out
        bad = {k: v for k, v in observations[0].items() if k != TIMESTAMP_FIELD}
        bad[feature.name] = feature.max * 2
        try:
            parse_request(bad, spec, 1, spec.target_names)
        except InvalidRequest as exc:
            out["400"] = {"invalidFields": {"summary": f"{feature.name} out of range and no {TIMESTAMP_FIELD}",
                                            "value": error_body(exc)}}
    return out


def _first_value(examples: Mapping[str, Any]) -> Any:
    """The value of the first of named OpenAPI examples (None when there is none)."""
    return next((e.get("value") for e in examples.values()), None)


def _minutes(spec: DatasetSpec) -> str:
    return f"{spec.interval.total_seconds() / 60:g}"


def _error(description: str, schema: str = "Error", example: dict[str, Any] | None = None,
           headers: dict[str, Any] | None = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": _ref(schema)}
    if example is not None:
        media["example"] = example
    return {"description": description, "content": {"application/json": media},
            **({"headers": headers} if headers else {})}


def _description(spec: DatasetSpec, max_instances: int, api_key_required: bool,
                 requests: Mapping[str, Any], max_body_bytes: int) -> str:
    example = _first_value(requests)
    curl = ["curl -X POST \"$URL/predict\" \\", "  -H 'Content-Type: application/json' \\"]
    if api_key_required:
        curl.append(f"  -H \"{API_KEY_HEADER}: $PREDICT_API_KEY\" \\")
    body = json.dumps(example, indent=2).replace("\n", "\n  ") if example else ""
    curl.append(f"  -d '{body}'" if example else "  -d @observation.json")  # one field a line: fits the page
    key = (f"This deployment requires the `{API_KEY_HEADER}` header on `POST /predict` (the *Authorize* "
           "button sets it for *Try it out*)." if api_key_required else
           f"This deployment is configured without an API key; with `PREDICT_API_KEY` set, `POST /predict` "
           f"requires the `{API_KEY_HEADER}` header.")
    return "\n".join([
        spec.description, "",
        f"Send one observation, or `{{\"instances\": [...]}}` of up to {max_instances:,} observations. "
        "Each feature must lie inside its physical range (see the schemas); `Timestamp` is ISO 8601 in "
        f"the series' local time (an offset is converted) and on its {_minutes(spec)}-minute grid, unless "
        "`\"rounding\": \"floor\"` asks to floor it. A batch may also carry its options under "
        "`parameters`, as Vertex AI prediction callers send them.", "",
        "```", *curl, "```", "",
        f"In GCP the function is private: also send `-H \"Authorization: Bearer $(gcloud auth "
        f"print-identity-token)\"`. {key}", "",
        "| status | when | body |", "|---|---|---|",
        "| 200 | predictions | `SingleResponse` or `BatchResponse` |",
        "| 400 | invalid request: every offending field | `ValidationError`: `error` and `errors` "
        "(`field`, `reason` and details) |",
        f"| 401 | missing or wrong `{API_KEY_HEADER}` (only when a key is configured) | `Error` |",
        "| 404 | no such path | `Error` |",
        "| 405 | a method the path does not take (the `Allow` header names the right one) | `Error` |",
        f"| 413 | a body over {max_body_bytes:,} bytes, refused before it is read | `ValidationError` "
        "(field `body`, `max_bytes`) |",
        "| 415 | a request body that is not `application/json` | `Error` |",
        "| 500 | the service's own fault (`internal error`) | `Error` |",
        "| 503 | no model loaded for a requested target (`GET /health` says which) | `Error` |",
    ])


def document(spec: DatasetSpec, max_instances: int, api_key_required: bool = False,
             max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> dict[str, Any]:
    """The OpenAPI document of the predict function (``api_key_required``: a key is configured)."""
    targets = spec.target_names
    examples = _examples(spec)
    observed = [e["observation"] for e in spec_examples(spec)]

    def seen(name: str) -> dict[str, Any]:
        values = [o[name] for o in observed if name in o]
        return {"examples": values} if values else {}

    observation = {
        **{c.name: {"type": "number", "minimum": c.min, "maximum": c.max,
                    "description": f"{c.unit}; physical range {c.min} to {c.max}", **seen(c.name)}
           for c in spec.features},
        TIMESTAMP_FIELD: {"type": "string", "description": "ISO 8601 date-time; an offset is converted "
                          "to the series' local time, seconds are ignored", **seen(TIMESTAMP_FIELD)},
    }
    required = [*spec.feature_names, TIMESTAMP_FIELD]
    target_list = {"type": "array", "items": {"type": "string", "enum": targets}, "minItems": 1,
                   "description": "targets to predict (default: all)"}
    versions = {**_map({"type": "string"}, targets),
                "description": "the version of each target's model; one snapshot serves a whole request"}
    bound = {"type": ["number", "null"]}
    interval = {"type": "object", "required": ["lower", "upper"], "additionalProperties": False,
                "properties": {"lower": bound, "upper": bound}}
    interval_text = (f"a {LEVEL:.0%} prediction interval per target, from the model's recent out-of-sample "
                     "errors (null when the model has none for the variant that served the row)")
    variant_text = ("which model served the row: day_ahead (the previous calendar day is complete in the "
                    "actuals), history (the rolling fallback: actuals up to a day before the slot), "
                    "no_history (weather and calendar only: too far from the actuals)")
    item_properties = {
        "predictions": _map({"type": "number"}, targets),
        "intervals": {**_map(interval, targets), "description": interval_text},
        "variants": {**_map({"type": "string", "enum": VARIANT_NAMES}, targets), "description": variant_text},
        "derived_features": {**_map({"type": "integer"}, list(CALENDAR_FIELDS)), "required": list(CALENDAR_FIELDS),
                             "description": "calendar fields of the timestamp (DayWeek 1 = Monday)"},
    }
    level = {"type": "number", "const": LEVEL, "description": "the coverage the intervals aim at"}
    legacy = spec.section("api").get("legacy_prediction_field")
    legacy_properties = {
        "model_version": {"type": "string", "description": "the version of the legacy target's model"},
        "input_features": {"type": "object", "description": "the observation as read, with its calendar fields"},
        **({legacy: {"type": "number", "description": "`predictions[0].predictions` of the legacy target"}}
           if legacy else {})}
    rounding = {"type": "string", "enum": list(ROUNDINGS),
                "description": f"bring a `Timestamp` off the series' {_minutes(spec)}-minute grid onto it "
                               "(`floor`); without it such a timestamp is refused"}
    batch_options = {"targets": target_list, "rounding": rounding,
                     "format": {"type": "string", "enum": list(FORMATS), "default": FORMATS[0],
                                "description": "columns: one list per field"}}
    schemas = {
        "Observation": {"type": "object", "properties": observation, "required": required,
                        "additionalProperties": False},
        "SingleRequest": {"type": "object", "properties": {**observation, "targets": target_list,
                                                          "rounding": rounding},
                          "required": required, "additionalProperties": False},
        "BatchRequest": {"type": "object", "required": ["instances"], "additionalProperties": False,
                         "properties": {"instances": {"type": "array", "items": _ref("Observation"),
                                                      "minItems": 1, "maxItems": max_instances},
                                        **batch_options,
                                        "parameters": {
                                            "type": "object", "additionalProperties": False,
                                            "properties": batch_options,
                                            "description": "the same options as Vertex AI prediction callers "
                                                           "send them; an option may not be given twice"}}},
        "PredictionItem": {"type": "object", "properties": item_properties,
                           "required": list(item_properties), "additionalProperties": False},
        "SingleResponse": {
            "type": "object", "additionalProperties": False,
            "description": "the batch answer's shape with one item, plus the energy document's fields",
            "required": ["predictions", "prediction_timestamp", "input_features", "model_version",
                         "model_versions", "interval_level"],
            "properties": {"predictions": {"type": "array", "items": _ref("PredictionItem"), "minItems": 1,
                                           "maxItems": 1},
                           "model_versions": versions, "interval_level": level,
                           "prediction_timestamp": {"type": "string", "format": "date-time"},
                           **legacy_properties}},
        "LegacySingleFields": {
            "type": "object", "description": "kept for the energy document's callers of one observation: "
                                             "the same values as `predictions[0]` and `model_versions`",
            "properties": legacy_properties},
        "BatchResponse": {"type": "object", "additionalProperties": False,
                          "required": ["prediction_timestamp", "model_versions", "interval_level"],
                          "oneOf": [{"required": ["predictions"]}, {"required": ["columns"]}],
                          "properties": {
                              "prediction_timestamp": {"type": "string", "format": "date-time"},
                              "model_versions": versions, "interval_level": level,
                              "predictions": {"type": "array", "items": _ref("PredictionItem"),
                                              "description": "format instances (default): one item per instance"},
                              "columns": {"type": "object", "required": ["predictions", "intervals", "variants",
                                                                         "derived_features"],
                                          "additionalProperties": False,
                                          "description": "format columns: one list per field",
                                          "properties": {
                                              "predictions": _map({"type": "array",
                                                                   "items": {"type": "number"}}, targets),
                                              "intervals": {**_map({
                                                  "type": "object", "required": ["lower", "upper"],
                                                  "additionalProperties": False,
                                                  "properties": {"lower": {"type": "array", "items": bound},
                                                                 "upper": {"type": "array", "items": bound}}},
                                                  targets), "description": interval_text},
                                              "variants": _map({"type": "array", "items": {
                                                  "type": "string", "enum": VARIANT_NAMES}}, targets),
                                              "derived_features": _map({"type": "array", "items": {
                                                  "type": "integer"}}, list(CALENDAR_FIELDS))}}}},
        "Health": {"type": "object", "required": ["status", "targets", "seconds_since_pointer_check"],
                   "properties": {
                       "status": {"type": "string", "enum": ["ok", "unavailable"]},
                       "reason": {"type": "string"},
                       "targets": {"type": "object", "additionalProperties": {
                           "type": "object", "properties": {
                               "version": {"type": ["string", "null"]},
                               "loaded_at": {"type": ["string", "null"]},
                               "sha256": {"type": ["string", "null"]},
                               "error": {"type": "string"}}}},
                       "seconds_since_pointer_check": {"type": ["number", "null"]},
                       "actuals": {"type": "object"},
                       "errors": {"type": "object"},
                       "prediction_log": {
                           "type": "object", "description": "the request log monitor reads: records "
                           "waiting to be written, rows dropped while storage failed, failed writes",
                           "properties": {
                               "pending_records": {"type": "integer"}, "pending_rows": {"type": "integer"},
                               "max_rows": {"type": "integer"}, "dropped": {"type": "integer"},
                               "write_failures": {"type": "integer"},
                               "last_error": {"type": ["string", "null"]},
                               "last_written": {"type": ["string", "null"]}}}}},
        "FieldError": {"type": "object", "required": ["field", "reason"],
                       "properties": {
                           "field": {"type": "string", "description": "where: `Humidity`, `instances[3].Timestamp`, "
                                     "`targets[0]`, `body`; `...` when more errors were left out"},
                           "reason": {"type": "string", "description": "missing, wrong type, not a finite number, "
                                      "outside the physical range, unparseable timestamp, unknown field, unknown "
                                      "target, batch too large, unknown response format, must be a non-empty list "
                                      "of observations, invalid JSON, or `N more errors`"},
                           **FIELD_ERROR_DETAILS}},
        "Error": {"type": "object", "required": ["error"], "additionalProperties": False, "properties": {
            "error": {"type": "string"},
            "errors": {"type": "array", "items": _ref("FieldError")}}},
        "PushEnvelope": {"type": "object", "required": ["message"], "properties": {
            "subscription": {"type": "string"},
            "message": {"type": "object", "required": ["messageId"], "properties": {
                "data": {"type": "string", "contentEncoding": "base64"}, "messageId": {"type": "string"},
                "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
                "publishTime": {"type": "string", "format": "date-time"}}}}},
        "ValidationError": {"type": "object", "required": ["error", "errors"], "additionalProperties": False,
                            "properties": {"error": {"type": "string"},
                                           "errors": {"type": "array", "items": _ref("FieldError"), "minItems": 1,
                                                      "maxItems": 101}}},
    }
    allow = {"Allow": {"description": "the method the path takes", "schema": {"type": "string"}}}
    responses = {
        "ValidationError": _error("invalid request: every offending field with its reason (at most 100, "
                                  "then one `...` entry)", "ValidationError",
                                  _first_value(examples["400"])),
        "Unauthorized": _error(f"missing or wrong `{API_KEY_HEADER}`", example={"error": "missing or wrong API key"}),
        "NotFound": _error("no such path", example={"error": "no route /nowhere"}),
        "MethodNotAllowed": _error("a method the path does not take", headers=allow,
                                   example={"error": "method GET not allowed"}),
        "PayloadTooLarge": _error(
            f"the body is over {max_body_bytes:,} bytes (`MAX_REQUEST_BYTES`); refused before it is read",
            "ValidationError", example={"error": f"request body larger than {max_body_bytes} bytes", "errors": [
                {"field": "body", "reason": "too large", "max_bytes": max_body_bytes}]}),
        "UnsupportedMediaType": _error("the body is not application/json", example={
            "error": "Content-Type must be application/json, not text/plain"}),
        "Unavailable": _error("no model loaded for a requested target", example={
            "error": f"no production model loaded for {targets[-1]}"}),
        "InternalError": _error("the service's own fault (logged with the trace id)",
                                example={"error": "internal error"}),
    }
    request_media: dict[str, Any] = {"schema": {"oneOf": [_ref("SingleRequest"), _ref("BatchRequest")]}}
    if examples["request"]:
        request_media["examples"] = examples["request"]
    ok_media: dict[str, Any] = {"schema": {"oneOf": [_ref("SingleResponse"), _ref("BatchResponse")]}}
    if examples["200"]:
        ok_media["examples"] = examples["200"]
    predict_responses = {
        "200": {"description": "predictions: one observation (`SingleResponse`), or a batch (`BatchResponse`, "
                               "one item per instance or, with `format: columns`, one list per field)",
                "content": {"application/json": ok_media}},
        "400": _ref("ValidationError", "responses"),
        **({"401": _ref("Unauthorized", "responses")} if api_key_required else {}),
        "413": _ref("PayloadTooLarge", "responses"),
        "415": _ref("UnsupportedMediaType", "responses"),
        "500": _ref("InternalError", "responses"),
        "503": _ref("Unavailable", "responses"),
    }
    predict_op = {
        "tags": ["predict"],
        "summary": "Predict consumption for one observation or a batch",
        "requestBody": {"required": True, "content": {"application/json": request_media}},
        "responses": predict_responses,
        **({"security": [{"apiKey": []}]} if api_key_required else {}),
    }
    components: dict[str, Any] = {"schemas": schemas, "responses": responses}
    if api_key_required:
        components["securitySchemes"] = {"apiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER,
                                                    "description": "the service's PREDICT_API_KEY"}}
    health = {"description": "", "content": {"application/json": {"schema": _ref("Health")}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{spec.name} forecasting — predict", "version": "1",
                 "description": _description(spec, max_instances, api_key_required, examples["request"],
                                                max_body_bytes)},
        # Relative: the document is served by the deployment it describes (its URL differs per project).
        "servers": [{"url": "/", "description": "this deployment"}],
        "tags": [{"name": "predict"}, {"name": "service", "description": "health and documentation"},
                 {"name": "internal", "description": "called by Pub/Sub, not by clients"}],
        "paths": {
            "/predict": {"post": {**predict_op, "operationId": "predict"}},
            "/": {"post": {**predict_op, "operationId": "predictRoot",
                           "summary": "The same as POST /predict"}},
            "/health": {"get": {"tags": ["service"], "summary": "Loaded models and freshness",
                                "operationId": "health",
                                "responses": {"200": {**health, "description": "every target has a model"},
                                              "503": {**health, "description": "a target has no model"}}}},
            "/openapi.json": {"get": {"tags": ["service"], "summary": "This document", "operationId": "openapi",
                                      "responses": {"200": {"description": "OpenAPI 3.1", "content": {
                                          "application/json": {"schema": {"type": "object"}}}}}}},
            "/docs": {"get": {"tags": ["service"], "summary": "Interactive API documentation (this page)",
                              "operationId": "docs",
                              "responses": {"200": {"description": "HTML (Swagger UI, served by the function)",
                                                    "content": {"text/html": {"schema": {"type": "string"}}}},
                                            "503": _ref("Unavailable", "responses")}}},
            "/projects/{project}/topics/{topic}": {"post": {
                "tags": ["internal"], "operationId": "modelUpdatedPush",
                "summary": "A model-updated push from Pub/Sub: check the registry now (at most once per "
                           "refresh period; later pushes in it bring the next check forward)",
                "description": "Only the push subscription's service account is meant to call it: Cloud Run "
                               "verifies the OIDC token the subscription attaches. It never bypasses the API "
                               "key for anything else and does nothing but a rate-bounded reload.",
                "parameters": [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                               for n in ("project", "topic")],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("PushEnvelope")}}},
                "responses": {"200": {"description": "the versions now loaded, any load errors, and whether the "
                                                     "push was coalesced", "content": {"application/json": {
                                                         "schema": {"type": "object"}}}},
                              "400": _ref("ValidationError", "responses"),
                              "405": _ref("MethodNotAllowed", "responses"),
                              "413": _ref("PayloadTooLarge", "responses"),
                              "415": _ref("UnsupportedMediaType", "responses")}}},
        },
        "components": components,
    }


class DocsAssets:
    """Swagger UI's files from the installed ``flask-swagger-ui`` package, found and read on first use.

    Only the names in ``DOCS_ASSETS`` are served; the package is located with
    ``importlib.util.find_spec`` (which does not import it) and never imported.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dist: Path | None = None
        self._files: dict[str, str] = {}

    def _directory(self) -> Path:
        if self._dist is None:
            found = importlib.util.find_spec(DOCS_PACKAGE)
            locations = list(found.submodule_search_locations or []) if found else []
            dist = Path(locations[0]) / "dist" if locations else None
            if dist is None or not all((dist / name).is_file() for name in DOCS_ASSETS):
                raise Unavailable(f"the API docs need the {DOCS_PACKAGE} package (requirements.txt)")
            self._dist = dist
        return self._dist

    def version(self) -> str:
        """Swagger UI's version (the package's ``dist/VERSION``), e.g. ``5.34.0``."""
        path = self._directory() / "VERSION"
        return path.read_text(encoding="utf-8").strip().lstrip("v") if path.is_file() else "0"

    def get(self, name: str) -> tuple[str, str]:
        """(text, content type) of an allowed asset; NotFound for any other name."""
        if name not in DOCS_ASSETS:
            raise NotFound(f"no docs asset {name[:64]}")
        text = self._files.get(name)
        if text is None:
            with self._lock:
                text = self._files.get(name)
                if text is None:
                    text = (self._directory() / name).read_text(encoding="utf-8")
                    self._files[name] = text
        return text, DOCS_ASSETS[name]


def docs_page(doc: Mapping[str, Any], assets_version: str) -> str:
    """The Swagger UI page: same-origin assets (relative ``docs/...`` URLs) and ``openapi.json``."""
    title = html.escape(str(doc["info"]["title"]))
    v = html.escape(assets_version)
    config = {"url": "openapi.json", "dom_id": "#swagger-ui", "deepLinking": True, "layout": "BaseLayout",
              "validatorUrl": None, "displayRequestDuration": True, "defaultModelsExpandDepth": 0,
              "tryItOutEnabled": False}
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<link rel='icon' href='data:,'>"
        f"<link rel='stylesheet' href='docs/swagger-ui.css?v={v}'>"
        "<style>html{box-sizing:border-box;overflow-y:scroll}*,*:before,*:after{box-sizing:inherit}"
        "body{margin:0;background:#fafafa}</style></head>\n<body>"
        "<noscript>This page needs JavaScript. The machine-readable contract is "
        "<a href='openapi.json'>openapi.json</a>.</noscript>"
        "<div id='swagger-ui'></div>\n"
        f"<script src='docs/swagger-ui-bundle.js?v={v}'></script>\n"
        f"<script>window.ui = SwaggerUIBundle(Object.assign({json.dumps(config)}, "
        "{presets: [SwaggerUIBundle.presets.apis]}));</script>\n"
        "</body></html>\n")
