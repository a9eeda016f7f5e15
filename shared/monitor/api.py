"""monitor's HTTP interface: what a request asks for, and the status of a run.

Cloud Scheduler and operators ``POST /`` (optionally ``{"window": "P1D"}``); the
model-updated push subscription posts to ``/projects/<p>/topics/<t>``, whose body
is a Pub/Sub envelope, not a monitor request, and triggers a run as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.monitor.service import MonitorRequest
from shared.platform.errors import InvalidRequest
from shared.platform.http import duration_field, is_pubsub_push, read_json_object, read_push_envelope, unknown_fields

REQUEST_FIELDS = ("window",)


def parse_request(body: Mapping[str, Any]) -> MonitorRequest:
    """Validate a monitor body; InvalidRequest lists every offending field."""
    errors = unknown_fields(body, REQUEST_FIELDS)
    window = duration_field(body, "window", errors)
    if errors:
        raise InvalidRequest("invalid monitor request", errors)
    return MonitorRequest(window, cause="request")


def read_request(request: Any) -> MonitorRequest:
    """The MonitorRequest an HTTP request carries: a push runs on the default window."""
    if is_pubsub_push(request):
        read_push_envelope(request)
        return MonitorRequest(cause="model-updated")
    return parse_request(read_json_object(request, allow_empty=True))


def respond(summary: Mapping[str, Any]) -> tuple[Any, int]:
    """(body, status) of a finished run: its summary, 200."""
    return dict(summary), 200
