"""What the HTTP functions share: JSON answers, client errors, body parsing.

A client mistake becomes a 4xx JSON body that names each offending field; only
our own faults become a 500, logged with the trace id, never with the request's
secrets.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, Iterable, Mapping

from shared.platform.log import bind_trace, get_logger

JSON_HEADERS = {"Content-Type": "application/json"}
Response = tuple[str, int, dict[str, str]]


class ApiError(Exception):
    """A request the client must change: status, message and per-field errors."""

    def __init__(self, status: int, message: str,
                 errors: Iterable[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = [dict(e) for e in errors]

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message}
        if self.errors:
            body["errors"] = self.errors
        return body


def field_error(field: str, reason: str, **extra: Any) -> dict[str, Any]:
    """One entry of a 400's ``errors`` list."""
    return {"field": field, "reason": reason, **extra}


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return (json.dumps(body, separators=(",", ":"), default=str, allow_nan=False), status,
            {**JSON_HEADERS, **(headers or {})})


def read_json_object(request: Any, allow_empty: bool = True) -> dict[str, Any]:
    """The request body as a JSON object; 415 or 400 ApiError otherwise."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if allow_empty:
            return {}
        raise ApiError(400, "request body is empty", [field_error("body", "missing")])
    if request.mimetype != "application/json":
        raise ApiError(415, f"Content-Type must be application/json, not {request.mimetype or 'none'}")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "request body is not valid JSON",
                       [field_error("body", "invalid JSON", detail=str(exc))]) from exc
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object",
                       [field_error("body", "wrong type", expected="object")])
    return body


def unknown_fields(body: Mapping[str, Any], allowed: Iterable[str]) -> list[dict[str, Any]]:
    """One error per field the request may not carry."""
    return [field_error(f, "unknown field") for f in sorted(set(body) - set(allowed))]


def http_entry(component: str, methods: Iterable[str] = ("GET", "POST")) -> Callable:
    """Wrap a handler returning ``(body, status[, headers])``: trace, method check, error shaping.

    A ``str`` body is sent as is (with the handler's Content-Type); anything else as JSON.
    """
    allowed = tuple(methods)
    log = get_logger(component)

    def wrap(fn: Callable[[Any], tuple]) -> Callable[[Any], Response]:
        @functools.wraps(fn)
        def handler(request: Any) -> Response:
            bind_trace(request.headers)
            if request.method not in allowed:
                return json_response({"error": f"method {request.method} not allowed"}, 405,
                                     {"Allow": ", ".join(allowed)})
            try:
                body, status, *rest = fn(request)
            except ApiError as exc:
                log.info("client error", fields={"status": exc.status, "error": exc.message,
                                                 "path": request.path})
                return json_response(exc.body(), exc.status)
            except Exception:
                log.exception("request failed", fields={"path": request.path})
                return json_response({"error": "internal error"}, 500)
            headers = dict(rest[0]) if rest else {}
            if isinstance(body, str):
                return body, status, headers
            return json_response(body, status, headers)

        return handler

    return wrap
