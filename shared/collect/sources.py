"""Where new observations come from: pluggable sources, configured as data.

``replay`` serves the bundled series in time order as if it were live. ``http``
fetches CSV or JSON records from a URL with timeouts, urllib3 retries with
exponential backoff on timeouts and 5xx, a minimum interval between calls, an
optional API key header, a size cap enforced while the body streams in, and a
cached copy (with a TTL) of the last good response in the blob store.

A live response is screened before it is handed over: an empty body, one past
the size cap, binary or non-UTF-8 bytes, an HTML page and a body that does not
parse as the configured format are source failures, like HTTP errors, timeouts
and connection errors. On a failure ``fetch`` serves the cached copy, saying so
(``fallback_used``, ``fallback_reason``, ``failure``), or raises
``SourceUnavailable`` when there is none. ``fetch`` never writes the cache: the
collector calls ``remember`` once a response has passed its validation, so the
cache holds the last *good* response, not merely the last readable one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

from shared.core.dataset_spec import TIMESTAMP, DatasetSpec
from shared.core.frames import ParseError, parse_records
from shared.platform import names
from shared.platform.backends import Backends
from shared.platform.errors import ConfigError, UpstreamUnavailable
from shared.platform.http import http_session
from shared.platform.log import get_logger
from shared.platform.ports import NotFound
from shared.platform.settings import SourceConfig

__all__ = ["Fetched", "HttpSource", "ReplaySource", "Source", "SourceConfig", "SourceFailure",
           "SourceUnavailable", "build_source", "build_sources"]

log = get_logger("sources")
# The body is read in pieces of this size, so at most max_bytes + one chunk is ever buffered.
CHUNK_BYTES = 64 * 1024
HTML_TYPES = ("text/html", "application/xhtml+xml")
CONTENT_TYPES = {"csv": "text/csv", "json": "application/json"}


@dataclass(frozen=True)
class SourceFailure:
    """Why one call to a source failed, and what it sent.

    ``body`` is the response body when there was one (cut to the source's
    ``max_bytes`` when it ran past it, then ``truncated``), for a quarantine
    copy; None when nothing was read (a connection error, a timeout, a body
    refused on its Content-Length). ``consecutive`` counts the source's failed
    calls since its last good response, this one included.
    """

    reason: str
    body: bytes | None = field(repr=False)
    consecutive: int
    truncated: bool = False


class SourceUnavailable(UpstreamUnavailable, RuntimeError):
    """The source failed and there is no cached response to fall back on.

    ``failure`` describes the failed call; None when no call was made (rate limited).
    """

    def __init__(self, message: str, failure: SourceFailure | None = None) -> None:
        super().__init__(message)
        self.failure = failure


@dataclass(frozen=True)
class Fetched:
    """What a source returned, and whether it came from the cache.

    ``from_cache``: ``raw`` is the cached copy (a fresh one within the TTL, or a
    fallback). ``fallback_used``: the cache stands in for a live answer, because
    the call failed (``failure`` says how) or was rate limited (``failure`` is
    None); ``fallback_reason`` says why. ``cache_age_seconds``: how old the
    cached copy is, when ``raw`` is one.
    """

    raw: bytes = field(repr=False)
    format: str
    start: datetime | None = None
    from_cache: bool = False
    fallback_used: bool = False
    fallback_reason: str = ""
    failure: SourceFailure | None = None
    cache_age_seconds: float | None = None


class Source(Protocol):
    config: SourceConfig

    def fetch(self, start: datetime | None, window: timedelta) -> Fetched:
        """Records with start <= timestamp < start + window; from the beginning when start is None."""

    def remember(self, fetched: Fetched) -> None:
        """Keep a live response that passed validation as the source's last good copy."""


