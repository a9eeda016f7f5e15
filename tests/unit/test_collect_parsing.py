"""Parsing of durations, timestamps, source configuration and collect requests."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from shared.collect.api import parse_request, respond
from shared.collect.sources import SourceUnavailable
from shared.core.dataset_spec import load_spec
from shared.core.frames import FORMATS
from shared.platform.errors import InvalidRequest, UpstreamUnavailable
from shared.platform.http import status_for
from shared.platform.settings import SOURCE_FORMATS, ConfigError, Settings
from shared.platform.timefmt import format_duration, parse_duration, parse_iso_local

SPEC = load_spec("tetouan_power")
DAY = timedelta(days=1)


@pytest.mark.parametrize("text,expected", [
    ("P1D", timedelta(days=1)), ("P7D", timedelta(days=7)), ("PT6H", timedelta(hours=6)),
    ("P1DT12H", timedelta(days=1, hours=12)), ("P2W", timedelta(weeks=2)), ("7d", timedelta(days=7)),
    ("30m", timedelta(minutes=30)), ("1.5h", timedelta(hours=1.5)),
])
def test_durations(text, expected):
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "7", "P0D", "-1d", "tomorrow", "P1DT"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text,expected", [
    ("2017-03-01T00:00:00", datetime(2017, 3, 1)), ("2017-03-01 00:10", datetime(2017, 3, 1, 0, 10)),
    ("2017-03-01T00:00:00Z", datetime(2017, 3, 1, 1)), ("2017-03-01T02:00:00+02:00", datetime(2017, 3, 1, 1)),
])
def test_iso_timestamps_become_the_series_local_time(text, expected):
    assert parse_iso_local(text, timedelta(hours=1)) == expected


@pytest.mark.parametrize("value", ["soon", "20170301", "2017-13-01", 3, None])
def test_what_is_not_an_extended_iso_timestamp_is_none(value):
    assert parse_iso_local(value, timedelta(0)) is None


def test_sources_default_and_http_entries_parse():
    configs = Settings.from_env({"COLLECT_SOURCES": '[{"name": "replay", "type": "replay"}, {"name": "api-1", '
                                 '"type": "http", "url": "https://example.org/x.csv", "cache_ttl_seconds": 3600}]'
                                 }).collect_sources
    assert [c.type for c in configs] == ["replay", "http"]
    assert configs[1].cache_ttl_seconds == 3600.0 and configs[1].read_timeout == 10.0
    assert isinstance(configs[1].cache_ttl_seconds, float)


def test_source_formats_are_the_formats_frames_parses():
    assert SOURCE_FORMATS == FORMATS


@pytest.mark.parametrize("text,match", [
    ("{}", "list"), ("[]", "list"), ("not json", "JSON"), ('[{"name": "a", "type": "ftp"}]', "type must"),
    ('[{"name": "a", "type": "http"}]', "url"), ('[{"name": "a", "type": "replay", "x": 1}]', r"unknown keys \['x'\]"),
    ('[{"name": "a", "type": "replay"}, {"name": "a", "type": "replay"}]', "unique"),
    ('[{"name": "a b", "type": "replay"}]', "name must"),
    ('[{"name": "a", "type": "replay", "format": "xml"}]', "format must"),
    ('[{"name": "a", "type": "replay", "retries": "3"}]', "retries: must be an integer"),
    ('[{"type": "replay"}]', r"missing keys \['name'\]"),
])
def test_bad_source_configuration_is_a_config_error_saying_what_is_wrong(text, match):
    with pytest.raises(ConfigError, match=rf"^COLLECT_SOURCES: .*{match}") as err:
        Settings.from_env({"COLLECT_SOURCES": text})
    assert "got" not in str(err.value)  # a source URL may carry a key: the value is never quoted


def test_an_empty_request_collects_every_source_with_the_default_window():
    req = parse_request({}, SPEC, ["replay", "api"], DAY)
    assert req.sources == ("replay", "api") and req.window == DAY and req.start is None


def test_a_request_may_name_a_source_window_and_start():
    req = parse_request({"source": "api", "window": "P7D", "start": "2017-03-01T00:00:00"},
                        SPEC, ["replay", "api"], DAY)
    assert req.sources == ("api",) and req.window == timedelta(days=7)
    assert req.start.isoformat() == "2017-03-01T00:00:00"


def test_every_bad_field_is_listed_and_answers_400():
    with pytest.raises(InvalidRequest) as err:
        parse_request({"source": 3, "window": "PT1M", "start": "soon", "extra": True}, SPEC, ["replay"], DAY)
    assert status_for(err.value) == 400
    assert sorted(e["field"] for e in err.value.errors) == ["extra", "source", "start", "window"]


def test_a_source_failing_outright_answers_502_and_the_others_still_report():
    body, status = respond([{"status": "accepted", "source": "a"}, {"status": "failed", "source": "b"}])
    assert status == 502 and [r["source"] for r in body["results"]] == ["a", "b"]
    assert respond([{"status": "nothing_new"}]) == ({"status": "nothing_new"}, 200)
    assert isinstance(SourceUnavailable("x"), UpstreamUnavailable)
    assert status_for(SourceUnavailable("x")) == 502
