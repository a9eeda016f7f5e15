"""Structured logging: one JSON line per record with severity, component and trace."""

from __future__ import annotations

import io
import json
import logging

from shared.platform import log


def _capture() -> io.StringIO:
    stream = io.StringIO()
    log.configure("proj-1", "DEBUG", stream=stream)
    return stream


def test_a_record_is_one_json_line_cloud_logging_understands():
    stream = _capture()
    log.bind_trace({"X-Cloud-Trace-Context": "0123456789abcdef0123456789abcdef/42;o=1"})
    log.get_logger("predict").warning("slow request", fields={"latency_ms": 812.5})
    (line,) = stream.getvalue().strip().splitlines()
    entry = json.loads(line)
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "slow request"
    assert entry["component"] == "predict"
    assert entry["latency_ms"] == 812.5
    assert entry[log.TRACE_KEY] == "projects/proj-1/traces/0123456789abcdef0123456789abcdef"
    assert entry[log.SPAN_KEY] == "42"


def test_traceparent_is_understood_and_absence_leaves_no_trace_key():
    stream = _capture()
    log.bind_trace({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    log.get_logger("retrain").info("a")
    log.bind_trace({})
    log.get_logger("retrain").info("b")
    first, second = (json.loads(x) for x in stream.getvalue().strip().splitlines())
    assert first[log.TRACE_KEY].endswith("/4bf92f3577b34da6a3ce929d0e0e4736")
    assert first[log.SPAN_KEY] == str(0x00f067aa0ba902b7)
    assert log.TRACE_KEY not in second


def test_exceptions_are_kept_in_the_message_and_severity_is_error():
    stream = _capture()
    try:
        raise ValueError("boom")
    except ValueError:
        log.get_logger("collect").exception("failed")
    entry = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert entry["severity"] == "ERROR"
    assert "ValueError: boom" in entry["message"]


def test_level_filters_lower_severities():
    stream = io.StringIO()
    log.configure("p", "WARNING", stream=stream)
    log.get_logger("x").info("hidden")
    log.get_logger("x").warning("shown")
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["shown"]


def test_a_test_that_configures_logging_leaves_the_next_one_a_working_root_logger():
    """The conftest fixture puts the configuration back: no handler on a stream a test closed."""
    root = logging.getLogger()
    handlers = [h for h in root.handlers if getattr(h, "_json_log", False)]
    assert all(getattr(h, "stream", None) is None or not h.stream.closed for h in handlers)
    assert not [h for h in handlers if isinstance(getattr(h, "stream", None), io.StringIO)]
