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

from shared.platform import json_codec
from shared.platform.errors import (
    Conflict,
    ForecastError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    UpstreamUnavailable,
    field_error,
)
from shared.platform.log import bind_trace, get_logger
from shared.platform.timefmt import parse_duration

JSON_HEADERS = {"Content-Type": "application/json"}
Response = tuple[bytes | str, int, dict[str, str]]
# Most specific first: the first class an error is an instance of gives its status.
STATUSES: tuple[tuple[type[ForecastError], int], ...] = (
    (PayloadTooLarge, 413),
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
# For a function that routes every method itself (404 before 405, HEAD and OPTIONS).
ANY_METHOD = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")
# The largest body an HTTP function reads unless configured otherwise (MAX_REQUEST_BYTES):
# the largest legal predict batch, 10,000 observations, is about 1.5 MB of JSON.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
BODY_LIMIT_KEY = "forecast.max_body_bytes"  # the WSGI environ entry read_body reads the limit from
# Integer literals longer than this decode as infinity, which field validation refuses by
# name; Python itself refuses to convert ints of more than 4,300 digits.
MAX_INT_DIGITS = 400

__all__ = ["ANY_METHOD", "DEFAULT_MAX_BODY_BYTES", "JSON_HEADERS", "STATUSES", "allow_method", "allowed_with_extras",
           "decode_json", "error_body", "field_error", "http_entry", "http_session", "is_pubsub_push", "json_response",
           "read_body", "read_json_object", "read_push_envelope", "status_for", "unknown_fields"]


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
    return json_codec.dumps(body), status, {**JSON_HEADERS, **(headers or {})}


def _int_or_infinity(text: str) -> int | float:
    if len(text.lstrip("-")) <= MAX_INT_DIGITS:
        return int(text)
    return float("-inf") if text.startswith("-") else float("inf")


def decode_json(raw: bytes | str) -> Any:
    """JSON text as Python values, guarded: InvalidRequest (field ``body``) for text that is not
    JSON or nests deeper than the interpreter's recursion limit; huge integers decode as
    infinity, so the field that holds one is refused by its own validation."""
    try:
        return json.loads(raw, parse_int=_int_or_infinity)
    except RecursionError as exc:
        raise InvalidRequest("request body is nested too deeply",
                             [field_error("body", "nested too deeply")]) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("request body is not valid JSON",
                             [field_error("body", "invalid JSON", detail=str(exc)[:200])]) from exc


def too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body larger than {max_bytes} bytes",
                           [field_error("body", "too large", max_bytes=max_bytes)])


def read_body(request: Any) -> bytes:
    """The request body; PayloadTooLarge past the limit ``http_entry`` set on the request.

    A chunked body has no length to check up front: the stream is capped one byte past the
    limit (werkzeug stops a capped stream silently), so reading that byte means too large.
    """
    from werkzeug.exceptions import RequestEntityTooLarge

    limit = request.environ.get(BODY_LIMIT_KEY)
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge as exc:
        raise too_large(limit or request.max_content_length) from exc
    if limit is not None and len(raw) > limit:
        raise too_large(limit)
    return raw


def read_json_object(request: Any, allow_empty: bool = True) -> dict[str, Any]:
    """The request body as a JSON object; UnsupportedMediaType or InvalidRequest otherwise."""
    raw = read_body(request)
    if not raw.strip():
        if allow_empty:
            return {}
        raise InvalidRequest("request body is empty", [field_error("body", "missing")])
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(f"Content-Type must be application/json, not {request.mimetype or 'none'}")
    body = decode_json(raw)
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


def allow_method(request: Any, allowed: Iterable[str]) -> str | None:
    """The method a route runs for ``request``: GET for HEAD where GET is allowed (the server
    drops a HEAD answer's body), None for OPTIONS (answer 204 with ``Allow``); MethodNotAllowed
    for any other method the route does not take."""
    methods = tuple(allowed)
    if request.method == "OPTIONS":
        return None
    method = "GET" if request.method == "HEAD" and "GET" in methods else request.method
    if method not in methods:
        raise MethodNotAllowed(request.method, allowed_with_extras(methods))
    return method


def allowed_with_extras(methods: Iterable[str]) -> tuple[str, ...]:
    """``methods`` with the HEAD and OPTIONS a route answers too, for an ``Allow`` header."""
    methods = tuple(methods)
    return (*methods, *(("HEAD",) if "GET" in methods else ()), "OPTIONS")


def is_pubsub_push(request: Any) -> bool:
    """Whether the request is a Pub/Sub push: those POST to ``/projects/<p>/topics/<t>``."""
    path = request.path
    return path.startswith("/projects/") and "/topics/" in path


def read_push_envelope(request: Any) -> dict[str, Any]:
    """The Pub/Sub push envelope a push route accepts: a POSTed JSON object whose
    ``message`` object carries base64 ``data`` and a message id; InvalidRequest (or
    MethodNotAllowed) naming what is wrong otherwise. Who may push is Cloud Run's
    check of the subscription's OIDC token (docs/predict.md), not this one."""
    if request.method != "POST":
        raise MethodNotAllowed(request.method, ("POST",))
    body = read_json_object(request, allow_empty=False)
    message = body.get("message")
    errors = []
    if not isinstance(message, dict):
        errors.append(field_error("message", "missing or not an object"))
    else:
        if not isinstance(message.get("data", ""), str):
            errors.append(field_error("message.data", "wrong type", expected="base64 string"))
        if not isinstance(message.get("messageId", message.get("message_id")), str):
            errors.append(field_error("message.messageId", "missing or not a string"))
    if errors:
        raise InvalidRequest("not a Pub/Sub push envelope", errors)
    return body


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


def http_entry(component: str, methods: Iterable[str] = ("GET", "POST"),
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Callable:
    """Wrap a handler returning ``(body, status[, headers])``: trace, method check, body
    limit, error -> status.

    A body declared larger than ``max_body_bytes`` is refused (413) before a byte of it is
    read; a chunked one is cut off as it streams past the limit. A ``str`` body is sent as
    is (with the handler's Content-Type); anything else as JSON.
    """
    allowed = tuple(methods)
    log = get_logger(component)

    def wrap(fn: Callable[[Any], tuple]) -> Callable[[Any], Response]:
        @functools.wraps(fn)
        def handler(request: Any) -> Response:
            bind_trace(request.headers)
            if request.method not in allowed:
                return _error(MethodNotAllowed(request.method, allowed))
            if (request.content_length or 0) > max_body_bytes:
                log.info("client error", fields={"status": 413, "path": request.path,
                                                 "declared_bytes": request.content_length})
                return _error(too_large(max_body_bytes))
            request.environ[BODY_LIMIT_KEY] = max_body_bytes
            request.max_content_length = max_body_bytes + 1
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
