"""The Pub/Sub push wire format, and decoding the CloudEvent a push becomes.

A push subscription POSTs ``{"subscription": ..., "message": {...}}`` to the
function's URL; functions-framework turns that body into a CloudEvent of type
``google.cloud.pubsub.topic.v1.messagePublished`` whose ``data.message.data``
is the base64 payload. The embedded bus sends the very same body, so handlers
see identical events on both backends.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.platform.errors import InvalidData

MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


class BadEvent(InvalidData):
    """The event is not a decodable Pub/Sub message with a JSON object payload."""


@dataclass(frozen=True)
class Message:
    """A decoded Pub/Sub message."""

    id: str
    data: dict[str, Any]
    attributes: dict[str, str]
    publish_time: str


def encode_data(data: Mapping[str, Any]) -> bytes:
    """The JSON bytes a message carries."""
    return json.dumps(dict(data), separators=(",", ":"), sort_keys=True, default=str).encode()


def check_attributes(attributes: Mapping[str, str] | None) -> dict[str, str]:
    """Pub/Sub attributes are string to string; refuse anything else early."""
    attrs = dict(attributes or {})
    bad = [k for k, v in attrs.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise TypeError(f"message attributes must be strings: {bad}")
    return attrs


def rfc3339_now() -> str:
    """The current time as Pub/Sub writes publish times (UTC, milliseconds, Z)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def push_body(subscription: str, message_id: str, data: bytes, attributes: Mapping[str, str],
              publish_time: str) -> dict[str, Any]:
    """The JSON body a Pub/Sub push subscription POSTs to its endpoint."""
    return {
        "subscription": subscription,
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": dict(attributes),
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": publish_time,
            "publish_time": publish_time,
        },
    }


def decode_event(event: Any) -> Message:
    """Decode a Pub/Sub CloudEvent into a Message; BadEvent when it is not one."""
    try:
        payload = event.data["message"]
    except (AttributeError, KeyError, TypeError) as exc:
        raise BadEvent("event carries no Pub/Sub message") from exc
    try:
        raw = base64.b64decode(payload.get("data") or "", validate=True)
        data = json.loads(raw) if raw else None
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise BadEvent(f"message data is not base64 JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadEvent("message data is not a JSON object")
    attributes = payload.get("attributes") or {}
    return Message(id=str(payload.get("messageId") or event["id"]), data=data,
                   attributes={str(k): str(v) for k, v in attributes.items()},
                   publish_time=str(payload.get("publishTime") or event["time"]))
