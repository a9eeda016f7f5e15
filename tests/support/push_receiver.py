"""A functions-framework CloudEvent function that records what push delivers to it.

Tests serve it over HTTP on 127.0.0.1 and point push subscriptions of both
event-bus adapters at it, so both are observed through the same conversion
functions-framework applies in production.
"""

import threading
import time

import functions_framework

RECEIVED: list = []
# Keys (the message's "key" attribute) whose deliveries fail with HTTP 500.
FAILING: set = set()
LOCK = threading.Lock()


@functions_framework.cloud_event
def receive(cloud_event):
    key = (cloud_event.data.get("message", {}).get("attributes") or {}).get("key")
    with LOCK:
        RECEIVED.append({"attributes": dict(cloud_event.get_attributes()),
                         "data": cloud_event.data, "key": key, "received_at": time.time()})
    if key in FAILING:
        raise RuntimeError(f"failing on purpose for {key}")
