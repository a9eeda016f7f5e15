"""At-least-once safety for event handlers: claim an event id before any work.

Pub/Sub may deliver one message twice, or to two instances at once. The first
delivery creates the claim (create-if-absent) and works; a duplicate finds it
and returns without work. A claim left ``running`` by a crashed instance
expires after its lease, and the redelivery that Pub/Sub makes (the crashed run
never acknowledged) takes it over. A retryable failure releases the claim
before raising, so the redelivery runs again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.platform import names
from shared.platform.ports import AlreadyExists, DocumentStore

RUNNING, DONE, FAILED, RELEASED = "running", "done", "failed", "released"


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
