"""The project's one exception hierarchy.

Services raise these and know nothing of HTTP; ``shared.platform.http.http_entry``
maps each class to a status code in one table (``status_for``). Errors that are
not listed there (configuration, corrupt data, store failures) are our own
faults and answer 500.

    ForecastError
    ├── ConfigError          a setting or a spec the project cannot use (also ValueError)
    ├── InvalidRequest       the client must change its request; carries field errors
    │   └── UnsupportedMediaType
    ├── Unauthorized         missing or wrong credentials
    ├── NotFound             no such route or resource (also LookupError)
    ├── MethodNotAllowed     the route exists, the method does not; carries the allowed ones
    ├── Conflict             someone else holds the thing (a claim, a pointer)
    ├── Unavailable          a dependency is not ready (no model loaded yet)
    │   └── UpstreamUnavailable  a dependency failed outright (a data source)
    └── InvalidData          stored or received data fails validation (also ValueError)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class ForecastError(Exception):
    """Base of every error the project raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ForecastError, ValueError):
    """An environment variable or dataset spec holds a value the project cannot use."""


class InvalidRequest(ForecastError):
    """A request the client must change; ``errors`` names each offending field."""

    def __init__(self, message: str, errors: Iterable[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.errors = [dict(e) for e in errors]


class UnsupportedMediaType(InvalidRequest):
    """The request body is not of a content type the endpoint reads."""


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than the endpoint reads (refused before it is read)."""


class Unauthorized(ForecastError):
    """Missing or wrong credentials."""


class NotFound(ForecastError, LookupError):
    """No such route or resource."""


class MethodNotAllowed(ForecastError):
    """The route exists but not for this method."""

    def __init__(self, method: str, allowed: Iterable[str]) -> None:
        super().__init__(f"method {method} not allowed")
        self.allowed = tuple(allowed)


class Conflict(ForecastError):
    """Another actor holds what the operation needs; retrying later may succeed."""


class Unavailable(ForecastError):
    """A dependency is not ready yet (for example no production model is loaded)."""


class UpstreamUnavailable(Unavailable):
    """A dependency we call (a data source) failed and nothing could stand in for it."""


class InvalidData(ForecastError, ValueError):
    """Data the system reads (a source's records, an artifact, an event) fails validation."""


def field_error(field: str, reason: str, **extra: Any) -> dict[str, Any]:
    """One entry of an InvalidRequest's ``errors`` list."""
    return {"field": field, "reason": reason, **extra}
