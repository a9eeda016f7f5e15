"""The prediction log: every request's inputs, outputs, versions and latency, for the monitor.

Requests only append to an in-memory buffer. One background flusher per serving
process writes the buffer as one JSON-lines object,
``predictions/date=YYYY-MM-DD/<instance>-<seq>.jsonl`` (create-only; ``<instance>``
is drawn per serving process, so forked workers never share a name), when it
holds ``PREDICTION_LOG_FLUSH_RECORDS`` requests, half of
``PREDICTION_LOG_MAX_ROWS`` rows, or its oldest entry is
``PREDICTION_LOG_FLUSH_SECONDS`` old; a graceful exit (SIGTERM) flushes what is
left within 8 s. Worst case on a hard kill: the unflushed buffer.

The flusher starts lazily, in the process that records: functions-framework's
gunicorn server imports the code in its master and forks the workers, and a
thread started at import does not survive the fork. A failed write keeps the
records, retries with exponential backoff, and the buffer never holds more than
``PREDICTION_LOG_MAX_ROWS`` rows: past that the oldest records are dropped and
counted (``/health``; the next written object carries the count for the monitor).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from shared.platform import json_codec, names
from shared.platform.log import get_logger
from shared.platform.ports import BlobStore
from shared.platform.timefmt import iso_utc, utc_day

log = get_logger("prediction-log")
# Cloud Run gives an instance 10 s between SIGTERM and SIGKILL.
SHUTDOWN_SECONDS = 8.0
MAX_BACKOFF_SECONDS = 60.0
DROPPED_FIELD = names.PREDICTION_LOG_DROPPED
_open: weakref.WeakSet[PredictionLog] = weakref.WeakSet()


def close_all(budget: float = SHUTDOWN_SECONDS) -> None:
    """Flush every open log, giving up after ``budget`` seconds in all (shutdown)."""
    deadline = time.monotonic() + budget
    for prediction_log in list(_open):
        worker = threading.Thread(target=prediction_log.close, daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))


def _after_fork_in_child() -> None:
    for prediction_log in list(_open):
        prediction_log._reset_after_fork()


atexit.register(close_all)
os.register_at_fork(after_in_child=_after_fork_in_child)


class PredictionLog:
    """Buffered, batched, bounded writer of request records to the blob store."""

    def __init__(self, blobs: BlobStore, flush_records: int, flush_seconds: float, max_rows: int,
                 instance: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.blobs = blobs
        self.flush_records = flush_records
        self.flush_seconds = flush_seconds
        self.max_rows = max_rows
        self._given_instance = instance
        self.clock = clock
        self.dropped = 0
        self.failures = 0
        self.last_error = ""
        self.last_written: str | None = None
        self._reset_after_fork()
        _open.add(self)

    def _reset_after_fork(self) -> None:
        """Fresh locks, events and buffer state: a forked child inherits none of the parent's
        threads. And a name of its own: gunicorn's workers are forked from one master, and two
        workers writing ``<instance>-<seq>`` under one name would collide on every object."""
        self.instance = self._given_instance or uuid.uuid4().hex[:12]
        self._seq = 0
        self._buffer: deque[dict[str, Any]] = deque()
        self._rows = 0
        self._oldest: float | None = None
        self._unreported_drops = 0
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._flusher_pid: int | None = None
        self._start_lock = threading.Lock()

    def _ensure_flusher(self) -> None:
        if self._flusher_pid == os.getpid() and self._flusher is not None and self._flusher.is_alive():
            return
        with self._start_lock:
            if self._flusher_pid == os.getpid() and self._flusher is not None and self._flusher.is_alive():
                return
            self._flusher = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._flusher.start()
            self._flusher_pid = os.getpid()

    def record(self, entry: dict[str, Any]) -> None:
        """Buffer one request's record; never blocks on storage."""
        self._ensure_flusher()
        with self._lock:
            self._buffer.append(entry)
            self._rows += int(entry.get("rows", 0))
            if self._oldest is None:
                self._oldest = self.clock()
            self._drop_oldest_over_bound()
            due = self._due_locked()
        if due:
            self._wake.set()

    def _drop_oldest_over_bound(self) -> None:
        dropped = 0
        while self._rows > self.max_rows and len(self._buffer) > 1:
            self._rows -= int(self._buffer.popleft().get("rows", 0))
            dropped += 1
        if dropped:
            self.dropped += dropped
            first = self._unreported_drops == 0
            self._unreported_drops += dropped
            if not first:  # one ERROR per outage, not one per request: /health keeps the count
                return
            log.error("prediction log buffer full: oldest records dropped", fields={
                "dropped": dropped, "dropped_total": self.dropped, "max_rows": self.max_rows,
                "last_error": self.last_error})

    def _due_locked(self) -> bool:
        if not self._buffer:
            return False
        return (len(self._buffer) >= self.flush_records or 2 * self._rows >= self.max_rows
                or (self._oldest is not None and self.clock() - self._oldest >= self.flush_seconds))

    def _run(self) -> None:
        delay = 0.0
        while not self._stop.is_set():
            if delay:
                if self._stop.wait(delay):  # backing off: only a stop cuts the wait short
                    return
            else:
                self._wake.wait(min(1.0, self.flush_seconds))
                self._wake.clear()
            with self._lock:
                due = self._due_locked()
            if self._stop.is_set() or not due:
                continue
            ok = self._flush_once()
            delay = 0.0 if ok else min(MAX_BACKOFF_SECONDS, max(1.0, 2 * delay))

    def flush(self) -> int:
        """Write the buffer as one object now; returns how many records were written (0 on failure)."""
        with self._lock:
            pending = len(self._buffer)
        return pending if pending and self._flush_once() else 0

    def _flush_once(self) -> bool:
        """One write of the whole buffer; on failure the records go back, oldest first."""
        with self._flushing:
            with self._lock:
                entries, oldest, drops = list(self._buffer), self._oldest, self._unreported_drops
                self._buffer.clear()
                self._rows, self._oldest = 0, None
                self._seq += 1
                seq = self._seq
            if not entries:
                return True
            if drops:
                entries[0] = {**entries[0], DROPPED_FIELD: drops}
            day = utc_day(self.clock())
            name = f"{names.PREDICTIONS}date={day}/{self.instance}-{seq:06d}.jsonl"
            body = b"".join(json_codec.dumps(e) + b"\n" for e in entries)
            try:
                self.blobs.create(name, body, "application/x-ndjson")
            except Exception as exc:
                with self._lock:
                    if drops:
                        entries[0] = {k: v for k, v in entries[0].items() if k != DROPPED_FIELD}
                    self._buffer.extendleft(reversed(entries))
                    self._rows = sum(int(e.get("rows", 0)) for e in self._buffer)
                    self._oldest = oldest if oldest is not None else self.clock()
                    self._drop_oldest_over_bound()
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("prediction log flush failed; records kept for a retry",
                          fields={"records": len(entries), "error": self.last_error})
                return False
            with self._lock:
                self._unreported_drops -= drops
            self.last_written = iso_utc()
            return True

    def close(self) -> None:
        """Stop the flusher and write what is buffered (shutdown)."""
        self._stop.set()
        self._wake.set()
        _open.discard(self)
        self._flush_once()

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def status(self) -> dict[str, Any]:
        """What /health shows of the log: buffered records and rows, drops, failures, last write."""
        with self._lock:
            return {"pending_records": len(self._buffer), "pending_rows": self._rows,
                    "max_rows": self.max_rows, "dropped": self.dropped, "write_failures": self.failures,
                    "last_error": self.last_error or None, "last_written": self.last_written}
