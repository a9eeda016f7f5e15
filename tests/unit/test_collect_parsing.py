"""Parsing of durations, source configuration and collect requests."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.collect.service import parse_request
from shared.core.dataset_spec import load_spec
from shared.platform.durations import parse_duration
from shared.platform.http import ApiError
from shared.platform.settings import Settings
from shared.collect.sources import parse_sources

SPEC = load_spec("tetouan_power")


@pytest.mark.parametrize("text,expected", [
    ("P1D", timedelta(days=1)), ("P7D", timedelta(days=7)), ("PT6H", timedelta(hours=6)),
    ("P1DT12H", timedelta(days=1, hours=12)), ("P2W", timedelta(weeks=2)), ("7d", timedelta(days=7)),
    ("30m", timedelta(minutes=30)), ("1.5h", timedelta(hours=1.5)),
])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "7", "P0D", "-1d", "tomorrow", "P1DT"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_sources_default_and_http_entries_parse():
    configs = parse_sources('[{"name": "replay", "type": "replay"}, {"name": "api-1", "type": '
                            '"http", "url": "https://example.org/x.csv", "cache_ttl_seconds": 3600}]')
    assert [c.type for c in configs] == ["replay", "http"]
    assert configs[1].cache_ttl_seconds == 3600 and configs[1].read_timeout == 10.0


@pytest.mark.parametrize("text,match", [
    ("{}", "list"), ("[]", "list"), ("not json", "JSON"), ('[{"name": "a", "type": "ftp"}]', "type"),
    ('[{"name": "a", "type": "http"}]', "url"), ('[{"name": "a", "type": "replay", "x": 1}]', "unknown"),
    ('[{"name": "a", "type": "replay"}, {"name": "a", "type": "replay"}]', "unique"),
    ('[{"name": "a b", "type": "replay"}]', "name"),
    ('[{"name": "a", "type": "replay", "format": "xml"}]', "format"),
])
def test_bad_source_configuration_says_what_is_wrong(text, match):
    with pytest.raises(ValueError, match=match):
        parse_sources(text)


def test_an_empty_request_collects_every_source_with_the_default_window():
    req = parse_request({}, Settings.from_env({}), SPEC, ["replay", "api"])
    assert req.sources == ("replay", "api") and req.window == timedelta(days=1) and req.start is None


def test_a_request_may_name_a_source_window_and_start():
    req = parse_request({"source": "api", "window": "P7D", "start": "2017-03-01T00:00:00"},
                        Settings.from_env({}), SPEC, ["replay", "api"])
    assert req.sources == ("api",) and req.window == timedelta(days=7)
    assert req.start.isoformat() == "2017-03-01T00:00:00"


def test_every_bad_field_is_listed():
    with pytest.raises(ApiError) as err:
        parse_request({"source": 3, "window": "PT1M", "start": "soon", "extra": True},
                      Settings.from_env({}), SPEC, ["replay"])
    assert err.value.status == 400
    assert sorted(e["field"] for e in err.value.errors) == ["extra", "source", "start", "window"]
