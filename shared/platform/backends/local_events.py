"""Embedded event bus: Pub/Sub push semantics on one SQLite file.

Publishing stores the message and one pending delivery per subscription in a
single transaction, so a published message is never lost. A dispatcher (in
the publishing process, in a test, or in the local stack) pushes due
deliveries to their endpoints with the exact body Pub/Sub push sends. A
delivery that fails or times out is retried with exponential backoff; after the
subscription's maximum attempts it is parked as a dead letter, which can be
listed and replayed onto its topic.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from shared.platform.backends.sqlite_documents import connect
from shared.platform.log import get_logger
from shared.platform.ports import DeadLetter, NotFound, PushSubscription, RetryPolicy
from shared.platform.pubsub_push import check_attributes, encode_data, push_body, rfc3339_now

log = get_logger("event-bus")
ACK_STATUSES = frozenset({102, 200, 201, 202, 204})
_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS subscriptions (
    name TEXT PRIMARY KEY, topic TEXT NOT NULL, endpoint TEXT NOT NULL,
    max_attempts INTEGER NOT NULL, min_backoff REAL NOT NULL, max_backoff REAL NOT NULL,
    ack_deadline REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, data BLOB NOT NULL,
    attributes TEXT NOT NULL, publish_time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    message_id INTEGER NOT NULL, subscription TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL, due REAL NOT NULL, last_error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (message_id, subscription));
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, due);
"""


