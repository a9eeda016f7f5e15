"""Where new observations come from: pluggable sources, configured as data.

``replay`` serves the bundled series in time order as if it were live. ``http``
fetches CSV or JSON records from a URL with timeouts, urllib3 retries with
exponential backoff on timeouts and 5xx, a minimum interval between calls, an
optional API key header, a cached copy with a TTL in the blob store, and a
fallback to the last good cached response when the source fails.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol
from urllib.parse import urlsplit

from shared.platform import names
from shared.platform.backends import Backends
from shared.core.dataset_spec import TIMESTAMP, DatasetSpec
from shared.core.frames import FORMATS, ParseError, parse_records
from shared.platform.log import get_logger

log = get_logger("sources")
SOURCE_TYPES = ("replay", "http")


class SourceUnavailable(RuntimeError):
    """The source failed and there is no cached response to fall back on."""


@dataclass(frozen=True)
class SourceConfig:
    """One configured source (an entry of COLLECT_SOURCES)."""

    name: str
    type: str
    path: str = ""
    url: str = ""
    format: str = "csv"
    api_key_env: str = ""
    api_key_header: str = "X-API-Key"
    min_interval_seconds: float = 0.0
    cache_ttl_seconds: float = 0.0
    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    retries: int = 3
    backoff_factor: float = 0.5


def parse_sources(text: str) -> list[SourceConfig]:
    """COLLECT_SOURCES: a JSON list of source objects; ValueError says what is wrong."""
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(entries, list) or not entries:
        raise ValueError("must be a non-empty JSON list of source objects")
    known = {f.name for f in fields(SourceConfig)}
    configs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"entry {i} is not an object")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ValueError(f"entry {i}: unknown keys {unknown}")
        try:
            config = SourceConfig(**entry)
        except TypeError as exc:
            raise ValueError(f"entry {i}: {exc}") from exc
        if config.type not in SOURCE_TYPES:
            raise ValueError(f"entry {i}: type must be one of {SOURCE_TYPES}")
        if config.type == "http" and not urlsplit(config.url).scheme.startswith("http"):
            raise ValueError(f"entry {i}: an http source needs an http(s) url")
        if config.format not in FORMATS:
            raise ValueError(f"entry {i}: format must be one of {FORMATS}")
        if not config.name or not config.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"entry {i}: name must be letters, digits, - or _")
        configs.append(config)
    if len({c.name for c in configs}) != len(configs):
        raise ValueError("source names must be unique")
    return configs


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

    _cache: dict[str, tuple[Any, Any]] = {}
    _lock = threading.Lock()

    def __init__(self, config: SourceConfig, spec: DatasetSpec) -> None:
        self.config = config
        self.spec = spec
        path = Path(config.path) if config.path else spec.replay_data
        if path is None:
            raise ValueError(f"source {config.name!r}: spec {spec.name} names no replay file; set its path")
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

    def _session(self) -> Any:
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        retry = Retry(total=self.config.retries, connect=self.config.retries,
                      read=self.config.retries, status=self.config.retries,
                      backoff_factor=self.config.backoff_factor,
                      status_forcelist=(500, 502, 503, 504), allowed_methods=("GET",),
                      raise_on_status=False)
        session = requests.Session()
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.mount("https://", HTTPAdapter(max_retries=retry))
        return session

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
            with self._session() as session:
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
        self._save_state(cached_at=now, cache_object=self.cache_object)
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
