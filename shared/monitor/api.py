"""monitor's HTTP interface: what a request asks for, and the status of a run.

Cloud Scheduler and operators ``POST /`` (optionally ``{"window": "P1D"}``); the
model-updated push subscription posts to ``/projects/<p>/topics/<t>``, whose body
is a Pub/Sub envelope, not a monitor request, and triggers a run as well — once per
production state: a push that finds the production versions an earlier push already
judged (a duplicate delivery, or a push with nothing new) is coalesced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.monitor.service import Monitor, MonitorRequest
from shared.platform.errors import InvalidRequest
from shared.platform.http import duration_field, is_pubsub_push, read_json_object, read_push_envelope, unknown_fields

REQUEST_FIELDS = ("window",)
PUSH_CAUSE = "model-updated"


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
        return MonitorRequest(cause=PUSH_CAUSE)
    return parse_request(read_json_object(request, allow_empty=True))


def respond(summary: Mapping[str, Any]) -> tuple[Any, int]:
    """(body, status) of a finished run: its summary, 200."""
    return dict(summary), 200


def handle(monitor: Monitor, request: Any) -> tuple[Any, int]:
    """Run on what the request asks for; a model-updated push runs only on a new production
    state (200 with ``coalesced`` otherwise, so Pub/Sub does not redeliver it)."""
    asked = read_request(request)
    if asked.cause != PUSH_CAUSE:
        return respond(monitor.run(asked))
    claim = monitor.push_claim()
    if claim is None:
        return {"coalesced": True, "reason": "a model-updated push already ran on this production state"}, 200
    try:
        return respond(monitor.run(asked))
    except BaseException:
        monitor.release_push_claim(claim)
        raise
