"""Cloud Function ``retrain``: train, gate and promote models when ``data-ready`` arrives.

CloudEvent (Pub/Sub push). Returning acknowledges the message; raising makes
Pub/Sub redeliver it (with backoff, then dead-letter). Duplicates and
permanently failing events return normally; a duplicate that meets a live claim
is answered 409, a redelivery request without an error traceback. See docs/retrain.md.
"""

from typing import Any

import functions_framework

from shared.core.dataset_spec import load_spec
from shared.platform import runtime
from shared.platform.claims import nack_if_claimed
from shared.platform.log import bind_trace
from shared.retrain.service import Retrainer

settings, backends = runtime.start()
retrainer = Retrainer(settings, backends, load_spec(settings.dataset_spec))


@functions_framework.cloud_event
def retrain(cloud_event: Any) -> None:
    """Handle one data-ready delivery; raising asks Pub/Sub for a redelivery."""
    bind_trace({"traceparent": cloud_event.get("traceparent") or ""})
    with nack_if_claimed():
        retrainer.handle(cloud_event)
