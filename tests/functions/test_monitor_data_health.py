"""monitor watches its inputs: stale accepted data and failing collection sources open alerts, escalate and resolve."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from shared.collect.sources import HttpSource, SourceUnavailable
from shared.core.dataset_spec import load_spec
from shared.monitor.service import SOURCE_FAILURES_HIGH, Monitor
from shared.platform import names
from shared.platform.ports import where
from shared.platform.settings import Settings, SourceConfig
from shared.platform.timefmt import parse_utc
from tests.functions.test_collect_data import collect, day_csv
from tests.functions.test_monitor import run_monitor
from tests.support.data_server import DataSource
from tests.support.functions import function_app

SPEC = load_spec("tetouan_power")
DAY = timedelta(days=1)


def events_of(summary: dict, metric: str) -> list[tuple[str, str | None]]:
    return [(e["event"], e["severity"]) for e in summary["events"] if e["alert_id"].startswith(metric)]


def test_no_accepted_batch_for_longer_than_the_freshness_limit_alerts_and_new_data_resolves_it(
        settings, backends, monkeypatch):
    collect(function_app("collect_data", settings, monkeypatch), {"window": "P1D"})
    configured = Settings.from_env({**settings.to_environ(), "COLLECT_WINDOW": "P1D", "FRESHNESS_PERIODS": "2"})
    fresh = Monitor(configured, backends, SPEC).data_health(now=_collected_at(backends) + 3600)
    assert [(c.key, c.firing) for c in fresh] == [("freshness:accepted_data", False),
                                                  ("quarantine:replay", False)]
    # Two and a half days later: past 2 collection windows, not yet past 1.5 times that (medium)...
    late = Monitor(configured, backends, SPEC).data_health(now=_collected_at(backends) + 2.5 * 86400)
    assert [(c.firing, c.severity) for c in late] == [(True, "medium"), (False, None)]
    # ...and four days later high.
    stale = Monitor(configured, backends, SPEC).data_health(now=_collected_at(backends) + 4 * 86400)
    assert [(c.firing, c.severity, round(c.value)) for c in stale] == [(True, "high", 96), (False, None, 0)]


def _collected_at(backends) -> float:
    """When the only accepted batch was collected (epoch seconds)."""
    ((_, batch),) = backends.documents.query(where(names.BATCHES, ("status", "==", "accepted")))
    return parse_utc(batch["collected_at"])


def test_a_source_on_its_cached_copy_alerts_medium_and_resolves_when_it_answers_again(
        settings, backends, monkeypatch):
    with DataSource(hang_seconds=1.5) as source:
        source.body = day_csv()
        sources = (f'[{{"name": "feed", "type": "http", "url": "{source.url}", "retries": 0, '
                   f'"backoff_factor": 0.01, "read_timeout": 0.5}}]')
        app = function_app("collect_data", settings, monkeypatch, COLLECT_SOURCES=sources)
        assert collect(app, {"window": "P1D"})[1]["fallback_used"] is False
        assert events_of(run_monitor(settings, monkeypatch), "source_health") == []

        source.mode = "fail"
        assert collect(app, {"window": "P1D"})[1]["fallback_used"] is True
        failing = run_monitor(settings, monkeypatch)
        assert events_of(failing, "source_health") == [("opened", "medium")]
        alert = backends.documents.get(names.ALERTS, "source_health:feed")
        assert "HTTP 500" in alert["detail"] and "cached copy" in alert["detail"]

        source.mode = "ok"
        collect(app, {"window": "P1D"})
        assert events_of(run_monitor(settings, monkeypatch), "source_health") == [("resolved", "medium")]


def source_health(settings, backends) -> list[tuple[bool, str | None, str]]:
    return [(c.firing, c.severity, c.detail) for c in Monitor(settings, backends, SPEC).data_health(time.time())
            if c.metric == "source_health"]


def test_consecutive_failures_escalate_a_source_on_its_cached_copy_to_high(settings, backends):
    with DataSource() as source:
        source.body = day_csv()
        feed = HttpSource(SourceConfig("feed", "http", url=source.url, retries=0), backends)
        feed.remember(feed.fetch(None, DAY))
        assert source_health(settings, backends) == [(False, None, "")]

        source.mode = "fail"
        seen = []
        for _ in range(SOURCE_FAILURES_HIGH + 1):
            assert feed.fetch(None, DAY).fallback_used
            ((firing, severity, detail),) = source_health(settings, backends)
            seen.append((firing, severity))
        assert seen == [(True, "medium")] * (SOURCE_FAILURES_HIGH - 1) + [(True, "high")] * 2
        assert detail.startswith(f"failing ({SOURCE_FAILURES_HIGH + 1} failed calls since the last good answer): ")
        assert "HTTP 500" in detail and detail.endswith("collection runs on the cached copy")

        source.mode = "ok"
        feed.remember(feed.fetch(None, DAY))  # a good answer, validated
        assert source_health(settings, backends) == [(False, None, "")]
        source.mode = "html"
        feed.fetch(None, DAY)  # the count starts again
        assert [s[:2] for s in source_health(settings, backends)] == [(True, "medium")]


def test_a_failing_source_without_a_cached_copy_is_high_at_once(settings, backends):
    with DataSource() as source:
        source.mode = "empty"
        feed = HttpSource(SourceConfig("feed", "http", url=source.url, retries=0), backends)
        with pytest.raises(SourceUnavailable):
            feed.fetch(None, DAY)
    ((firing, severity, detail),) = source_health(settings, backends)
    assert (firing, severity) == (True, "high")
    assert "1 failed call since the last good answer" in detail and "sent an empty response" in detail
    assert detail.endswith("no cached copy: nothing is collected")


def test_a_source_state_from_before_the_failure_count_keeps_its_severity(settings, backends):
    backends.documents.set(names.SOURCE_STATE, "legacy", {
        "last_failure_at": time.time() - 60, "last_success_at": time.time() - 3600,
        "last_failure": "example.org answered HTTP 503", "serving_cache": True, "cached_at": 1.0})
    assert source_health(settings, backends) == [
        (True, "medium", "failing: example.org answered HTTP 503; collection runs on the cached copy")]


def test_a_quarantined_batch_alerts_until_the_source_sends_a_batch_that_passes(settings, backends, monkeypatch):
    def zone1_at_zero(frame):
        return frame.assign(**{"Zone 1 Power Consumption": "0"})

    with DataSource() as source:
        source.body = day_csv(0, 14 * 144)
        sources = f'[{{"name": "feed", "type": "http", "url": "{source.url}", "retries": 0}}]'
        app = function_app("collect_data", settings, monkeypatch, COLLECT_SOURCES=sources)
        assert collect(app, {"window": "P14D"})[1]["status"] == "accepted"
        assert events_of(run_monitor(settings, monkeypatch), "quarantine") == []
        source.body = day_csv(14 * 144, 144, mutate=zone1_at_zero)
        code, refused = collect(app, {"window": "P1D"})
        assert code == 200 and refused["status"] == "rejected" and refused["implausible"] is True
        opened = run_monitor(settings, monkeypatch)
        assert events_of(opened, "quarantine") == [("opened", "high")]
        alert = backends.documents.get(names.ALERTS, "quarantine:feed")
        assert refused["batch_id"] in alert["detail"] and "zone1" in alert["detail"]
        assert "shared.cli release" in alert["detail"]
        source.body = day_csv(14 * 144, 144)
        assert collect(app, {"window": "P1D"})[1]["status"] == "accepted"
    assert events_of(run_monitor(settings, monkeypatch), "quarantine") == [("resolved", "high")]
