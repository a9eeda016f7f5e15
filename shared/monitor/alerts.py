"""Alert state and notifications.

Each condition key has one document in ``alerts``. A firing condition opens an
alert (or re-opens a resolved one); while it stays open it notifies again only
after the cool-down, or at once when its severity changes (up or down); a
cleared condition resolves it. State changes commit in a transaction first;
notifications go out after: a log record at the alert's severity (WARNING for
medium, ERROR for high, so a Cloud Logging severity filter catches it), the
``alerts`` topic always, the chat webhook when configured. A failing webhook is
recorded and never fails the run.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shared.monitor.alert_rules import HIGH, Condition
from shared.platform import names
from shared.platform.http import http_session
from shared.platform.log import get_logger
from shared.platform.ports import DocumentStore, EventBus, where
from shared.platform.timefmt import iso_utc

log = get_logger("alerts")
OPENED, REMINDER, ESCALATED, DEESCALATED, RESOLVED = "opened", "reminder", "escalated", "deescalated", "resolved"
_RANK = {None: 0, "medium": 1, HIGH: 2}


@dataclass(frozen=True)
class AlertEvent:
    """A change worth telling someone about."""

    event: str
    alert: Mapping[str, Any]


class AlertBook:
    """Open, remind, escalate and resolve alerts from evaluated conditions."""

    def __init__(self, documents: DocumentStore, cooldown: timedelta,
                 clock: Callable[[], float] = time.time) -> None:
        self.documents = documents
        self.cooldown = cooldown.total_seconds()
        self.clock = clock

    def apply(self, conditions: Iterable[Condition], run_id: str, window: Mapping[str, Any]) -> list[AlertEvent]:
        events = []
        for condition in conditions:
            event = self.documents.transaction(functools.partial(self._step, condition=condition, run_id=run_id,
                                                                 window=window))
            if event is not None:
                events.append(event)
        return events

    def open_alerts(self) -> list[dict[str, Any]]:
        """Every open alert, with its ``alert_id`` (the condition key)."""
        return [{**doc, "alert_id": key}
                for key, doc in self.documents.query(where(names.ALERTS, ("status", "==", "open")))]

    def _step(self, txn: Any, condition: Condition, run_id: str, window: Mapping[str, Any]) -> AlertEvent | None:
        now = self.clock()
        current = txn.get(names.ALERTS, condition.key)
        is_open = current is not None and current.get("status") == "open"
        measured = {"metric": condition.metric, "subject": condition.subject, "target": condition.target,
                    "model_version": condition.model_version, "value": condition.value,
                    "threshold": condition.threshold, "detail": condition.detail, "window": dict(window),
                    "last_run": run_id, "last_seen_at": iso_utc(now)}
        if not condition.firing:
            if not is_open:
                return None
            doc = {**current, **measured, "status": "resolved", "resolved_at": iso_utc(now)}
            txn.set(names.ALERTS, condition.key, doc)
            return AlertEvent(RESOLVED, {**doc, "alert_id": condition.key})
        if not is_open:
            doc = {**measured, "status": "open", "severity": condition.severity, "opened_at": iso_utc(now),
                   "notified_at": now, "notifications": 1,
                   "reopened": current is not None}
            txn.set(names.ALERTS, condition.key, doc)
            return AlertEvent(OPENED, {**doc, "alert_id": condition.key})
        change = _RANK[condition.severity] - _RANK[current.get("severity")]
        due = now - float(current.get("notified_at", 0)) >= self.cooldown
        doc = {**current, **measured, "severity": condition.severity}
        event = ESCALATED if change > 0 else DEESCALATED if change < 0 else REMINDER if due else None
        if event:
            doc.update(notified_at=now, notifications=int(current.get("notifications", 1)) + 1)
        txn.set(names.ALERTS, condition.key, doc)
        return AlertEvent(event, {**doc, "alert_id": condition.key}) if event else None


class Notifier:
    """Publishes alert events on the alerts topic and posts them to a chat webhook."""

    def __init__(self, events: EventBus, topic: str, deployment: str, webhook_url: str = "",
                 timeout: tuple[float, float] = (3.05, 10.0), retries: int = 2) -> None:
        self.events = events
        self.topic = topic
        self.deployment = deployment
        self.webhook_url = webhook_url
        self.timeout = timeout
        self.retries = retries

    def text(self, event: AlertEvent, report: str = "") -> str:
        """The chat message: deployment, change, condition, value vs threshold, window, report."""
        a = event.alert
        head = "RESOLVED" if event.event == RESOLVED else f"{str(a.get('severity')).upper()} {event.event}"
        target = f" [{a['target']}]" if a.get("target") else ""
        detail = f" {a['detail']}" if a.get("detail") else ""
        window = a.get("window") or {}
        data = window.get("data") or {}
        span = f"window {window.get('length', '?')}"
        if data.get("start") and data.get("end"):
            span += f", data {data['start']}..{data['end']}"
        lines = [f"[{head}] {self.deployment}: {a['metric']} {a['subject']}{target}",
                 f"value {a['value']:.4g} vs threshold {a['threshold']:.4g}{detail}", span]
        if report:
            lines.append(f"report {report}")
        return "\n".join(lines)

    def _post(self, payload: Mapping[str, Any]) -> str:
        import requests

        # A webhook post is not idempotent in general, but chat webhooks tolerate a duplicate
        # message better than a lost alert, so POST is retried too.
        with http_session(self.retries, 0.2, methods=("POST",)) as session:
            try:
                response = session.post(self.webhook_url, json=payload, timeout=self.timeout)
            except requests.RequestException as exc:
                return f"failed: {type(exc).__name__}"
        return "ok" if response.status_code < 300 else f"failed: HTTP {response.status_code}"

    def notify(self, event: AlertEvent, report: str = "") -> dict[str, Any]:
        """Log, publish, then post; returns what happened to each channel."""
        alert = event.alert
        level = (logging.INFO if event.event in (RESOLVED, DEESCALATED)
                 else logging.ERROR if alert.get("severity") == HIGH else logging.WARNING)
        log.log(level, f"alert {event.event}: {alert['alert_id']}", fields={
            "alert_id": alert["alert_id"], "event": event.event, "severity": alert.get("severity"),
            "value": alert.get("value"), "threshold": alert.get("threshold"), "report": report})
        message_id = self.events.publish(
            self.topic, {"kind": "alert", "event": event.event, **alert},
            {"event": event.event, "metric": str(alert["metric"]), "severity": str(alert.get("severity"))})
        outcome: dict[str, Any] = {"alert_id": alert["alert_id"], "event": event.event,
                                   "message_id": message_id}
        if self.webhook_url:
            outcome["webhook"] = self._post({"text": self.text(event, report)})
            if outcome["webhook"] != "ok":
                # The URL carries a token: log the outcome, never the URL.
                log.warning("alert webhook failed", fields={"alert_id": alert["alert_id"],
                                                            "outcome": outcome["webhook"]})
        return outcome
