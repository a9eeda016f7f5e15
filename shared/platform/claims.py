"""At-least-once safety for event handlers: claim an event id before any work.

Pub/Sub may deliver one message twice, or to two instances at once. The first
delivery creates the claim (create-if-absent) and works; a duplicate finds it
and returns without work. A claim left ``running`` by a crashed instance
expires after its lease, and the redelivery that Pub/Sub makes (the crashed run
never acknowledged) takes it over. A retryable failure releases the claim
before raising, so the redelivery runs again.

A duplicate that meets a live claim raises ``LiveClaim``; ``nack_if_claimed``
turns it into a ``409 Conflict`` answer (a nack: Pub/Sub redelivers) logged in one
INFO line, not the 500 and ERROR traceback of an unexpected exception.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from shared.platform import names
from shared.platform.errors import Conflict
from shared.platform.log import get_logger
from shared.platform.ports import AlreadyExists, DocumentStore

RUNNING, DONE, FAILED, RELEASED = "running", "done", "failed", "released"
# The answer to a delivery that meets a live claim. Pub/Sub push acknowledges only
# 102, 200, 201, 202 and 204 and redelivers on anything else, so any error status
# asks for a redelivery. Not a 5xx: those are our faults (the function's 5xx alert,
# functions-framework's ERROR traceback). Not 429: Cloud Run answers 429 itself when
# no instance is free (retrain runs at most two), and the two must stay apart in the
# request metrics. 409 says what happened: the event is held by another delivery.
BUSY_STATUS = 409

log = get_logger("claims")


class LiveClaim(Conflict):
    """Another delivery holds a live claim on the event: this one must be redelivered later.

    Acknowledging would lose the event if that run has crashed; the redelivery finds
    the work done, or the lease run out and the claim free to take over.
    """

    def __init__(self, event_id: str, record: Mapping[str, Any], now: float) -> None:
        self.event_id = event_id
        self.attempts = int(record.get("attempts", 1))
        self.lease_left = max(0.0, float(record.get("expires_at", 0)) - now)
        super().__init__(f"event {event_id} is being processed by another delivery (attempt "
                         f"{self.attempts}, its lease runs {self.lease_left:.0f} s more)")


@contextlib.contextmanager
def nack_if_claimed() -> Iterator[None]:
    """Answer ``BUSY_STATUS`` when the block raises ``LiveClaim``: one INFO line, no traceback.

    For CloudEvent entry points. functions-framework answers any exception with a
    500 that Flask logs with its traceback at ERROR; a werkzeug ``HTTPException`` is
    rendered by Flask as its own status and not logged. Every other exception passes.
    """
    try:
        yield
    except LiveClaim as exc:
        from werkzeug.exceptions import default_exceptions

        log.info("event held by a live claim: redelivery requested", fields={
            "event_id": exc.event_id, "attempt": exc.attempts, "status": BUSY_STATUS,
            "lease_left_seconds": round(exc.lease_left, 1)})
        raise default_exceptions[BUSY_STATUS](description=exc.message) from None


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming: ``acquired`` means this caller must do the work."""

    acquired: bool
    state: str
    owner: str
    record: Mapping[str, Any]


class EventClaims:
    """Claims on event ids in the documents store."""

    def __init__(self, documents: DocumentStore, lease_seconds: float,
                 clock: Callable[[], float] = time.time, collection: str = names.EVENT_CLAIMS) -> None:
        self.documents = documents
        self.lease = lease_seconds
        self.clock = clock
        self.collection = collection

    def claim(self, event_id: str, **details: Any) -> Claim:
        owner = uuid.uuid4().hex
        now = self.clock()
        fresh = {"state": RUNNING, "owner": owner, "claimed_at": now, "expires_at": now + self.lease,
                 "attempts": 1, **details}
        try:
            self.documents.create(self.collection, event_id, fresh)
            return Claim(True, RUNNING, owner, fresh)
        except AlreadyExists:
            pass

        def take_over(txn: Any) -> Claim:
            current = txn.get(self.collection, event_id) or {}
            state = current.get("state")
            stale = state == RUNNING and current.get("expires_at", 0) <= self.clock()
            if state == RELEASED or stale:
                taken = {**current, "state": RUNNING, "owner": owner, "claimed_at": self.clock(),
                         "expires_at": self.clock() + self.lease,
                         "attempts": int(current.get("attempts", 1)) + 1}
                txn.set(self.collection, event_id, taken)
                return Claim(True, RUNNING, owner, taken)
            return Claim(False, state or "unknown", current.get("owner", ""), current)

        return self.documents.transaction(take_over)

    def _finish(self, event_id: str, owner: str, state: str, **details: Any) -> None:
        def finish(txn: Any) -> None:
            current = txn.get(self.collection, event_id) or {}
            if current.get("owner") == owner:
                txn.set(self.collection, event_id, {**current, "state": state,
                                                    "finished_at": self.clock(), **details})

        self.documents.transaction(finish)

    def done(self, event_id: str, owner: str, **result: Any) -> None:
        """The work is complete; later deliveries are duplicates."""
        self._finish(event_id, owner, DONE, **result)

    def failed(self, event_id: str, owner: str, reason: str) -> None:
        """The event can never succeed; recorded, and acknowledged without retries."""
        self._finish(event_id, owner, FAILED, reason=reason)

    def release(self, event_id: str, owner: str, error: str) -> None:
        """A retryable failure: the next delivery works again."""
        self._finish(event_id, owner, RELEASED, last_error=error)
