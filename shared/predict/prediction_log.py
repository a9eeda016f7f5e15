"""The prediction log: every request's inputs, outputs, versions and latency, for the monitor.

Requests only append to an in-memory buffer. A background thread writes the
buffer as one JSON-lines object, ``predictions/date=YYYY-MM-DD/<instance>-<seq>.jsonl``
(create-only), when it holds ``PREDICTION_LOG_FLUSH_RECORDS`` requests or its
oldest entry is ``PREDICTION_LOG_FLUSH_SECONDS`` old; a graceful exit (SIGTERM)
flushes what is left within 8 s. Worst case on a hard kill: the unflushed buffer.
"""

from __future__ import annotations

import atexit
import json
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from shared.platform import names
from shared.platform.log import get_logger
from shared.platform.ports import BlobStore
from shared.platform.timefmt import utc_day

log = get_logger("prediction-log")
# Cloud Run gives an instance 10 s between SIGTERM and SIGKILL.
SHUTDOWN_SECONDS = 8.0
_open: weakref.WeakSet[PredictionLog] = weakref.WeakSet()


def close_all(budget: float = SHUTDOWN_SECONDS) -> None:
    """Flush every open log, giving up after ``budget`` seconds in all (shutdown)."""
    deadline = time.monotonic() + budget
    for prediction_log in list(_open):
        worker = threading.Thread(target=prediction_log.close, daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))


atexit.register(close_all)


class PredictionLog:
    """Buffered, batched writer of request records to the blob store."""

    def __init__(self, blobs: BlobStore, flush_records: int, flush_seconds: float,
                 instance: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.blobs = blobs
        self.flush_records = flush_records
        self.flush_seconds = flush_seconds
        self.instance = instance or uuid.uuid4().hex[:12]
        self.clock = clock
        self._buffer: list[dict[str, Any]] = []
        self._oldest: float | None = None
        self._seq = 0
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._tick, name="prediction-log", daemon=True)
        self._timer.start()
        _open.add(self)

    def record(self, entry: dict[str, Any]) -> None:
        """Buffer one request's record; never blocks on storage."""
        with self._lock:
            self._buffer.append(entry)
            if self._oldest is None:
                self._oldest = self.clock()
            due = len(self._buffer) >= self.flush_records
        if due:
            threading.Thread(target=self.flush, name="prediction-log-flush", daemon=True).start()

    def _due(self) -> bool:
        with self._lock:
            return bool(self._buffer) and self._oldest is not None and (
                self.clock() - self._oldest >= self.flush_seconds)

    def _tick(self) -> None:
        while not self._stop.wait(min(1.0, self.flush_seconds)):
            if self._due():
                self.flush()

    def flush(self) -> int:
        """Write the buffer as one object; returns how many records were written."""
        with self._flushing:
            with self._lock:
                entries, self._buffer, self._oldest = self._buffer, [], None
                self._seq += 1
                seq = self._seq
            if not entries:
                return 0
            day = utc_day(self.clock())
            name = f"{names.PREDICTIONS}date={day}/{self.instance}-{seq:06d}.jsonl"
            body = "".join(json.dumps(e, separators=(",", ":"), default=str) + "\n" for e in entries)
            try:
                self.blobs.create(name, body.encode(), "application/x-ndjson")
            except Exception:
                # Put them back: the next flush retries; nothing is dropped silently.
                with self._lock:
                    self._buffer[:0] = entries
                    self._oldest = self._oldest or self.clock()
                log.exception("prediction log flush failed", fields={"records": len(entries)})
                return 0
            return len(entries)

    def close(self) -> None:
        """Stop the timer and flush what is buffered (shutdown)."""
        self._stop.set()
        _open.discard(self)
        self.flush()

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)
