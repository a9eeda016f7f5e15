"""Events in tests: the real Pub/Sub push body, functions-framework's conversion of it,
the push receiver, and a wait that drives the embedded bus.

A push subscription POSTs ``{"message": {...}, "subscription": ...}`` to its
endpoint; functions-framework turns that body into the CloudEvent a
``cloud_event`` function receives. Tests drive CloudEvent functions with that
same body (``post_push``), and a test about a handler's logic takes its event
from ``pubsub_event``, which runs functions-framework's own conversion.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.platform.backends import Backends
from shared.platform.backends.local_events import LocalEventBus
from shared.platform.settings import Settings
from tests.support.wait import wait_until

RECEIVER_SOURCE = Path(__file__).resolve().parent / "push_receiver.py"


def pump_until(events: Any, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Wait for ``predicate``; the embedded bus is driven meanwhile, as its dispatcher would."""

    def pumped() -> Any:
        if isinstance(events, LocalEventBus):
            events.deliver_due()
        return predicate()

    return wait_until(pumped, timeout, interval=0.02, what="the expected deliveries")


def push_body(data: Any, message_id: str, attributes: Mapping[str, str] | None = None,
              raw: bytes | None = None, subscription: str = "projects/test-project/subscriptions/test",
              publish_time: str | None = None) -> dict[str, Any]:
    """The JSON a Pub/Sub push subscription POSTs for a message of ``data`` (or ``raw`` bytes).

    The wrapped push format, as Pub/Sub documents and sends it: both spellings of
    the id and publish time, base64 data.
    """
    payload = raw if raw is not None else json.dumps(data).encode()
    published = publish_time or datetime.now(UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")
    return {"message": {"data": base64.b64encode(payload).decode(), "attributes": dict(attributes or {}),
                        "messageId": message_id, "message_id": message_id,
                        "publishTime": published, "publish_time": published},
            "subscription": subscription}


def topic_path(project: str, topic: str) -> str:
    """The path push subscriptions post to: functions-framework reads the topic from it."""
    return f"/projects/{project}/topics/{topic}"


def post_push(client: Any, settings: Settings, topic: str, data: Any, message_id: str,
              attributes: Mapping[str, str] | None = None, raw: bytes | None = None) -> Any:
    """POST the push body of one message on ``topic`` to a function's test client."""
    body = push_body(data, message_id, attributes, raw,
                     subscription=f"projects/{settings.project}/subscriptions/{topic}-push")
    return client.post(topic_path(settings.project, topic), json=body)


def pubsub_event(data: Any, message_id: str, topic: str = "data-ready", project: str = "test-project",
                 attributes: dict[str, str] | None = None, raw: bytes | None = None) -> Any:
    """The CloudEvent functions-framework makes of the push body of ``data`` (its own conversion)."""
    import flask
    from functions_framework import event_conversion

    body = push_body(data, message_id, attributes, raw,
                     subscription=f"projects/{project}/subscriptions/{topic}-push")
    with flask.Flask(__name__).test_request_context(topic_path(project, topic), method="POST", json=body):
        return event_conversion.background_event_to_cloud_event(flask.request)


def received_for(module: Any, key: str) -> list[dict]:
    """What the receiver got for messages whose ``key`` attribute is ``key``."""
    with module.LOCK:
        return [r for r in module.RECEIVED if r["key"] == key]


def received_on(module: Any, topic: str) -> list[dict]:
    """What the receiver got from one topic, decoded, in arrival order."""
    with module.LOCK:
        rows = [r for r in module.RECEIVED if r["attributes"]["source"].endswith(f"/topics/{topic}")]
    return [{"data": json.loads(base64.b64decode(r["data"]["message"]["data"])),
             "attributes": r["data"]["message"].get("attributes") or {},
             "id": r["attributes"]["id"]} for r in rows]


def subscribe(backends: Backends, settings: Settings, url: str, topic: str) -> str:
    """Point a push subscription on ``topic`` at ``url``; returns the subscription name."""
    from shared.platform.ports import PushSubscription

    name = f"{topic}-to-receiver"
    backends.events.ensure_push_subscription(PushSubscription(
        name, topic, f"{url}/projects/{settings.project}/topics/{topic}"))
    return name


def unsubscribe(settings: Settings, name: str) -> None:
    """Delete a push subscription on the emulator (a leftover keeps redelivering)."""
    if settings.backend == "gcp":
        from google.cloud import pubsub_v1

        sub = pubsub_v1.SubscriberClient()
        sub.delete_subscription(request={"subscription": sub.subscription_path(settings.project, name)})
