"""Structured logging: one JSON line per record, in the shape Cloud Logging parses.

Cloud Functions (2nd gen) ship stdout lines to Cloud Logging and read
``severity``, ``message`` and ``logging.googleapis.com/trace`` from JSON lines,
so a request's records group under its trace in the console.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

from shared.platform.timefmt import iso_utc

TRACE_KEY = "logging.googleapis.com/trace"
SPAN_KEY = "logging.googleapis.com/spanId"
_trace: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar(
    "trace", default=None)
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d+))?")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_SEVERITY = {"WARNING": "WARNING", "CRITICAL": "CRITICAL", "ERROR": "ERROR",
             "INFO": "INFO", "DEBUG": "DEBUG"}
_configured = False


def parse_trace_headers(headers: Mapping[str, str]) -> tuple[str, str | None] | None:
    """The (trace id, span id) a request carries, from either trace header."""
    cloud = headers.get("X-Cloud-Trace-Context") or headers.get("x-cloud-trace-context")
    if cloud and (m := _CLOUD_TRACE.match(cloud.strip())):
        return m.group(1).lower(), m.group(2)
    parent = headers.get("traceparent") or headers.get("Traceparent")
    if parent and (m := _TRACEPARENT.match(parent.strip().lower())):
        return m.group(1), str(int(m.group(2), 16))
    return None


def bind_trace(headers: Mapping[str, str]) -> None:
    """Attach the request's trace to every record logged in this context."""
    _trace.set(parse_trace_headers(headers))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object for Cloud Logging."""

    def __init__(self, project: str) -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelname, "DEFAULT"),
            "message": record.getMessage(),
            "component": getattr(record, "component", record.name),
            "time": iso_utc(record.created, timespec="microseconds"),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        trace = _trace.get()
        if trace:
            entry[TRACE_KEY] = f"projects/{self.project}/traces/{trace[0]}"
            if trace[1]:
                entry[SPAN_KEY] = trace[1]
        if record.exc_info:
            entry["message"] += "\n" + self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time of the record."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure(project: str, level: str = "INFO", stream: Any = None) -> None:
    """Route the root logger to one JSON line per record (idempotent).

    ``level`` is one of DEBUG, INFO, WARNING, ERROR: the LOG_LEVEL setting, which
    ``Settings.from_env`` has already validated.
    """
    global _configured
    root = logging.getLogger()
    if _configured and stream is None:
        return
    handler = logging.StreamHandler(stream) if stream is not None else _StdoutHandler()
    handler.setFormatter(JsonFormatter(project))
    for old in [h for h in root.handlers if getattr(h, "_json_log", False)]:
        root.removeHandler(old)
    handler._json_log = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # urllib3 logs retried URLs, query strings included: a source URL may carry a key.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    _configured = True


class ComponentLogger(logging.LoggerAdapter):
    """A logger that stamps its component and takes structured fields as keywords."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        fields = kwargs.pop("fields", None) or {}
        extra = kwargs.setdefault("extra", {})
        extra["component"] = self.extra["component"]  # type: ignore[index]
        extra["fields"] = fields
        return msg, kwargs


def get_logger(component: str) -> ComponentLogger:
    """A logger for one component (a function or a shared module)."""
    return ComponentLogger(logging.getLogger(f"forecast.{component}"), {"component": component})
