"""The predict API as OpenAPI 3.1 (served at ``GET /openapi.json``) and a docs page (``GET /docs``).

Built from the dataset spec, so each feature's physical range in the document is
the one validation enforces. OpenAPI 3.1 schemas are JSON Schema 2020-12, which
the tests use to check real responses against this document.
"""

from __future__ import annotations

import html
import json
from typing import Any

from shared.core.dataset_spec import DatasetSpec
from shared.core.features import CALENDAR_FIELDS
from shared.predict.api import TIMESTAMP_FIELD

VARIANT_NAMES = ["history", "no_history"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _map(of: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": {k: of for k in keys}, "additionalProperties": False}


def document(spec: DatasetSpec, max_instances: int) -> dict[str, Any]:
    """The OpenAPI document of the predict function."""
    targets = spec.target_names
    observation = {
        **{c.name: {"type": "number", "minimum": c.min, "maximum": c.max,
                    "description": f"{c.unit}; physical range {c.min} to {c.max}"} for c in spec.features},
        TIMESTAMP_FIELD: {"type": "string", "description": "ISO 8601 date-time; an offset is converted "
                          "to the series' local time, seconds are ignored", "examples": ["2017-12-24T14:30:00"]},
    }
    required = [*spec.feature_names, TIMESTAMP_FIELD]
    target_list = {"type": "array", "items": {"type": "string", "enum": targets}, "minItems": 1,
                   "description": "targets to predict (default: all)"}
    versions = {**_map({"type": "string"}, targets),
                "description": "the version of each target's model; one snapshot serves a whole request"}
    item_properties = {
        "predictions": _map({"type": "number"}, targets),
        "variants": _map({"type": "string", "enum": VARIANT_NAMES}, targets),
        "derived_features": {**_map({"type": "integer"}, list(CALENDAR_FIELDS)), "required": list(CALENDAR_FIELDS)},
    }
    legacy = spec.section("api").get("legacy_prediction_field")
    schemas = {
        "Observation": {"type": "object", "properties": observation, "required": required,
                        "additionalProperties": False},
        "SingleRequest": {"type": "object", "properties": {**observation, "targets": target_list},
                          "required": required, "additionalProperties": False},
        "BatchRequest": {"type": "object", "required": ["instances"], "additionalProperties": False,
                         "properties": {"instances": {"type": "array", "items": _ref("Observation"),
                                                      "minItems": 1, "maxItems": max_instances},
                                        "targets": target_list,
                                        "format": {"type": "string", "enum": ["instances", "columns"],
                                                   "default": "instances"}}},
        "PredictionItem": {"type": "object", "properties": item_properties,
                           "required": list(item_properties), "additionalProperties": False},
        "SingleResponse": {"type": "object", "additionalProperties": False,
                           "required": [*item_properties, "prediction_timestamp", "input_features",
                                        "model_version", "model_versions"],
                           "properties": {**item_properties, "model_versions": versions,
                                          "prediction_timestamp": {"type": "string", "format": "date-time"},
                                          "model_version": {"type": "string"},
                                          "input_features": {"type": "object"},
                                          **({legacy: {"type": "number"}} if legacy else {})}},
        "BatchResponse": {"type": "object", "additionalProperties": False,
                          "required": ["prediction_timestamp", "model_versions"],
                          "oneOf": [{"required": ["predictions"]}, {"required": ["columns"]}],
                          "properties": {
                              "prediction_timestamp": {"type": "string", "format": "date-time"},
                              "model_versions": versions,
                              "predictions": {"type": "array", "items": _ref("PredictionItem"),
                                              "description": "format instances (default): one item per instance"},
                              "columns": {"type": "object", "required": ["predictions", "variants",
                                                                         "derived_features"],
                                          "description": "format columns: one list per field",
                                          "properties": {
                                              "predictions": _map({"type": "array",
                                                                   "items": {"type": "number"}}, targets),
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
                       "errors": {"type": "object"}}},
        "Error": {"type": "object", "required": ["error"], "properties": {
            "error": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object", "required": ["field", "reason"],
                                                  "properties": {"field": {"type": "string"},
                                                                 "reason": {"type": "string"}}}}}},
    }

    def error(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}

    predict_op = {
        "summary": "Predict consumption for one observation or a batch",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "oneOf": [_ref("SingleRequest"), _ref("BatchRequest")]}}}},
        "responses": {
            "200": {"description": "predictions", "content": {"application/json": {"schema": {
                "oneOf": [_ref("SingleResponse"), _ref("BatchResponse")]}}}},
            "400": error("invalid request: every offending field with its reason"),
            "401": error("missing or wrong API key (when one is configured)"),
            "405": error("method not allowed"), "415": error("Content-Type is not application/json"),
            "503": error("no model loaded for a requested target"),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{spec.name} forecasting — predict", "version": "1",
                 "description": spec.description},
        "paths": {
            "/": {"post": {**predict_op, "operationId": "predictRoot"}},
            "/predict": {"post": {**predict_op, "operationId": "predict"}},
            "/health": {"get": {"summary": "Loaded models and freshness", "operationId": "health",
                                "responses": {"200": {"description": "every target has a model",
                                                      "content": {"application/json": {"schema": _ref("Health")}}},
                                              "503": {"description": "a target has no model",
                                                      "content": {"application/json": {"schema": _ref("Health")}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                      "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/docs": {"get": {"summary": "Human-readable API documentation", "operationId": "docs",
                              "responses": {"200": {"description": "HTML"}}}},
        },
        "components": {"schemas": schemas, "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                       "description": "only when the service is configured with a key"}}},
    }


def docs_page(doc: dict[str, Any]) -> str:
    """A self-contained HTML page describing the API (no external assets)."""
    schemas = doc["components"]["schemas"]
    rows = "".join(
        f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(prop.get('type', ''))}</td>"
        f"<td>{html.escape(prop.get('description', ''))}</td></tr>"
        for name, prop in schemas["Observation"]["properties"].items())
    paths = "".join(f"<li><code>{m.upper()} {html.escape(p)}</code> — {html.escape(op['summary'])}</li>"
                    for p, ops in doc["paths"].items() for m, op in ops.items())
    example = {k: (v.get("examples", ["2017-12-24T14:30:00"])[0] if k == TIMESTAMP_FIELD
                   else round((v["minimum"] + v["maximum"]) / 4, 2))
               for k, v in schemas["Observation"]["properties"].items()}
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(doc['info']['title'])}"
            f"</title><style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}"
            f"td,th{{border:1px solid #ccc;padding:.3em .6em}}table{{border-collapse:collapse}}</style>"
            f"</head><body><h1>{html.escape(doc['info']['title'])}</h1><p>{html.escape(doc['info']['description'])}</p>"
            f"<h2>Endpoints</h2><ul>{paths}</ul><h2>Observation fields</h2>"
            f"<table><tr><th>field</th><th>type</th><th>meaning</th></tr>{rows}</table>"
            f"<h2>Example</h2><pre>curl -X POST $URL/predict -H 'Content-Type: application/json' "
            f"-d '{html.escape(json.dumps(example))}'</pre>"
            f"<p>Batches: <code>{{\"instances\": [...]}}</code> up to "
            f"{schemas['BatchRequest']['properties']['instances']['maxItems']} observations. "
            f"The full machine-readable contract is <a href='openapi.json'>openapi.json</a>.</p>"
            f"</body></html>")
