"""collect_data's HTTP interface: request parsing and the status of a run's results.

An empty body collects the configured window from every configured source;
``{"source", "window", "start"}`` narrows it. Every offending field is reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from shared.collect.service import FAILED, CollectRequest
from shared.core.dataset_spec import DatasetSpec
from shared.platform.errors import InvalidRequest, field_error
from shared.platform.http import duration_field, read_json_object, unknown_fields
from shared.platform.timefmt import parse_iso_local

REQUEST_FIELDS = ("source", "window", "start")


def parse_request(body: Mapping[str, Any], spec: DatasetSpec, known_sources: Sequence[str],
                  default_window: timedelta) -> CollectRequest:
    """Validate a collect_data body; InvalidRequest lists every offending field."""
    errors = unknown_fields(body, REQUEST_FIELDS)
    sources = tuple(known_sources)
    if "source" in body:
        if not isinstance(body["source"], str) or body["source"] not in known_sources:
            errors.append(field_error("source", "unknown source", allowed=list(known_sources)))
        else:
            sources = (body["source"],)
    window = duration_field(body, "window", errors)
    if window is not None and window < spec.interval:
        errors.append(field_error("window", f"shorter than the series interval {spec.interval}"))
    start = None
    if "start" in body:
        start = parse_iso_local(body["start"], spec.utc_offset)
        if start is None:
            errors.append(field_error("start", "not an ISO 8601 timestamp"))
    if errors:
        raise InvalidRequest("invalid collect request", errors)
    return CollectRequest(sources, window or default_window, start)


def read_request(request: Any, spec: DatasetSpec, known_sources: Sequence[str],
                 default_window: timedelta) -> CollectRequest:
    """The CollectRequest an HTTP request carries (an empty body is allowed)."""
    return parse_request(read_json_object(request, allow_empty=True), spec, known_sources, default_window)


def respond(results: Sequence[Mapping[str, Any]]) -> tuple[Any, int]:
    """(body, status): one result as is, several under ``results``; 502 when a source failed outright."""
    status = 502 if any(r["status"] == FAILED for r in results) else 200
    body = results[0] if len(results) == 1 else {"results": list(results)}
    return body, status
