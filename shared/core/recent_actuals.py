"""The recent actuals predict needs for history features, read from stored batches.

History features at time t reach back 15 days for Tetouan (the day-ahead
variant's same-slot value 14 days before the previous day), so predict keeps
only the newest accepted batches covering that span plus a week. It re-reads
them only when the dataset cursor says newer data was stored, or that a batch
was retracted (only accepted batches are read). numpy
and the csv module only: this runs on predict's cold-start path.
"""

from __future__ import annotations

import csv
import io
import threading
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from shared.core.dataset_spec import TIMESTAMP, DatasetSpec
from shared.core.features import Actuals, reach_slots
from shared.platform import names
from shared.platform.backends import Backends
from shared.platform.ports import where

# Batches read per refresh at most (daily batches: about 23 are needed).
MAX_BATCHES = 60
# Kept beyond the history reach by default, so requests for the last week
# (backtests, the holdout the registry reports) get history features too.
EXTRA_DAYS = 7


@dataclass(frozen=True)
class ActualsSnapshot:
    """Actuals as of one cursor position: the lookup index and the raw columns."""

    cursor: str | None
    actuals: Actuals | None
    rows: int
    timestamps: np.ndarray = field(default_factory=lambda: np.zeros(0, "datetime64[m]"))
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    revision: int = 0

    @property
    def last(self) -> np.datetime64 | None:
        return None if self.actuals is None else self.actuals.last


def parse_batch(raw: bytes, spec: DatasetSpec) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A stored (canonical CSV) batch as timestamps and its feature and target columns."""
    reader = csv.reader(io.StringIO(raw.decode()))
    header = next(reader)
    rows = list(reader)
    col = {name: i for i, name in enumerate(header)}
    ts = np.array([r[col[TIMESTAMP]] for r in rows], dtype="datetime64[m]")
    values = {c.name: np.array([float(r[col[c.name]]) for r in rows]) for c in spec.value_columns}
    return ts, values


class RecentActuals:
    """Per-instance cache of the recent actuals, refreshed when the cursor moves."""

    def __init__(self, backends: Backends, spec: DatasetSpec, extra: timedelta = timedelta(days=EXTRA_DAYS)) -> None:
        self.backends = backends
        self.spec = spec
        slot_minutes = int(spec.interval.total_seconds() // 60)
        self.reach = np.timedelta64((reach_slots(spec) + 1) * slot_minutes
                                    + int(extra.total_seconds() // 60), "m")
        self._lock = threading.Lock()
        self.snapshot = ActualsSnapshot(None, None, 0)

    def refresh(self) -> ActualsSnapshot:
        """Reload when newer data has been stored; returns the current snapshot."""
        cursor_doc = self.backends.documents.get(names.CURSORS, self.spec.name) or {}
        cursor = cursor_doc.get("last_timestamp")
        # A retraction bumps the revision without moving the cursor.
        revision = int(cursor_doc.get("revision") or 0)
        if (cursor, revision) == (self.snapshot.cursor, self.snapshot.revision):
            return self.snapshot
        with self._lock:
            if (cursor, revision) != (self.snapshot.cursor, self.snapshot.revision):
                self.snapshot = self._load(cursor, revision)
        return self.snapshot

    def _load(self, cursor: str | None, revision: int) -> ActualsSnapshot:
        if cursor is None:
            return ActualsSnapshot(None, None, 0, revision=revision)
        newest = np.datetime64(cursor, "m")
        found = self.backends.documents.query(where(
            names.BATCHES, ("status", "==", "accepted"), order_by="end", descending=True,
            limit=MAX_BATCHES))
        column_names = [c.name for c in self.spec.value_columns]
        stamps: list[np.ndarray] = []
        values: dict[str, list[np.ndarray]] = {n: [] for n in column_names}
        for _, batch in found:
            if np.datetime64(batch["end"], "m") < newest - self.reach:
                break
            ts, cols = parse_batch(self.backends.blobs.read(batch["object"]), self.spec)
            keep = ts >= newest - self.reach
            stamps.append(ts[keep])
            for n in column_names:
                values[n].append(cols[n][keep])
        if not stamps:
            return ActualsSnapshot(cursor, None, 0, revision=revision)
        ts = np.concatenate(stamps)
        order = np.argsort(ts, kind="stable")
        columns = {n: np.concatenate(v)[order] for n, v in values.items()}
        actuals = Actuals(ts[order], {t: columns[t] for t in self.spec.target_names},
                          int(self.spec.interval.total_seconds() // 60))
        return ActualsSnapshot(cursor, actuals, len(ts), ts[order], columns, revision)
