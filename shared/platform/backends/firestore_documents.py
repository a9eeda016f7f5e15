"""Firestore document store on google-cloud-firestore.

Every query this project makes that combines an equality filter with an
ordering on another field needs a composite index in production (the emulator
does not enforce them); ``terraform/firestore.tf`` declares them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1._helpers import ReadAfterWriteError
from google.cloud.firestore_v1.base_query import FieldFilter

from shared.platform.backends.sqlite_documents import check_id
from shared.platform.ports import AlreadyExists, Doc, Query, ReadAfterWrite

T = TypeVar("T")
# Firestore retries a transaction that collided; racing writers on one hot
# document (a promotion pointer, a claim) need more than the default 5.
MAX_TRANSACTION_ATTEMPTS = 25


class _FirestoreTransaction:
    def __init__(self, client: firestore.Client, txn: firestore.Transaction) -> None:
        self._client = client
        self._txn = txn

    def _ref(self, collection: str, doc_id: str) -> firestore.DocumentReference:
        return self._client.collection(collection).document(check_id(doc_id))

    def get(self, collection: str, doc_id: str) -> Doc | None:
        try:
            snap = self._ref(collection, doc_id).get(transaction=self._txn)
        except ReadAfterWriteError as exc:
            raise ReadAfterWrite(str(exc)) from exc
        return snap.to_dict() if snap.exists else None

    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        self._txn.set(self._ref(collection, doc_id), dict(data))

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        self._txn.create(self._ref(collection, doc_id), dict(data))


class FirestoreDocumentStore:
    """DocumentStore on a Firestore database."""

    def __init__(self, project: str, database: str = "(default)",
                 client: firestore.Client | None = None) -> None:
        self.client = client or firestore.Client(project=project, database=database)

    def _ref(self, collection: str, doc_id: str) -> firestore.DocumentReference:
        return self.client.collection(collection).document(check_id(doc_id))

    def get(self, collection: str, doc_id: str) -> Doc | None:
        snap = self._ref(collection, doc_id).get()
        return snap.to_dict() if snap.exists else None

    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        self._ref(collection, doc_id).set(dict(data))

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        try:
            self._ref(collection, doc_id).create(dict(data))
        except gexc.AlreadyExists as exc:
            raise AlreadyExists(f"{collection}/{doc_id}") from exc

    def delete(self, collection: str, doc_id: str) -> None:
        self._ref(collection, doc_id).delete()

    def transaction(self, fn: Callable[[Any], T]) -> T:
        @firestore.transactional
        def run(txn: firestore.Transaction) -> T:
            return fn(_FirestoreTransaction(self.client, txn))

        try:
            return run(self.client.transaction(max_attempts=MAX_TRANSACTION_ATTEMPTS))
        except gexc.AlreadyExists as exc:
            raise AlreadyExists(str(exc)) from exc

    def query(self, query: Query) -> list[tuple[str, Doc]]:
        q: Any = self.client.collection(query.collection)
        for flt in query.filters:
            q = q.where(filter=FieldFilter(flt.field, flt.op, flt.value))
        if query.order_by:
            direction = firestore.Query.DESCENDING if query.descending else firestore.Query.ASCENDING
            q = q.order_by(query.order_by, direction=direction)
        if query.limit is not None:
            q = q.limit(int(query.limit))
        return [(snap.id, snap.to_dict()) for snap in q.stream()]
