"""One collection run: fetch a window, validate it, judge it against history, store it once, announce it.

A batch is accepted only when its rows pass validation (``quality.py``) and its
days are plausible against the accepted history (``plausibility.py``); anything
else is quarantined with its reasons. What a failing source sent is quarantined
too, and its last good response is cached only once a batch from it passed.
Every collection, whatever its outcome, leaves a record in ``collections``.

Every step is keyed by the batch id, which derives from the batch's content, so
a retried or concurrent run converges instead of duplicating:

1. the batch file is written create-only (a second writer finds it there);
2. its record is created in the documents store with ``announced: false``;
3. the dataset cursor moves to the batch's last timestamp;
4. the announcement is published (``data-ready``, or ``alerts`` for a rejected
   batch) and only then is the record marked ``announced``.

A run that dies between 2 and 4 leaves a record that is not announced; every
run first announces such records, so no stored batch goes unannounced and no
announcement names a batch that is not stored. Announcements are therefore
at-least-once: consumers deduplicate by batch id.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.collect.plausibility import PlausibilityConfig, judge
from shared.collect.quality import Check, QualityReport, validate
from shared.collect.sources import Fetched, Source, SourceFailure, SourceUnavailable
from shared.core.dataset_spec import TIMESTAMP, DatasetSpec
from shared.core.frames import ISO_FORMAT, ParseError, content_hash, parse_records, to_canonical_csv
from shared.core.recent_actuals import RecentActuals
from shared.platform import names
from shared.platform.backends import Backends
from shared.platform.log import get_logger
from shared.platform.ports import AlreadyExists, where
from shared.platform.settings import Settings
from shared.platform.timefmt import iso_utc, utc_day, utc_stamp

log = get_logger("collect")
FAILED = "failed"
NOTHING_NEW = "nothing_new"


@dataclass(frozen=True)
class CollectRequest:
    """What one call asks for: which sources, how long a window, optionally where to start."""

    sources: tuple[str, ...]
    window: timedelta
    start: datetime | None = None


def _iso(ts: Any) -> str:
    # Data timestamps are the series' naive local time, written as the stored CSV writes them.
    return ts.strftime(ISO_FORMAT)


class Collector:
    """Runs collections for one dataset on one set of backends."""

    def __init__(self, settings: Settings, backends: Backends, spec: DatasetSpec,
                 sources: Mapping[str, Source], clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.backends = backends
        self.spec = spec
        self.sources = dict(sources)
        self.clock = clock

    # -- state ----------------------------------------------------------------------

    def last_stored(self) -> Any:
        """The newest stored timestamp of the dataset, or None before the first batch."""
        import pandas as pd

        cursor = self.backends.documents.get(names.CURSORS, self.spec.name)
        return pd.Timestamp(cursor["last_timestamp"]) if cursor else None

    def _advance_cursor(self, end: str, batch_id: str) -> None:
        def move(txn: Any) -> None:
            current = txn.get(names.CURSORS, self.spec.name)
            if current and current["last_timestamp"] >= end:
                return
            txn.set(names.CURSORS, self.spec.name, {**(current or {}), "last_timestamp": end,
                                                    "batch_id": batch_id, "updated_at": iso_utc()})

        self.backends.documents.transaction(move)

    # -- announcing -----------------------------------------------------------------

    def _announce(self, record: Mapping[str, Any]) -> str:
        batch_id = record["batch_id"]
        if record["status"] == names.BATCH_ACCEPTED:
            topic = self.settings.topic_data_ready
            payload = {k: record[k] for k in ("batch_id", "dataset", "source", "rows", "start",
                                              "end", "quality_score", "object")}
        else:
            topic = self.settings.topic_alerts
            # Believable bad data is the dangerous kind: an implausible batch is high too.
            shortfall = record["quality_score"] < self.settings.quality_threshold / 1.5
            serious = shortfall or record.get("implausible")
            payload = {"kind": "batch_rejected", "severity": "high" if serious else "medium",
                       "metric": "quality_score", "value": record["quality_score"],
                       "threshold": self.settings.quality_threshold,
                       **{k: record[k] for k in ("batch_id", "dataset", "source", "reasons", "object")}}
        message_id = self.backends.events.publish(
            topic, payload, {"batch_id": batch_id, "dataset": self.spec.name, "kind": record["status"]})

        def mark(txn: Any) -> None:
            current = txn.get(names.BATCHES, batch_id) or dict(record)
            txn.set(names.BATCHES, batch_id, {**current, "announced": True,
                                              "message_id": message_id, "announced_at": iso_utc()})

        self.backends.documents.transaction(mark)
        log.info("batch announced", fields={"batch_id": batch_id, "topic": topic,
                                            "message_id": message_id})
        return message_id

    def announce_pending(self) -> int:
        """Announce stored batches whose announcement a failed run left unsent."""
        pending = self.backends.documents.query(where(names.BATCHES, ("announced", "==", False)))
        for _, record in pending:
            self._announce(record)
        return len(pending)

    # -- storing --------------------------------------------------------------------

    def _partition(self, prefix: str, source: str, day: str) -> str:
        return f"{prefix}{source}/date={day}/"

    def _create(self, name: str, data: bytes, content_type: str) -> None:
        try:
            self.backends.blobs.create(name, data, content_type)
        except AlreadyExists:
            log.info("object already stored by an earlier run", fields={"object": name})

    def _record(self, record: dict[str, Any]) -> dict[str, Any]:
        """Create the batch record, or return the one an earlier run created."""
        try:
            self.backends.documents.create(names.BATCHES, record["batch_id"], record)
            return record
        except AlreadyExists:
            return self.backends.documents.get(names.BATCHES, record["batch_id"]) or record

    def _store_accepted(self, source: str, report: QualityReport, base: dict[str, Any]) -> dict[str, Any]:
        clean = report.clean
        assert clean is not None
        body = to_canonical_csv(clean, self.spec)
        start, end = _iso(clean[TIMESTAMP].iloc[0]), _iso(clean[TIMESTAMP].iloc[-1])
        batch_id = f"{source}-{clean[TIMESTAMP].iloc[0]:%Y%m%dT%H%M}-{content_hash(body)[:12]}"
        folder = self._partition(names.RAW, source, start[:10])
        obj = f"{folder}{batch_id}.csv"
        self._create(obj, body, "text/csv")
        if report.dropped is not None and len(report.dropped):
            dropped = report.dropped.to_csv(index=False).encode()
            self._create(f"{self._partition(names.QUARANTINE, source, start[:10])}{batch_id}-dropped.csv",
                         dropped, "text/csv")
        record = self._record({**base, "batch_id": batch_id, "status": names.BATCH_ACCEPTED,
                               "rows": len(clean), "start": start, "end": end,
                               "object": obj, "sha256": content_hash(body)})
        self._advance_cursor(end, batch_id)
        return record

    def _store_rejected(self, source: str, raw: bytes, fmt: str, base: dict[str, Any]) -> dict[str, Any]:
        digest = content_hash(raw)
        day = utc_day(self.clock())
        batch_id = f"{source}-rejected-{digest[:16]}"
        folder = self._partition(names.QUARANTINE, source, day)
        obj = f"{folder}{batch_id}.{fmt}"
        self._create(obj, raw, "text/csv" if fmt == "csv" else "application/json")
        self._create(f"{folder}{batch_id}.reasons.json",
                     json.dumps({"reasons": base["reasons"], "checks": base["checks"]}, indent=1).encode(),
                     "application/json")
        return self._record({**base, "batch_id": batch_id, "status": names.BATCH_REJECTED, "object": obj,
                             "sha256": digest})

    # -- one source -----------------------------------------------------------------

    def collect_source(self, name: str, window: timedelta, start: datetime | None) -> dict[str, Any]:
        """Collect one window from one source; the result is the response body for it.

        Whatever the outcome, it is kept as a record in ``collections`` with its reasons.
        """
        source = self.sources[name]
        last = self.last_stored()
        begin = start or (last + self.spec.interval if last is not None else None)
        try:
            fetched = source.fetch(begin, window)
        except SourceUnavailable as exc:
            log.error("source unavailable", fields={"source": name, "error": str(exc)})
            result = {"status": FAILED, "dataset": self.spec.name, "source": name, "error": str(exc),
                      "fallback_used": False, "collected_at": iso_utc(),
                      **self._source_failure(name, exc.failure)}
            return self._finish(result)
        result = self._collect_fetched(name, source, fetched, window, last)
        if fetched.failure is not None:
            result.update(self._source_failure(name, fetched.failure))
            if result["status"] == NOTHING_NEW:
                # The cached copy held nothing new: the collection failed, whatever the cache says.
                result = {**result, "status": FAILED,
                          "error": f"{fetched.failure.reason}; the cached copy holds nothing new"}
        return self._finish(result)

    def _collect_fetched(self, name: str, source: Source, fetched: Fetched, window: timedelta,
                         last: Any) -> dict[str, Any]:
        try:
            report = validate(parse_records(fetched.raw, fetched.format), self.spec, last,
                              self.settings.quality_threshold)
        except ParseError as exc:
            check = Check("parse", 1, 1, str(exc))
            report = QualityReport(checks=[check], score=0.0, accepted=False, new_rows=1,
                                   reasons=[f"parse: {exc}"])
        if report.accepted:
            report = report.judged(self._plausibility(report.clean))
        base = {"dataset": self.spec.name, "source": name, "quality_score": report.score,
                "checks": [c.as_dict() for c in report.checks], "reasons": report.reasons,
                "unknown_columns": report.unknown_columns, "implausible": report.implausible,
                "duplicates_dropped": report.overlap_rows, "fallback_used": fetched.fallback_used,
                "fallback_reason": fetched.fallback_reason, "from_cache": fetched.from_cache,
                "collected_at": iso_utc(), "announced": False,
                "window": {"start": _iso(fetched.start) if fetched.start is not None else None,
                           "end": _iso(fetched.start + window) if fetched.start is not None else None}}
        self._note_schema(name, report.unknown_columns, report.checks)
        if report.nothing_new:
            if not fetched.from_cache:
                source.remember(fetched)
            return {**base, "status": NOTHING_NEW, "rows": 0}
        if report.accepted:
            base["rows_dropped"] = len(report.dropped) if report.dropped is not None else 0
            record = self._store_accepted(name, report, base)
            if not fetched.from_cache:
                source.remember(fetched)
        else:
            record = self._store_rejected(name, fetched.raw, fetched.format, base)
        if not record.get("announced"):
            record = {**record, "message_id": self._announce(record), "announced": True}
        return record

    def _plausibility(self, clean: Any) -> list[Check]:
        """The batch's days against the accepted history before them (shared/collect/plausibility.py)."""
        import pandas as pd

        config = PlausibilityConfig.from_spec(self.spec)
        if not config.enabled:
            return []
        snapshot = RecentActuals(self.backends, self.spec, timedelta(days=config.history_days)).refresh()
        history = pd.DataFrame({TIMESTAMP: snapshot.timestamps.astype("datetime64[ns]"),
                                **snapshot.columns})
        first = clean[TIMESTAMP].min()
        history = history[(history[TIMESTAMP] < first)
                          & (history[TIMESTAMP] >= first - timedelta(days=config.history_days))]
        return judge(history.reset_index(drop=True), clean, self.spec)

    def _note_schema(self, name: str, unknown: list[str], checks: list[Check]) -> None:
        """Keep the source's unknown columns; announce a change (the source changed its schema)."""
        if not any(c.name == "schema" for c in checks):
            return  # nothing was read (a parse failure)

        def swap(txn: Any) -> list[str]:
            state = txn.get(names.SOURCE_STATE, name) or {}
            before = list(state.get("unknown_columns") or [])
            if before != unknown:
                txn.set(names.SOURCE_STATE, name, {**state, "unknown_columns": unknown})
            return before

        before = self.backends.documents.transaction(swap)
        if unknown and before != unknown:
            self.backends.events.publish(self.settings.topic_alerts, {
                "kind": "schema_changed", "severity": "medium", "dataset": self.spec.name,
                "source": name, "unknown_columns": unknown, "previous_unknown_columns": before,
                "detail": "the source sends columns the dataset spec does not know; they are left out"},
                {"dataset": self.spec.name, "kind": "schema_changed"})
            log.warning("source schema changed", fields={"source": name, "unknown_columns": unknown})

    def _source_failure(self, name: str, failure: SourceFailure | None) -> dict[str, Any]:
        """Keep what a failing source sent in quarantine; the result's account of the failure."""
        if failure is None:
            return {}
        account: dict[str, Any] = {"reason": failure.reason,
                                   "consecutive_failures": failure.consecutive}
        if failure.body:
            digest = content_hash(failure.body)
            folder = self._partition(names.QUARANTINE, name, utc_day(self.clock()))
            obj = f"{folder}{name}-failed-{digest[:16]}.body"
            self._create(obj, failure.body, "application/octet-stream")
            account["quarantine_object"] = obj
        log.warning("source failed", fields={"source": name, **account})
        return {"source_failure": account}

    def _finish(self, result: dict[str, Any]) -> dict[str, Any]:
        """Record the outcome in ``collections`` and log it; the result as the caller sees it."""
        record_id = f"{result['source']}-{utc_stamp(self.clock())}-{uuid.uuid4().hex[:8]}"
        kept = {k: v for k, v in result.items() if k not in ("announced",)}
        # recorded_at orders collections: collected_at has whole seconds, and two collections
        # of one source may fall within one second.
        self.backends.documents.set(names.COLLECTIONS, record_id, {
            **kept, "collection_id": record_id,
            "recorded_at": iso_utc(self.clock(), timespec="microseconds")})
        log.info("collection finished", fields={k: result.get(k) for k in (
            "source", "batch_id", "status", "rows", "start", "end", "quality_score", "fallback_used")})
        return {**result, "collection_id": record_id}

    # -- an operator's release of a quarantined batch -------------------------------

    def release(self, batch_id: str, reason: str, actor: str) -> dict[str, Any]:
        """Accept a batch that plausibility quarantined but an operator knows is real.

        The row checks run again against the current cursor; plausibility does not.
        """
        record = self.backends.documents.get(names.BATCHES, batch_id)
        if record is None or record.get("status") != names.BATCH_REJECTED:
            raise LookupError(f"no rejected batch {batch_id!r}")
        if record.get("released_as"):
            raise ValueError(f"batch {batch_id} was already released as {record['released_as']}")
        if not reason.strip():
            raise ValueError("a release needs a reason")
        raw = self.backends.blobs.read(record["object"])
        fmt = "json" if record["object"].endswith(".json") else "csv"
        report = validate(parse_records(raw, fmt), self.spec, self.last_stored(),
                          self.settings.quality_threshold)
        if not report.accepted:
            raise ValueError(f"batch {batch_id} fails its row checks: {'; '.join(report.reasons)}")
        base = {**{k: record.get(k) for k in ("dataset", "source", "window", "fallback_used",
                                               "fallback_reason", "from_cache")},
                "quality_score": report.score, "checks": [c.as_dict() for c in report.checks],
                "reasons": report.reasons, "unknown_columns": report.unknown_columns,
                "duplicates_dropped": report.overlap_rows, "collected_at": iso_utc(),
                "announced": False, "rows_dropped": len(report.dropped) if report.dropped is not None else 0,
                "released": {"from_batch_id": batch_id, "reason": reason, "actor": actor,
                             "quarantine_reasons": record.get("reasons", [])}}
        accepted = self._store_accepted(str(record["source"]), report, base)
        if not accepted.get("announced"):
            accepted = {**accepted, "message_id": self._announce(accepted), "announced": True}
        self.backends.documents.set(names.BATCHES, batch_id, {
            **record, "released_as": accepted["batch_id"], "released_by": actor})
        log.warning("quarantined batch released", fields={"batch_id": batch_id, "reason": reason,
                                                          "accepted_as": accepted["batch_id"]})
        return accepted

    def run(self, request: CollectRequest) -> list[dict[str, Any]]:
        """Collect from every requested source: one result per source, in request order.

        A source that failed outright (no cached copy either) gives a result with
        status ``failed`` rather than an exception, so the other sources still run.
        """
        self.announce_pending()
        return [self.collect_source(name, request.window, request.start) for name in request.sources]

    @property
    def source_names(self) -> list[str]:
        """The configured sources, in configuration order."""
        return list(self.sources)
