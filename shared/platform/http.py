"""The HTTP edge the functions share: JSON answers, body parsing, error -> status, client sessions.

Services raise the domain errors of ``shared.platform.errors`` and never pick a
status; ``http_entry`` maps them here, in one table (``STATUSES``). A client
mistake becomes a 4xx JSON body that names each offending field; only our own
faults become a 500, logged with the trace id, never with the request's secrets.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from shared.platform.errors import (
    Conflict,
    ForecastError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    UpstreamUnavailable,
    field_error,
)
from shared.platform.log import bind_trace, get_logger
from shared.platform.timefmt import parse_duration

JSON_HEADERS = {"Content-Type": "application/json"}
Response = tuple[str, int, dict[str, str]]
# Most specific first: the first class an error is an instance of gives its status.
STATUSES: tuple[tuple[type[ForecastError], int], ...] = (
    (UnsupportedMediaType, 415),
    (InvalidRequest, 400),
    (Unauthorized, 401),
    (NotFound, 404),
    (MethodNotAllowed, 405),
    (Conflict, 409),
    (UpstreamUnavailable, 502),
    (Unavailable, 503),
)
RETRY_STATUSES = (500, 502, 503, 504)

__all__ = ["JSON_HEADERS", "STATUSES", "error_body", "field_error", "http_entry", "http_session",
           "is_pubsub_push", "json_response", "read_json_object", "status_for", "unknown_fields"]


def status_for(exc: BaseException) -> int:
    """The HTTP status an exception answers with: its STATUSES entry, else 500."""
    return next((status for cls, status in STATUSES if isinstance(exc, cls)), 500)


def error_body(exc: ForecastError) -> dict[str, Any]:
    """The JSON body of an error answer: ``error`` and, for a bad request, ``errors``."""
    body: dict[str, Any] = {"error": exc.message}
    if isinstance(exc, InvalidRequest) and exc.errors:
        body["errors"] = exc.errors
    return body


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """``body`` as compact JSON with its status and headers."""
    return (json.dumps(body, separators=(",", ":"), default=str, allow_nan=False), status,
            {**JSON_HEADERS, **(headers or {})})


def read_json_object(request: Any, allow_empty: bool = True) -> dict[str, Any]:
    """The request body as a JSON object; UnsupportedMediaType or InvalidRequest otherwise."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if allow_empty:
            return {}
        raise InvalidRequest("request body is empty", [field_error("body", "missing")])
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(f"Content-Type must be application/json, not {request.mimetype or 'none'}")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("request body is not valid JSON",
                             [field_error("body", "invalid JSON", detail=str(exc))]) from exc
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object",
                             [field_error("body", "wrong type", expected="object")])
    return body


def unknown_fields(body: Mapping[str, Any], allowed: Iterable[str]) -> list[dict[str, Any]]:
    """One error per field the request may not carry."""
    return [field_error(f, "unknown field") for f in sorted(set(body) - set(allowed))]


def duration_field(body: Mapping[str, Any], name: str, errors: list[dict[str, Any]]) -> timedelta | None:
    """The duration in ``body[name]`` (ISO 8601 or ``7d``), None when absent; a bad one adds an error."""
    if name not in body:
        return None
    try:
        return parse_duration(body[name])
    except ValueError as exc:
        errors.append(field_error(name, str(exc)))
        return None


def is_pubsub_push(request: Any) -> bool:
    """Whether the request is a Pub/Sub push: those POST to ``/projects/<p>/topics/<t>``."""
    path = request.path
    return path.startswith("/projects/") and "/topics/" in path


def http_session(retries: int, backoff: float, statuses: Iterable[int] = RETRY_STATUSES,
                 methods: Iterable[str] = ("GET",)) -> Any:
    """A ``requests`` session that retries connection errors, timeouts and ``statuses``.

    urllib3 waits ``backoff * 2**n`` seconds between attempts; after the last
    one the final response is returned (not raised), so callers see its status.
    """
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(total=retries, connect=retries, read=retries, status=retries,
                  backoff_factor=backoff, status_forcelist=tuple(statuses),
                  allowed_methods=tuple(methods), raise_on_status=False)
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def http_entry(component: str, methods: Iterable[str] = ("GET", "POST")) -> Callable:
    """Wrap a handler returning ``(body, status[, headers])``: trace, method check, error -> status.

    A ``str`` body is sent as is (with the handler's Content-Type); anything else as JSON.
    """
    allowed = tuple(methods)
    log = get_logger(component)

    def wrap(fn: Callable[[Any], tuple]) -> Callable[[Any], Response]:
        @functools.wraps(fn)
        def handler(request: Any) -> Response:
            bind_trace(request.headers)
            if request.method not in allowed:
                return _error(MethodNotAllowed(request.method, allowed))
            try:
                body, status, *rest = fn(request)
            except ForecastError as exc:
                status = status_for(exc)
                if status >= 500:
                    # Not the client's doing: a dependency (logged as such) or our own fault.
                    if status == 500:
                        log.exception("request failed", fields={"path": request.path})
                        return json_response({"error": "internal error"}, 500)
                    log.warning("dependency unavailable", fields={"status": status, "error": exc.message,
                                                                  "path": request.path})
                else:
                    log.info("client error", fields={"status": status, "error": exc.message,
                                                     "path": request.path})
                return _error(exc)
            except Exception:
                log.exception("request failed", fields={"path": request.path})
                return json_response({"error": "internal error"}, 500)
            headers = dict(rest[0]) if rest else {}
            if isinstance(body, str):
                return body, status, headers
            return json_response(body, status, headers)

        return handler

    return wrap


def _error(exc: ForecastError) -> Response:
    headers = {"Allow": ", ".join(exc.allowed)} if isinstance(exc, MethodNotAllowed) else {}
    return json_response(error_body(exc), status_for(exc), headers)
