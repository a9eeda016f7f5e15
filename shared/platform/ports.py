"""The three ports the functions talk to, and the errors every adapter raises.

Each port has a Google Cloud adapter on the real client library and an embedded
adapter for one machine (``shared/platform/backends``). Both obey the same contract tests
(``tests/contract``). Stored documents and event payloads are JSON-compatible
values; timestamps travel as ISO 8601 strings so both adapters sort them alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from shared.platform.errors import ForecastError

T = TypeVar("T")
Doc = dict[str, Any]


class StoreError(ForecastError):
    """Base of the errors the ports define."""


class NotFound(StoreError, LookupError):
    """The blob or document does not exist."""


class AlreadyExists(StoreError):
    """A create-only write found the name already taken."""


class ReadAfterWrite(StoreError):
    """A transaction read after it wrote; Firestore requires every read first."""


class BlobStore(Protocol):
    """Objects by name: Cloud Storage bucket or a local directory."""

    def read(self, name: str) -> bytes:
        """The object's bytes; NotFound when absent."""

    def write(self, name: str, data: bytes, content_type: str | None = None) -> None:
        """Write unconditionally; a reader sees the old bytes or the new ones, never a mix."""

    def create(self, name: str, data: bytes, content_type: str | None = None) -> None:
        """Write only if absent; AlreadyExists otherwise (exactly one of racing creates wins)."""

    def list(self, prefix: str = "") -> list[str]:
        """Names starting with ``prefix``, sorted."""

    def location(self, name: str) -> str:
        """Where an operator finds the object: a ``gs://`` URL or a local path."""


@dataclass(frozen=True)
class DeadLetter:
    """A message that failed every delivery attempt to one subscriber."""

    id: str
    topic: str
    subscription: str
    data: Mapping[str, Any]
    attributes: Mapping[str, str]
    delivery_attempts: int
    message_id: str
    last_error: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """Pub/Sub's subscription retry and dead-letter settings (defaults: the settings' defaults).

    The retry delay doubles from ``min_backoff`` up to ``max_backoff``. Pub/Sub documents
    its backoff as exponential between the two but not its factor; the embedded bus
    waits exactly this schedule, and the settings check that it outlasts a claim's
    lease (docs/retrain.md, "At-least-once safety").
    """

    max_attempts: int = 10
    min_backoff: float = 10.0
    max_backoff: float = 600.0
    ack_deadline: float = 600.0

    def backoff(self, attempts: int) -> float:
        """Delay before the next try after ``attempts`` failed ones."""
        return min(self.max_backoff, self.min_backoff * 2 ** max(0, attempts - 1))

    def schedule(self) -> list[float]:
        """The delays before each redelivery that follows a failed first delivery."""
        return [self.backoff(n) for n in range(1, self.max_attempts)]

    def reach(self) -> float:
        """Seconds from a failed first delivery to the last redelivery (the schedule's sum)."""
        return sum(self.schedule())


@dataclass(frozen=True)
class PushSubscription:
    """A subscriber: messages on ``topic`` are POSTed to ``endpoint`` as Pub/Sub pushes them.

    ``endpoint`` is the subscriber's http(s) URL, path included. Retry and
    dead-letter policy come from the settings (``EVENT_*``).
    """

    name: str
    topic: str
    endpoint: str


class EventBus(Protocol):
    """Pub/Sub topics: JSON messages with string attributes."""

    def ensure_topic(self, topic: str) -> None:
        """Declare a topic (idempotent)."""

    def ensure_push_subscription(self, subscription: PushSubscription) -> None:
        """Declare a push subscription with the retry and dead-letter policy (idempotent)."""

    def publish(self, topic: str, data: Mapping[str, Any],
                attributes: Mapping[str, str] | None = None) -> str:
        """Publish one message and wait until the bus holds it; returns its id."""

    def dead_letters(self, topic: str) -> list[DeadLetter]:
        """Messages on ``topic`` parked after their last failed delivery."""

    def replay_dead_letter(self, topic: str, dead_letter_id: str) -> str:
        """Publish a dead letter again on its topic and drop it; returns the new message id."""


@dataclass(frozen=True)
class Filter:
    """A field condition in a query: ``field op value`` with op one of == < <= > >=."""

    field: str
    op: str
    value: Any

    OPS = ("==", "<", "<=", ">", ">=")

    def __post_init__(self) -> None:
        if self.op not in self.OPS:
            raise ValueError(f"unsupported query operator {self.op!r}; use one of {self.OPS}")


@dataclass(frozen=True)
class Query:
    """A query on one collection: filters, one ordering field, a limit."""

    collection: str
    filters: Sequence[Filter] = field(default_factory=tuple)
    order_by: str | None = None
    descending: bool = False
    limit: int | None = None


class Transaction(Protocol):
    """Reads and writes that commit together. Read everything before writing."""

    def get(self, collection: str, doc_id: str) -> Doc | None:
        """The document as of the transaction's snapshot, or None."""

    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        """Replace the document at commit."""

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        """Create at commit; the whole transaction fails with AlreadyExists if it exists."""


class DocumentStore(Protocol):
    """Documents by collection and id: Firestore or SQLite."""

    def get(self, collection: str, doc_id: str) -> Doc | None:
        """The document, or None."""

    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        """Create or replace."""

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        """Create only if absent; AlreadyExists otherwise."""

    def delete(self, collection: str, doc_id: str) -> None:
        """Delete (no error when absent)."""

    def transaction(self, fn: Callable[[Transaction], T]) -> T:
        """Run ``fn`` in a transaction and commit its writes atomically.

        ``fn`` may run more than once when transactions collide, so it must not
        have side effects outside the transaction object.
        """

    def query(self, query: Query) -> list[tuple[str, Doc]]:
        """(id, document) pairs matching the query."""


def where(collection: str, *conditions: tuple[str, str, Any], order_by: str | None = None,
          descending: bool = False, limit: int | None = None) -> Query:
    """A Query built from ``(field, op, value)`` tuples."""
    return Query(collection, tuple(Filter(*c) for c in conditions), order_by, descending, limit)