class ReplaySource:
    """The bundled series, served window by window in time order."""

    # One parsed copy of each file per process, shared by every instance.
    _cache: ClassVar[dict[str, tuple[Any, Any]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, config: SourceConfig, spec: DatasetSpec) -> None:
        self.config = config
        self.spec = spec
        path = Path(config.path) if config.path else spec.replay_data
        if path is None:
            raise ConfigError(f"COLLECT_SOURCES: source {config.name!r}: spec {spec.name} names no "
                              "replay file; set its path")
        self.path = path

    def _table(self) -> tuple[Any, Any]:
        """The file as text cells and its parsed timestamps, read once per process."""
        import pandas as pd

        key = str(self.path.resolve())
        with self._lock:
            if key not in self._cache:
                frame = parse_records(self.path.read_bytes(), "csv")
                ts_col = next(h for h, c in self.spec.rename_map(frame.columns).items()
                              if c == TIMESTAMP)
                stamps = pd.to_datetime(frame[ts_col], format=self.spec.timestamp_format)
                self._cache[key] = (frame, stamps)
            return self._cache[key]

    def fetch(self, start: datetime | None, window: timedelta) -> Fetched:
        frame, stamps = self._table()
        if start is None:
            start = stamps.min()
        mask = (stamps >= start) & (stamps < start + window)
        return Fetched(raw=frame[mask].to_csv(index=False).encode(), format="csv", start=start)

    def remember(self, fetched: Fetched) -> None:
        """Nothing to keep: the file is always there."""


Clock = Callable[[], float]


class _Refused(Exception):
    """A live call that failed: the reason, and the body when one was read."""

    def __init__(self, reason: str, body: bytes | None = None, truncated: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.body = body
        self.truncated = truncated


class HttpSource:
    """Records from a URL, with retries, rate limit, size cap, screening, cache and fallback.

    State in ``source_state/<name>`` (the monitor's source-health alert reads it):
    ``last_call_at``; ``cached_at``, ``cache_object`` and ``last_success_at``
    (set by ``remember``); ``last_failure_at``, ``last_failure``,
    ``serving_cache`` and ``consecutive_failures`` (set by every failed call;
    the count goes back to 0 in ``remember``).
    """

    def __init__(self, config: SourceConfig, backends: Backends, clock: Clock = time.time,
                 environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.backends = backends
        self.clock = clock
        self.environ = os.environ if environ is None else environ
        self.cache_object = f"{names.CACHE}{config.name}/latest.{config.format}"
        self.host = urlsplit(config.url).netloc  # logged instead of the URL: it may carry a key

    # -- state and cache ------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": CONTENT_TYPES[self.config.format]}
        if self.config.api_key_env:
            key = self.environ.get(self.config.api_key_env, "")
            if key:
                headers[self.config.api_key_header] = key
        return headers

    def _state(self) -> dict[str, Any]:
        return self.backends.documents.get(names.SOURCE_STATE, self.config.name) or {}

    def _update_state(self, changes: Callable[[dict[str, Any]], Mapping[str, Any]]) -> dict[str, Any]:
        """Apply ``changes(current state)`` in one transaction; the new state."""
        def apply(txn: Any) -> dict[str, Any]:
            state = dict(txn.get(names.SOURCE_STATE, self.config.name) or {})
            state.update(changes(state))
            txn.set(names.SOURCE_STATE, self.config.name, state)
            return state

        return self.backends.documents.transaction(apply)

    def _read_cache(self, state: Mapping[str, Any]) -> tuple[bytes, float] | None:
        """The last good copy and when it was kept, or None without one."""
        cached_at = float(state.get("cached_at") or 0)
        if not cached_at:
            return None
        try:
            return self.backends.blobs.read(self.cache_object), cached_at
        except NotFound:
            log.warning("source state names a cached copy that is missing", fields={
                "source": self.config.name, "object": self.cache_object})
            return None

    def remember(self, fetched: Fetched) -> None:
        """Keep ``fetched`` as the last good copy; the collector calls it once the data passed validation.

        Writes ``cache/<source>/latest.<format>`` and records the success (which
        resets ``consecutive_failures``). A response served from the cache is
        already the last good copy: nothing changes.
        """
        if fetched.from_cache:
            return
        now = self.clock()
        self.backends.blobs.write(self.cache_object, fetched.raw, CONTENT_TYPES[self.config.format])
        self._update_state(lambda _: {"cached_at": now, "cache_object": self.cache_object,
                                      "last_success_at": now, "consecutive_failures": 0})

    # -- fetching -------------------------------------------------------------------

    def _url(self, start: datetime | None, window: timedelta) -> str:
        iso = {"start": start.isoformat() if start else "",
               "end": (start + window).isoformat() if start else ""}
        return self.config.url.format(**iso)

    def fetch(self, start: datetime | None, window: timedelta) -> Fetched:
        now = self.clock()
        state = self._state()
        cached_at = float(state.get("cached_at") or 0)
        if cached_at and now - cached_at < self.config.cache_ttl_seconds:
            cached = self._read_cache(state)
            if cached is not None:
                return Fetched(raw=cached[0], format=self.config.format, from_cache=True,
                               cache_age_seconds=now - cached[1])
        last_call = float(state.get("last_call_at") or 0)
        wait = self.config.min_interval_seconds - (now - last_call)
        # (Without a minimum interval a concurrent call's later last_call_at is no reason to wait.)
        if self.config.min_interval_seconds and last_call and wait > 0:
            # No call is made: not a failure of the source, so its state is left alone.
            reason = f"rate limited: next call allowed in {wait:.0f} s"
            cached = self._read_cache(state)
            if cached is None:
                raise SourceUnavailable(f"source {self.config.name!r}: {reason}; no cached copy")
            return Fetched(raw=cached[0], format=self.config.format, from_cache=True,
                           fallback_used=True, fallback_reason=reason, cache_age_seconds=now - cached[1])

        self._update_state(lambda _: {"last_call_at": now})
        try:
            raw = self._call(self._url(start, window))
        except _Refused as refused:
            return self._failed(refused)
        return Fetched(raw=raw, format=self.config.format)

    def _failed(self, refused: _Refused) -> Fetched:
        """Record a failed call; the cached copy in its place, or SourceUnavailable without one."""
        now = self.clock()
        cached = self._read_cache(self._state())
        state = self._update_state(lambda s: {
            "last_failure_at": now, "last_failure": refused.reason, "serving_cache": cached is not None,
            "consecutive_failures": int(s.get("consecutive_failures") or 0) + 1})
        failure = SourceFailure(refused.reason, refused.body, int(state["consecutive_failures"]),
                                refused.truncated)
        if cached is None:
            raise SourceUnavailable(f"source {self.config.name!r}: {refused.reason}; no cached copy",
                                    failure)
        log.warning("source failed, serving its cached copy", fields={
            "source": self.config.name, "reason": refused.reason, "consecutive_failures": failure.consecutive,
            "cached_at": cached[1]})
        return Fetched(raw=cached[0], format=self.config.format, from_cache=True, fallback_used=True,
                       fallback_reason=refused.reason, failure=failure, cache_age_seconds=now - cached[1])

    def _call(self, url: str) -> bytes:
        """The screened body of one live call; _Refused saying why otherwise."""
        import requests

        cap, host = self.config.max_bytes, self.host
        try:
            with http_session(self.config.retries, self.config.backoff_factor) as session, \
                    session.get(url, headers=self._headers(), stream=True,
                                timeout=(self.config.connect_timeout, self.config.read_timeout)) as response:
                status = response.status_code
                media = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                length = response.headers.get("Content-Length", "").strip()
                too_long = length.isdigit() and int(length) > cap
                if status >= 400:
                    raise _Refused(f"{host} answered HTTP {status}",
                                   *(None, False) if too_long else self._error_body(response))
                if too_long:
                    raise _Refused(f"{host} announced {int(length)} bytes (Content-Length), more than "
                                   f"the {cap}-byte cap (max_bytes); not read")
                raw, truncated = _read_capped(response, cap)
        except requests.RequestException as exc:
            raise _Refused(f"request to {host} failed: {_describe(exc)}") from exc
        if truncated:
            raise _Refused(f"{host} sent more than the {cap}-byte cap (max_bytes); stopped reading "
                           f"at {cap} bytes", raw, truncated=True)
        reason = _screen(raw, self.config.format, status, media)
        if reason:
            raise _Refused(f"{host} {reason}", raw or None)
        return raw

    def _error_body(self, response: Any) -> tuple[bytes | None, bool]:
        """What an error answer carried (for quarantine), within the cap; None if it cannot be read."""
        import requests

        try:
            body, truncated = _read_capped(response, self.config.max_bytes)
        except requests.RequestException:
            return None, False
        return body or None, truncated


def _read_capped(response: Any, cap: int) -> tuple[bytes, bool]:
    """The body, streamed; past ``cap`` bytes reading stops: its first ``cap`` bytes and True."""
    buffer = bytearray()
    for chunk in response.iter_content(chunk_size=CHUNK_BYTES):
        buffer += chunk
        if len(buffer) > cap:
            del buffer[cap:]
            return bytes(buffer), True
    return bytes(buffer), False


def _screen(raw: bytes, fmt: str, status: int, media: str) -> str:
    """Why a body is not usable records in ``fmt`` (completing "<host> ..."), or "" when it is."""
    what = fmt.upper()
    if not raw.strip():
        return f"sent an empty response (status {status}, {len(raw)} bytes), not {what}"
    head = raw[:512].removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if media in HTML_TYPES or head.startswith((b"<!doctype html", b"<html")):
        return f"sent an HTML page (status {status}, {media or 'no Content-Type'}), not {what}"
    nul = raw.find(b"\x00")
    if nul >= 0:
        return f"sent binary data (a NUL byte at offset {nul}), not {what}"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (f"sent bytes that are not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                f"{exc.start}), not {what}")
    try:
        parse_records(raw, fmt)
    except ParseError as exc:
        return f"sent an unparseable {what} response: {exc}"
    return ""


def _describe(exc: Exception) -> str:
    """Why a request failed, without its URL (which may carry a key)."""
    import requests

    text = str(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout) or "connect timeout" in text:
        return "ConnectTimeout (connect timed out)"
    if isinstance(exc, requests.exceptions.ReadTimeout) or "Read timed out" in text:
        return "ReadTimeout (read timed out)"
    if isinstance(exc, requests.exceptions.RetryError):
        return "RetryError (retries exhausted)"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "ChunkedEncodingError (the body was cut off)"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "ConnectionError (connection failed)"
    return type(exc).__name__


def build_source(config: SourceConfig, spec: DatasetSpec, backends: Backends) -> Source:
    """The source object for a configuration entry."""
    if config.type == "replay":
        return ReplaySource(config, spec)
    return HttpSource(config, backends)


def build_sources(configs: Iterable[SourceConfig], spec: DatasetSpec, backends: Backends) -> dict[str, Source]:
    """Name -> source object for the configured sources (COLLECT_SOURCES)."""
    return {config.name: build_source(config, spec, backends) for config in configs}