class LocalEventBus:
    """EventBus and push dispatcher on a SQLite file."""

    def __init__(self, path: Path, project: str, policy: RetryPolicy | None = None) -> None:
        self.path = Path(path)
        self.project = project
        self.policy = policy or RetryPolicy()
        self._local = threading.local()
        self._db().executescript(_SCHEMA)

    def _db(self):  # type: ignore[no-untyped-def]
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
        return conn

    # -- administration -------------------------------------------------------------

    def ensure_topic(self, topic: str) -> None:
        self._db().execute("INSERT OR IGNORE INTO topics VALUES (?)", (topic,))

    def ensure_push_subscription(self, subscription: PushSubscription) -> None:
        self.ensure_topic(subscription.topic)
        p = self.policy
        self._db().execute(
            "INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?, ?, ?, ?, ?)",
            (subscription.name, subscription.topic, subscription.endpoint, p.max_attempts,
             p.min_backoff, p.max_backoff, p.ack_deadline))

    # -- publishing -----------------------------------------------------------------

    def publish(self, topic: str, data: Mapping[str, Any],
                attributes: Mapping[str, str] | None = None) -> str:
        body, attrs = encode_data(data), check_attributes(attributes)
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM topics WHERE name=?", (topic,)).fetchone() is None:
                raise NotFound(f"topic {topic!r} does not exist")
            cur = db.execute("INSERT INTO messages (topic, data, attributes, publish_time) "
                             "VALUES (?, ?, ?, ?)", (topic, body, json.dumps(attrs), rfc3339_now()))
            message_id = cur.lastrowid
            db.execute("INSERT INTO deliveries (message_id, subscription, state, due) "
                       "SELECT ?, name, 'pending', ? FROM subscriptions WHERE topic=?",
                       (message_id, time.time(), topic))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return str(message_id)

    # -- dead letters ---------------------------------------------------------------

    def dead_letters(self, topic: str) -> list[DeadLetter]:
        rows = self._db().execute(
            "SELECT d.message_id, d.subscription, d.attempts, d.last_error, m.data, m.attributes "
            "FROM deliveries d JOIN messages m ON m.id = d.message_id "
            "WHERE d.state='dead' AND m.topic=? ORDER BY d.message_id, d.subscription",
            (topic,)).fetchall()
        return [DeadLetter(id=f"{mid}:{sub}", topic=topic, subscription=sub,
                           data=json.loads(data), attributes=json.loads(attrs),
                           delivery_attempts=attempts, message_id=str(mid), last_error=err)
                for mid, sub, attempts, err, data, attrs in rows]

    def replay_dead_letter(self, topic: str, dead_letter_id: str) -> str:
        letter = next((d for d in self.dead_letters(topic) if d.id == dead_letter_id), None)
        if letter is None:
            raise NotFound(f"no dead letter {dead_letter_id!r} on {topic!r}")
        new_id = self.publish(topic, letter.data,
                              {**letter.attributes, "replayed_from": letter.message_id})
        self._db().execute("UPDATE deliveries SET state='replayed' WHERE message_id=? "
                           "AND subscription=?", (int(letter.message_id), letter.subscription))
        return new_id

    # -- dispatching ----------------------------------------------------------------

    def _claim(self, now: float, limit: int) -> list[tuple[Any, ...]]:
        """Lease due deliveries so that no other dispatcher pushes them meanwhile."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute(
                "SELECT d.message_id, d.subscription, d.attempts, s.endpoint, s.max_attempts, "
                "s.min_backoff, s.max_backoff, s.ack_deadline, m.topic, m.data, m.attributes, "
                "m.publish_time FROM deliveries d JOIN subscriptions s ON s.name = d.subscription "
                "JOIN messages m ON m.id = d.message_id "
                "WHERE d.state IN ('pending', 'leased') AND d.due <= ? ORDER BY d.due LIMIT ?",
                (now, limit)).fetchall()
            for row in rows:
                # A lease lasts the ack deadline: a dispatcher that dies mid-push
                # leaves the delivery due again once it runs out.
                db.execute("UPDATE deliveries SET state='leased', due=? WHERE message_id=? "
                           "AND subscription=?", (now + row[7], row[0], row[1]))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return rows

    @staticmethod
    def _push(endpoint: str, body: dict[str, Any], timeout: float) -> int:
        import requests

        return requests.post(endpoint, json=body, timeout=timeout).status_code

    def _deliver(self, row: tuple[Any, ...]) -> bool:
        (message_id, subscription, attempts, endpoint, max_attempts, min_backoff, max_backoff,
         ack_deadline, _topic, data, attributes, publish_time) = row
        body = push_body(f"projects/{self.project}/subscriptions/{subscription}", str(message_id),
                         data, json.loads(attributes), publish_time)
        try:
            status = self._push(endpoint, body, ack_deadline)
            error = "" if status in ACK_STATUSES else f"HTTP {status}"
        except Exception as exc:  # any transport failure is a failed delivery
            error = f"{type(exc).__name__}: {exc}"
        attempts += 1
        db = self._db()
        if not error:
            db.execute("UPDATE deliveries SET state='acked', attempts=?, last_error='' "
                       "WHERE message_id=? AND subscription=?", (attempts, message_id, subscription))
            return True
        policy = RetryPolicy(max_attempts, min_backoff, max_backoff, ack_deadline)
        state = "dead" if attempts >= max_attempts else "pending"
        db.execute("UPDATE deliveries SET state=?, attempts=?, due=?, last_error=? "
                   "WHERE message_id=? AND subscription=?",
                   (state, attempts, time.time() + policy.backoff(attempts), error, message_id,
                    subscription))
        log.warning("delivery failed", fields={"subscription": subscription, "message_id":
                    str(message_id), "attempt": attempts, "error": error, "dead_lettered":
                    state == "dead"})
        return False

    def deliver_due(self, limit: int = 100, workers: int = 1) -> int:
        """Push every delivery due now; returns how many were attempted."""
        rows = self._claim(time.time(), limit)
        if workers > 1 and len(rows) > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(self._deliver, rows))
        else:
            for row in rows:
                self._deliver(row)
        return len(rows)

    def pending(self) -> int:
        """Deliveries not yet acked or dead-lettered."""
        return self._db().execute("SELECT COUNT(*) FROM deliveries WHERE state IN "
                                  "('pending', 'leased')").fetchone()[0]

    def next_due(self) -> float | None:
        row = self._db().execute("SELECT MIN(due) FROM deliveries WHERE state IN "
                                 "('pending', 'leased')").fetchone()
        return row[0]

    def drain(self, timeout: float = 30.0, workers: int = 1) -> None:
        """Deliver until nothing is pending (retries included); TimeoutError past ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if not self.deliver_due(workers=workers):
                due = self.next_due()
                wait = 0.01 if due is None else max(0.001, min(0.2, due - time.time()))
                if time.monotonic() + wait > deadline:
                    raise TimeoutError(f"{self.pending()} deliveries still pending")
                time.sleep(wait)
            elif time.monotonic() > deadline:
                raise TimeoutError(f"{self.pending()} deliveries still pending")

    def run(self, stop: threading.Event, poll_seconds: float = 0.05, workers: int = 4) -> None:
        """Dispatch until ``stop`` is set (the local stack runs this in a thread).

        Each claimed delivery runs on its own worker, so a long handler does not
        hold back messages on other subscriptions.
        """
        in_flight: set[Any] = set()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            while not stop.is_set():
                in_flight = {f for f in in_flight if not f.done()}
                free = workers - len(in_flight)
                try:
                    rows = self._claim(time.time(), free) if free > 0 else []
                except Exception:
                    log.exception("claiming deliveries failed")
                    rows = []
                in_flight |= {pool.submit(self._deliver, row) for row in rows}
                if not rows:
                    stop.wait(poll_seconds)
