"""The http source against a real server on 127.0.0.1, on both backends.

``fetch`` screens a live response and never caches it; ``remember`` keeps a
validated one as the last good copy. Every failed call (HTTP error, timeout,
connection error, a body that is empty, too large, binary, not UTF-8, an HTML
page or not parseable) is counted and falls back to the cached copy with the
reason and the body for quarantine, or raises SourceUnavailable without a copy.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from datetime import timedelta

import pytest

from shared.collect import sources
from shared.collect.sources import CHUNK_BYTES, Fetched, HttpSource, SourceFailure, SourceUnavailable
from shared.platform import names
from shared.platform.settings import ConfigError, Settings, SourceConfig
from tests.support.data_server import HTML_PAGE, LATIN1_CSV, DataSource
from tools.emulators import free_port

DAY = timedelta(days=1)
GOOD = (b"DateTime,Temperature,Humidity,WindSpeed\n1/1/2017 0:00,6.559,73.8,0.083\n"
        b"1/1/2017 0:10,6.414,74.5,0.083\n")
FRESH = GOOD.replace(b"6.559", b"7.001")
CACHE = "cache/feed/latest.csv"
read_capped = sources._read_capped


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def http_source(backends, url: str, clock=time.time, **keys) -> HttpSource:
    config = SourceConfig("feed", "http", url=url, **{"retries": 0, "read_timeout": 2.0, **keys})
    return HttpSource(config, backends, clock=clock)


def state_of(backends) -> dict:
    return backends.documents.get(names.SOURCE_STATE, "feed") or {}


def failure_of(failed: Fetched | SourceUnavailable) -> SourceFailure:
    """The failure a fallback or a SourceUnavailable carries (there must be one)."""
    failure = failed.failure
    assert isinstance(failure, SourceFailure), failed
    return failure


def good_copy_cached(backends, source: DataSource, feed: HttpSource) -> None:
    """A good answer, remembered: the cache holds GOOD."""
    source.mode, source.body = "ok", GOOD
    feed.remember(feed.fetch(None, DAY))
    assert backends.blobs.read(CACHE) == GOOD


def test_fetch_hands_a_good_response_over_without_caching_it_and_remember_caches_it(backends):
    with DataSource() as source:
        source.body = GOOD
        feed = http_source(backends, source.url)
        fetched = feed.fetch(None, DAY)
        assert fetched == Fetched(raw=GOOD, format="csv")
        assert (fetched.from_cache, fetched.fallback_used, fetched.failure, fetched.cache_age_seconds) == \
            (False, False, None, None)
        assert backends.blobs.list("cache/") == []
        assert "cached_at" not in state_of(backends) and "last_success_at" not in state_of(backends)

        feed.remember(fetched)
        assert backends.blobs.list("cache/") == [CACHE] and backends.blobs.read(CACHE) == GOOD
        state = state_of(backends)
        assert state["cached_at"] == state["last_success_at"] > 0 and state["consecutive_failures"] == 0

        # A response the collector refuses is never remembered: the cache keeps the good one...
        source.body = FRESH
        refused = feed.fetch(None, DAY)
        assert refused.raw == FRESH and not refused.from_cache
        assert backends.blobs.read(CACHE) == GOOD
        # ...and remembering what came from the cache changes nothing.
        source.mode = "fail"
        fallback = feed.fetch(None, DAY)
        feed.remember(fallback)
        assert backends.blobs.read(CACHE) == GOOD and state_of(backends)["consecutive_failures"] == 1


HTML_AS_CSV = b"\n  <!doctype html><html><body>Maintenance</body></html>"
GARBAGE = {
    # mode: (body, content type, status) for "custom", the reason's distinctive part
    "garbage": (None, "sent binary data (a NUL byte at offset 8), not CSV"),
    "html": (None, "sent an HTML page (status 200, text/html), not CSV"),
    "html-labelled-csv": ((HTML_AS_CSV, "text/csv", 200), "sent an HTML page (status 200, text/csv), not CSV"),
    "non-utf8": (None, "sent bytes that are not UTF-8 text (byte 0xe9 at offset 13), not CSV"),
    "empty": (None, "sent an empty response (status 200, 0 bytes), not CSV"),
    "blank": ((b" \r\n\n", "text/csv", 200), "sent an empty response (status 200, 4 bytes), not CSV"),
    "one-column": ((b"only\n1\n2\n", "text/csv", 200), "sent an unparseable CSV response: not CSV records"),
    "fail": (None, "answered HTTP 500"),
    "not-found": ((b"no such feed", "text/plain", 404), "answered HTTP 404"),
}
SENT = {"garbage": b"\x89PNG\r\n\x1a\n\x00\x00garbage\xff\xfe", "html": HTML_PAGE, "non-utf8": LATIN1_CSV,
        "empty": None, "fail": b"upstream broke"}


@pytest.mark.parametrize("kind", GARBAGE)
def test_each_bad_answer_falls_back_to_the_cache_with_its_reason_and_body(backends, kind):
    custom, reason = GARBAGE[kind]
    with DataSource() as source:
        feed = http_source(backends, source.url + "&token=never-in-a-reason")
        good_copy_cached(backends, source, feed)
        if custom is None:
            source.mode = kind
        else:
            source.mode = "custom"
            source.body, source.content_type, source.status = custom
        fetched = feed.fetch(None, DAY)
    host = f"127.0.0.1:{source.server.port}"
    assert fetched.raw == GOOD and fetched.from_cache and fetched.fallback_used
    assert fetched.fallback_reason.startswith(f"{host} {reason}")
    assert "never-in-a-reason" not in fetched.fallback_reason
    assert isinstance(fetched.failure, SourceFailure)
    assert fetched.failure.reason == fetched.fallback_reason and fetched.failure.consecutive == 1
    assert fetched.failure.body == (custom[0] or None if custom else SENT[kind])
    assert not fetched.failure.truncated
    assert fetched.cache_age_seconds is not None and 0 <= fetched.cache_age_seconds < 60
    # The bad answer was not cached, and the failure is on record for the monitor.
    assert backends.blobs.read(CACHE) == GOOD
    state = state_of(backends)
    assert state["consecutive_failures"] == 1 and state["serving_cache"] is True
    assert state["last_failure"] == fetched.fallback_reason and state["last_failure_at"] >= state["last_success_at"]


def test_without_a_cached_copy_a_failure_raises_and_carries_the_body(backends):
    with DataSource() as source:
        source.mode = "html"
        feed = http_source(backends, source.url)
        with pytest.raises(SourceUnavailable, match=r"sent an HTML page .* no cached copy") as err:
            feed.fetch(None, DAY)
    failure = err.value.failure
    assert failure is not None and failure.body == HTML_PAGE and failure.consecutive == 1
    assert "sent an HTML page (status 200, text/html), not CSV" in failure.reason
    assert state_of(backends)["serving_cache"] is False and backends.blobs.list("cache/") == []


def test_every_failed_call_counts_and_a_remembered_answer_resets_the_count(backends):
    dead = f"http://127.0.0.1:{free_port()}/data"  # nothing listens there
    with DataSource(hang_seconds=1.0) as source:
        feed = http_source(backends, source.url, read_timeout=0.3)
        failures: list[SourceFailure] = []
        for mode in ("fail", "hang", "garbage", "empty"):
            source.mode = mode
            with pytest.raises(SourceUnavailable) as err:
                feed.fetch(None, DAY)
            failures.append(failure_of(err.value))
        refused = http_source(backends, dead, connect_timeout=0.5)
        with pytest.raises(SourceUnavailable) as err:
            refused.fetch(None, DAY)
        failures.append(failure_of(err.value))
        assert [f.consecutive for f in failures] == [1, 2, 3, 4, 5]
        assert ["HTTP 500" in failures[0].reason, "ReadTimeout" in failures[1].reason,
                "binary data" in failures[2].reason, "empty response" in failures[3].reason,
                "ConnectionError" in failures[4].reason] == [True] * 5
        assert [f.body is None for f in failures] == [False, True, False, True, True]
        assert state_of(backends)["consecutive_failures"] == 5

        source.mode, source.body = "ok", GOOD
        fetched = feed.fetch(None, DAY)
        assert fetched.failure is None and state_of(backends)["consecutive_failures"] == 5  # not yet validated
        feed.remember(fetched)
        assert state_of(backends)["consecutive_failures"] == 0
        source.mode = "fail"
        assert failure_of(feed.fetch(None, DAY)).consecutive == 1


def test_a_body_announced_larger_than_the_cap_is_refused_without_reading_it(backends):
    with DataSource() as source:
        feed = http_source(backends, source.url, max_bytes=64 * 1024, read_timeout=5.0)
        good_copy_cached(backends, source, feed)
        source.mode, source.size = "oversized", 10 * 1024 ** 3
        started = time.monotonic()
        fetched = feed.fetch(None, DAY)
        elapsed = time.monotonic() - started
    # The server withholds the body: a client reading it would have waited for its 5 s read timeout.
    assert elapsed < 2.0
    assert fetched.fallback_used and fetched.raw == GOOD
    assert fetched.fallback_reason.endswith(
        f"announced {10 * 1024 ** 3} bytes (Content-Length), more than the 65536-byte cap (max_bytes); not read")
    assert failure_of(fetched).body is None and failure_of(fetched).consecutive == 1


def test_an_endless_chunked_body_is_cut_off_at_the_cap_in_bounded_memory(backends, monkeypatch):
    cap = 256 * 1024
    peaks: list[int] = []

    def traced(response, limit):
        # Traced from the first byte read to the last, while the connection is still open (the
        # test server, in this process, allocates 10 MB of its own once the client hangs up).
        tracemalloc.start()
        try:
            return read_capped(response, limit)
        finally:
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()

    monkeypatch.setattr(sources, "_read_capped", traced)
    with DataSource() as source:
        source.mode, source.size, source.chunk_delay = "chunked", None, 0.001  # never ends by itself
        feed = http_source(backends, source.url, max_bytes=cap)
        started = time.monotonic()
        with pytest.raises(SourceUnavailable) as err:
            feed.fetch(None, DAY)
        elapsed = time.monotonic() - started
        time.sleep(0.3)  # the server notices the hang-up at its next write
        sent = source.sent
    failure = failure_of(err.value)
    assert failure.truncated and failure.body is not None
    assert len(failure.body) == cap and failure.body.startswith(b"2017-01-01T00:00:00,")
    assert failure.reason.endswith("sent more than the 262144-byte cap (max_bytes); stopped reading at 262144 bytes")
    assert elapsed < 5.0
    # Read up to the cap plus a chunk, then hung up: the server stopped producing soon after.
    assert sent < cap + 1024 ** 2, sent
    # Buffered at most the cap plus a chunk, and one copy of the cut body.
    (peak,) = peaks
    assert peak < 2 * cap + 4 * CHUNK_BYTES, peak


def test_a_chunked_body_within_the_cap_is_read_whole(backends):
    with DataSource() as source:
        source.mode, source.size = "chunked", 200 * 1024
        fetched = http_source(backends, source.url, max_bytes=1024 ** 2).fetch(None, DAY)
    assert not fetched.from_cache and len(fetched.raw) == source.sent >= 200 * 1024


def test_a_fresh_cached_copy_is_served_from_the_cache_without_a_call(backends):
    clock = Clock()
    with DataSource() as source:
        feed = http_source(backends, source.url, clock=clock, cache_ttl_seconds=3600)
        good_copy_cached(backends, source, feed)
        source.body = FRESH
        clock.now += 600
        fetched = feed.fetch(None, DAY)
        assert fetched.raw == GOOD and fetched.from_cache and not fetched.fallback_used
        assert fetched.failure is None and fetched.cache_age_seconds == 600
        assert len(source.requests) == 1
        clock.now += 3000  # past the TTL: a live call
        assert feed.fetch(None, DAY) == Fetched(raw=FRESH, format="csv")
        assert len(source.requests) == 2
    assert state_of(backends)["consecutive_failures"] == 0 and "last_failure_at" not in state_of(backends)


def test_a_rate_limited_call_serves_the_cache_as_a_fallback_and_is_not_a_failure(backends):
    clock = Clock()
    with DataSource() as source:
        feed = http_source(backends, source.url, clock=clock, min_interval_seconds=3600)
        good_copy_cached(backends, source, feed)
        clock.now += 60
        fetched = feed.fetch(None, DAY)
        assert fetched.raw == GOOD and fetched.from_cache and fetched.fallback_used
        assert fetched.fallback_reason == "rate limited: next call allowed in 3540 s"
        assert fetched.failure is None and fetched.cache_age_seconds == 60
        assert len(source.requests) == 1
    assert state_of(backends)["consecutive_failures"] == 0 and "last_failure_at" not in state_of(backends)


def test_a_rate_limited_call_without_a_cache_raises_without_counting(backends):
    clock = Clock()
    with DataSource() as source:
        source.mode = "fail"
        feed = http_source(backends, source.url, clock=clock, min_interval_seconds=3600)
        with pytest.raises(SourceUnavailable):
            feed.fetch(None, DAY)
        clock.now += 1
        with pytest.raises(SourceUnavailable, match="rate limited") as err:
            feed.fetch(None, DAY)
    assert err.value.failure is None and state_of(backends)["consecutive_failures"] == 1


def test_two_concurrent_failed_calls_are_both_counted(backends):
    with DataSource() as source:
        source.mode = "fail"
        feeds = [http_source(backends, source.url) for _ in range(2)]
        errors: list[BaseException] = []

        def call(feed: HttpSource) -> None:
            try:
                feed.fetch(None, DAY)
            except SourceUnavailable as exc:
                errors.append(exc)

        threads = [threading.Thread(target=call, args=(f,)) for f in feeds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert len(errors) == 2 and state_of(backends)["consecutive_failures"] == 2


def test_max_bytes_defaults_to_32_mib_and_must_be_positive():
    (config,) = Settings.from_env({"COLLECT_SOURCES": '[{"name": "a", "type": "http", "url": "https://x.org/"}]'
                                   }).collect_sources
    assert config.max_bytes == 32 * 1024 * 1024
    for bad in ("0", "-5"):
        with pytest.raises(ConfigError, match=r"^COLLECT_SOURCES: entry 0: max_bytes: must be positive"):
            Settings.from_env({"COLLECT_SOURCES": f'[{{"name": "a", "type": "http", "url": "https://x.org/", '
                                                  f'"max_bytes": {bad}}}]'})
    with pytest.raises(ConfigError, match="max_bytes: must be an integer"):
        Settings.from_env({"COLLECT_SOURCES": '[{"name": "a", "type": "http", "url": "https://x.org/", '
                                              '"max_bytes": 1.5}]'})
