"""Where new observations come from: pluggable sources, configured as data.

``replay`` serves the bundled series in time order as if it were live. ``http``
fetches CSV or JSON records from a URL with timeouts, urllib3 retries with
exponential backoff on timeouts and 5xx, a minimum interval between calls, an
optional API key header, a cached copy with a TTL in the blob store, and a
fallback to the last good cached response when the source fails.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
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
from shared.platform.settings import SourceConfig

__all__ = ["Fetched", "HttpSource", "ReplaySource", "Source", "SourceConfig", "SourceUnavailable",
           "build_source", "build_sources"]

log = get_logger("sources")


class SourceUnavailable(UpstreamUnavailable, RuntimeError):
    """The source failed and there is no cached response to fall back on."""


@dataclass(frozen=True)
class Fetched:
    """What a source returned, and whether it came from the cache."""

    raw: bytes
    format: str
    start: datetime | None = None
    from_cache: bool = False
    fallback_used: bool = False
    fallback_reason: str = ""


class Source(Protocol):
    config: SourceConfig

    def fetch(self, start: datetime | None, window: timedelta) -> Fetched:
        """Records with start <= timestamp < start + window; from the beginning when start is None."""


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


Clock = Callable[[], float]


class HttpSource:
    """Records from a URL, with retries, rate limit, cache and fallback."""

    def __init__(self, config: SourceConfig, backends: Backends, clock: Clock = time.time,
                 environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.backends = backends
        self.clock = clock
        self.environ = os.environ if environ is None else environ
        self.cache_object = f"{names.CACHE}{config.name}/latest.{config.format}"

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/csv" if self.config.format == "csv" else "application/json"}
        if self.config.api_key_env:
            key = self.environ.get(self.config.api_key_env, "")
            if key:
                headers[self.config.api_key_header] = key
        return headers

    def _state(self) -> dict[str, Any]:
        return self.backends.documents.get(names.SOURCE_STATE, self.config.name) or {}

    def _save_state(self, **changes: Any) -> None:
        state = self._state()
        state.update(changes)
        self.backends.documents.set(names.SOURCE_STATE, self.config.name, state)

    def _cached(self, reason: str, state: Mapping[str, Any]) -> Fetched:
        # Recorded for the monitor's source-health alert: failing since, why, and whether
        # collection still runs on the cached copy.
        self._save_state(last_failure_at=self.clock(), last_failure=reason,
                         serving_cache=bool(state.get("cached_at")))
        if not state.get("cached_at"):
            raise SourceUnavailable(f"source {self.config.name!r}: {reason}; no cached copy")
        raw = self.backends.blobs.read(self.cache_object)
        log.warning("source failed, serving its cached copy", fields={
            "source": self.config.name, "reason": reason, "cached_at": state["cached_at"]})
        return Fetched(raw=raw, format=self.config.format, from_cache=True, fallback_used=True,
                       fallback_reason=reason)

    def _url(self, start: datetime | None, window: timedelta) -> str:
        iso = {"start": start.isoformat() if start else "",
               "end": (start + window).isoformat() if start else ""}
        return self.config.url.format(**iso)

    def fetch(self, start: datetime | None, window: timedelta) -> Fetched:
        import requests

        now = self.clock()
        state = self._state()
        cached_at = float(state.get("cached_at") or 0)
        if cached_at and now - cached_at < self.config.cache_ttl_seconds:
            return Fetched(raw=self.backends.blobs.read(self.cache_object),
                           format=self.config.format, from_cache=True)
        last_call = float(state.get("last_call_at") or 0)
        wait = self.config.min_interval_seconds - (now - last_call)
        if last_call and wait > 0:
            return self._cached(f"rate limited: next call allowed in {wait:.0f} s", state)

        self._save_state(last_call_at=now)
        host = urlsplit(self.config.url).netloc  # logged instead of the URL: it may carry a key
        try:
            with http_session(self.config.retries, self.config.backoff_factor) as session:
                response = session.get(self._url(start, window), headers=self._headers(),
                                       timeout=(self.config.connect_timeout, self.config.read_timeout))
        except requests.RequestException as exc:
            return self._cached(f"request to {host} failed: {_describe(exc)}", state)
        if response.status_code >= 400:
            return self._cached(f"{host} answered HTTP {response.status_code}", state)
        raw = response.content
        try:
            parse_records(raw, self.config.format)
        except ParseError as exc:
            if state.get("cached_at"):
                return self._cached(f"{host} sent an unparseable response: {exc}", state)
            return Fetched(raw=raw, format=self.config.format)
        self.backends.blobs.write(self.cache_object, raw)
        self._save_state(cached_at=now, cache_object=self.cache_object, last_success_at=now)
        return Fetched(raw=raw, format=self.config.format)


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
