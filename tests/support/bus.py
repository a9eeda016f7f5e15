"""Observing events in tests: the push receiver and a wait that drives the embedded bus."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from shared.platform.backends import Backends
from shared.platform.backends.local_events import LocalEventBus
from shared.platform.settings import Settings

RECEIVER_SOURCE = Path(__file__).resolve().parent / "push_receiver.py"


def pump_until(events: Any, predicate: Callable[[], Any], timeout: float = 30.0) -> None:
    """Wait for ``predicate``; the embedded bus is driven meanwhile, as its dispatcher would."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        if isinstance(events, LocalEventBus):
            events.deliver_due()
        time.sleep(0.02)


def received_for(module: Any, key: str) -> list[dict]:
    """What the receiver got for messages whose ``key`` attribute is ``key``."""
    with module.LOCK:
        return [r for r in module.RECEIVED if r["key"] == key]


def received_on(module: Any, topic: str) -> list[dict]:
    """What the receiver got from one topic, decoded, in arrival order."""
    import base64
    import json

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


def pubsub_event(data: Any, message_id: str, topic: str = "data-ready", project: str = "test-project",
                 attributes: dict[str, str] | None = None, raw: bytes | None = None) -> Any:
    """The CloudEvent functions-framework builds from a Pub/Sub push of ``data``."""
    import base64
    import json

    from cloudevents.http import CloudEvent

    from shared.platform.pubsub_push import MESSAGE_PUBLISHED, rfc3339_now

    payload = raw if raw is not None else json.dumps(data).encode()
    published = rfc3339_now()
    return CloudEvent({"id": message_id, "type": MESSAGE_PUBLISHED, "time": published,
                       "source": f"//pubsub.googleapis.com/projects/{project}/topics/{topic}",
                       "specversion": "1.0", "datacontenttype": "application/json"},
                      {"message": {"@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage",
                                   "data": base64.b64encode(payload).decode(),
                                   "attributes": attributes or {}, "messageId": message_id,
                                   "publishTime": published}})
