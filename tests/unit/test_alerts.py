"""Alerts an operator can act on: severity moves both ways, logs at its level, messages say where and what."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from shared.monitor.alert_rules import COVERAGE_MIN_PAIRS, HIGH, MEDIUM, Condition, coverage_condition
from shared.monitor.alerts import DEESCALATED, ESCALATED, OPENED, RESOLVED, AlertBook, AlertEvent, Notifier
from shared.platform.backends import connect
from shared.platform.settings import Settings

WINDOW = {"length": "1 day, 0:00:00", "data": {"start": "2017-02-05T00:00", "end": "2017-02-11T23:50"}}


def condition(severity: str | None, value: float) -> Condition:
    return Condition("drift", "inputs:Temperature", value, 0.2, severity is not None, severity)


@pytest.fixture
def backends(tmp_path):
    settings = Settings.from_env({"STATE_DIR": str(tmp_path / "state")})
    backends = connect(settings)
    backends.events.ensure_topic(settings.topic_alerts)
    return backends


def test_severity_steps_down_as_well_as_up_and_each_change_is_an_event(backends):
    book = AlertBook(backends.documents, timedelta(hours=6))
    steps = [(HIGH, 0.5), (MEDIUM, 0.25), (MEDIUM, 0.26), (HIGH, 0.4), (None, 0.05)]
    events = [book.apply([condition(s, v)], f"run-{i}", WINDOW) for i, (s, v) in enumerate(steps)]
    assert [[e.event for e in run] for run in events] == [[OPENED], [DEESCALATED], [], [ESCALATED], [RESOLVED]]
    stored = backends.documents.get("alerts", "drift:inputs:Temperature")
    assert stored["status"] == "resolved" and stored["notifications"] == 3
    assert events[1][0].alert["severity"] == MEDIUM


@pytest.mark.parametrize("event,severity,level", [
    (OPENED, HIGH, logging.ERROR), (OPENED, MEDIUM, logging.WARNING), (ESCALATED, HIGH, logging.ERROR),
    (DEESCALATED, MEDIUM, logging.INFO), (RESOLVED, None, logging.INFO)])
def test_a_change_is_logged_at_the_alerts_severity(backends, caplog, event, severity, level):
    notifier = Notifier(backends.events, "alerts", "forecast-prod")
    alert = {"alert_id": "drift:inputs:Temperature", "metric": "drift", "subject": "inputs:Temperature",
             "value": 1.3, "threshold": 0.2, "severity": severity, "window": WINDOW}
    with caplog.at_level(logging.INFO, logger="forecast.alerts"):
        notifier.notify(AlertEvent(event, alert), "gs://bucket/reports/r1/report.html")
    (record,) = [r for r in caplog.records if r.name == "forecast.alerts"]
    assert record.levelno == level and event in record.getMessage()


def test_the_chat_message_names_the_deployment_condition_window_and_report(backends):
    notifier = Notifier(backends.events, "alerts", "forecast-prod")
    alert = {"alert_id": "drift:inputs:Temperature", "metric": "drift", "subject": "inputs:Temperature",
             "target": None, "value": 1.3, "threshold": 0.2, "severity": HIGH, "window": WINDOW,
             "detail": "PSI"}
    text = notifier.text(AlertEvent(OPENED, alert), "gs://bucket/reports/r1/report.html")
    assert text.splitlines() == [
        "[HIGH opened] forecast-prod: drift inputs:Temperature",
        "value 1.3 vs threshold 0.2 PSI",
        "window 1 day, 0:00:00, data 2017-02-05T00:00..2017-02-11T23:50",
        "report gs://bucket/reports/r1/report.html"]
    resolved = notifier.text(AlertEvent(RESOLVED, {**alert, "value": 0.05}), "/tmp/r2/report.html")
    assert resolved.startswith("[RESOLVED] forecast-prod: drift") and "report /tmp/r2/report.html" in resolved



@pytest.mark.parametrize("inside,pairs,severity", [
    (230, 288, None),  # 79.9 %: as promised
    (144, 288, None),  # 50.0 %: low, as a real holiday week can be
    (143, 288, MEDIUM),  # 49.7 %
    (72, 288, MEDIUM),  # 25.0 %
    (71, 288, HIGH),  # 24.7 %
    (0, 1008, HIGH),  # intervals of no width
])
def test_interval_coverage_fires_below_its_floors(inside, pairs, severity):
    condition = coverage_condition("zone1", "zone1-v7", inside, pairs, 0.8)
    assert condition is not None
    assert (condition.firing, condition.severity) == (severity is not None, severity)
    assert condition.key == "interval_coverage:zone1" and condition.model_version == "zone1-v7"
    assert condition.value == pytest.approx(inside / pairs) and condition.threshold == 0.5
    assert condition.detail == (f"{inside / pairs * 100:.1f} % of {pairs:,} actuals inside the 80 % interval "
                                "(medium below 50 %, high below 25 %)")


def test_interval_coverage_is_not_judged_on_too_few_pairs():
    assert COVERAGE_MIN_PAIRS == 288  # two days of 10-minute slots
    assert coverage_condition("zone1", "zone1-v7", 0, COVERAGE_MIN_PAIRS - 1, 0.8) is None
    assert coverage_condition("zone1", "zone1-v7", 0, COVERAGE_MIN_PAIRS, 0.8) is not None
