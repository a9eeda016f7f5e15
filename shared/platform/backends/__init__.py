"""Pick the adapters the settings ask for.

Each port is built on first use, so a function imports only the Google Cloud
client it really calls (predict never loads the Pub/Sub client): import time is
cold-start time.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from shared.platform.ports import BlobStore, DocumentStore, EventBus, RetryPolicy
from shared.platform.settings import Settings


def retry_policy(settings: Settings) -> RetryPolicy:
    """The subscription retry and dead-letter policy the settings describe."""
    return RetryPolicy(max_attempts=settings.event_max_delivery_attempts,
                       min_backoff=settings.event_min_backoff_seconds,
                       max_backoff=settings.event_max_backoff_seconds,
                       ack_deadline=settings.event_ack_deadline_seconds)


def _build_blobs(settings: Settings) -> BlobStore:
    if settings.backend == "gcp":
        from shared.platform.backends.gcs_blobs import GcsBlobStore

        return GcsBlobStore(settings.bucket, settings.project)
    from shared.platform.backends.local_blobs import LocalBlobStore

    return LocalBlobStore(settings.state_dir / "blobs" / settings.bucket)


def _build_documents(settings: Settings) -> DocumentStore:
    if settings.backend == "gcp":
        from shared.platform.backends.firestore_documents import FirestoreDocumentStore

        return FirestoreDocumentStore(settings.project, settings.firestore_database)
    from shared.platform.backends.sqlite_documents import SqliteDocumentStore

    return SqliteDocumentStore(settings.state_dir / "documents.sqlite")


def _build_events(settings: Settings) -> EventBus:
    if settings.backend == "gcp":
        from shared.platform.backends.pubsub_events import PubSubEventBus

        return PubSubEventBus(settings.project, settings.dead_letter_suffix, retry_policy(settings))
    from shared.platform.backends.local_events import LocalEventBus

    bus = LocalEventBus(settings.state_dir / "events.sqlite", settings.project,
                        retry_policy(settings))
    for topic in settings.topics:
        bus.ensure_topic(topic)
    return bus


class Backends:
    """The three ports for one settings object, each built when first used."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._built: dict[str, Any] = {}

    def _get(self, name: str, build: Callable[[Settings], Any]) -> Any:
        with self._lock:
            if name not in self._built:
                self._built[name] = build(self.settings)
            return self._built[name]

    @property
    def blobs(self) -> BlobStore:
        return self._get("blobs", _build_blobs)

    @property
    def documents(self) -> DocumentStore:
        return self._get("documents", _build_documents)

    @property
    def events(self) -> EventBus:
        return self._get("events", _build_events)


@functools.lru_cache(maxsize=8)
def connect(settings: Settings) -> Backends:
    """The adapters for ``settings`` (one set per process and settings)."""
    return Backends(settings)
