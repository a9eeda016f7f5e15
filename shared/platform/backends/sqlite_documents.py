"""Embedded document store on SQLite (one JSON document per row).

Transactions take SQLite's write lock up front (``BEGIN IMMEDIATE``), so two
racing read-modify-writes serialise instead of losing an update. Writes are
buffered and applied at commit and a read after a write is refused, as in
Firestore, so code that passes here behaves the same on Firestore.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from shared.platform.ports import AlreadyExists, Doc, Query, ReadAfterWrite

T = TypeVar("T")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
"""


def check_id(doc_id: str) -> str:
    """Refuse ids Firestore would refuse, so both backends accept the same ids."""
    if not doc_id or "/" in doc_id or doc_id in (".", "..") or (
            doc_id.startswith("__") and doc_id.endswith("__")):
        raise ValueError(f"invalid document id {doc_id!r}")
    return doc_id


def _json_path(field: str) -> str:
    return "$." + ".".join(f'"{part}"' for part in field.split("."))


def connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode that waits for locks instead of failing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class _SqliteTransaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._writes: list[tuple[str, str, str, str]] = []

    def get(self, collection: str, doc_id: str) -> Doc | None:
        if self._writes:
            raise ReadAfterWrite("read after write in a transaction: read everything first")
        row = self._conn.execute("SELECT data FROM documents WHERE collection=? AND id=?",
                                 (collection, check_id(doc_id))).fetchone()
        return json.loads(row[0]) if row else None

    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        self._writes.append(("set", collection, check_id(doc_id), _encode(data)))

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        self._writes.append(("create", collection, check_id(doc_id), _encode(data)))

    def commit(self) -> None:
        for kind, collection, doc_id, data in self._writes:
            if kind == "create":
                try:
                    self._conn.execute("INSERT INTO documents VALUES (?, ?, ?)",
                                       (collection, doc_id, data))
                except sqlite3.IntegrityError as exc:
                    raise AlreadyExists(f"{collection}/{doc_id}") from exc
            else:
                self._conn.execute("INSERT OR REPLACE INTO documents VALUES (?, ?, ?)",
                                   (collection, doc_id, data))


class SqliteDocumentStore:
    """DocumentStore on one SQLite file, safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
        return conn

    def get(self, collection: str, doc_id: str) -> Doc | None:
        row = self._conn().execute("SELECT data FROM documents WHERE collection=? AND id=?",
                                   (collection, check_id(doc_id))).fetchone()
        return json.loads(row[0]) if row else None

    def set(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        self._conn().execute("INSERT OR REPLACE INTO documents VALUES (?, ?, ?)",
                             (collection, check_id(doc_id), _encode(data)))

    def create(self, collection: str, doc_id: str, data: Mapping[str, Any]) -> None:
        try:
            self._conn().execute("INSERT INTO documents VALUES (?, ?, ?)",
                                 (collection, check_id(doc_id), _encode(data)))
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"{collection}/{doc_id}") from exc

    def delete(self, collection: str, doc_id: str) -> None:
        self._conn().execute("DELETE FROM documents WHERE collection=? AND id=?",
                             (collection, check_id(doc_id)))

    def transaction(self, fn: Callable[[Any], T]) -> T:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            txn = _SqliteTransaction(conn)
            result = fn(txn)
            txn.commit()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def query(self, query: Query) -> list[tuple[str, Doc]]:
        sql = ["SELECT id, data FROM documents WHERE collection = ?"]
        params: list[Any] = [query.collection]
        for flt in query.filters:
            sql.append(f"AND json_extract(data, ?) {'=' if flt.op == '==' else flt.op} ?")
            params += [_json_path(flt.field), flt.value]
        if query.order_by:
            # Firestore leaves out documents that lack the ordering field.
            sql.append("AND json_type(data, ?) IS NOT NULL")
            params.append(_json_path(query.order_by))
            # Ties break on the id, in the same direction, as Firestore does.
            direction = "DESC" if query.descending else "ASC"
            sql.append(f"ORDER BY json_extract(data, ?) {direction}, id {direction}")
            params.append(_json_path(query.order_by))
        else:
            sql.append("ORDER BY id")
        if query.limit is not None:
            sql.append("LIMIT ?")
            params.append(int(query.limit))
        rows = self._conn().execute(" ".join(sql), params).fetchall()
        return [(doc_id, json.loads(data)) for doc_id, data in rows]


def _encode(data: Mapping[str, Any]) -> str:
    """A document as strict JSON: NaN would make every later query of its collection fail."""
    try:
        return json.dumps(dict(data), allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"document holds a non-finite number (store null for 'not measured'): {exc}") from exc
