"""Time as text, one place for every format the project reads or writes.

- Timestamps the stores keep: ISO 8601 in UTC, which sort as text (``iso_utc``),
  and the UTC day or compact stamp used in object paths and run ids.
- Timestamps clients and sources send: ISO 8601, turned into the series' naive
  local time (``parse_iso_local``).
- Durations as operators write them: ISO 8601 (``P7D``, ``PT6H``) or short
  (``7d``, ``6h``, ``30m``).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

_ISO = re.compile(r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
                  r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
                  re.IGNORECASE)
_SHORT = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[wdhms])$", re.IGNORECASE)
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def _utc(epoch: float | None) -> datetime:
    return datetime.fromtimestamp(time.time() if epoch is None else epoch, UTC)


def iso_utc(epoch: float | None = None, timespec: str = "seconds") -> str:
    """``epoch`` (default now) as ISO 8601 UTC, e.g. ``2026-11-22T20:45:25+00:00``."""
    return _utc(epoch).isoformat(timespec=timespec)


def utc_day(epoch: float | None = None) -> str:
    """The UTC date of ``epoch`` (default now), e.g. ``2026-11-22`` (object path partitions)."""
    return _utc(epoch).date().isoformat()


def parse_utc(text: str) -> float:
    """Epoch seconds of an ISO 8601 timestamp written by ``iso_utc`` (naive means UTC)."""
    parsed = datetime.fromisoformat(text)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def utc_stamp(epoch: float | None = None) -> str:
    """``epoch`` (default now) as a compact UTC stamp for ids, e.g. ``20261122T204525Z``."""
    return _utc(epoch).strftime("%Y%m%dT%H%M%SZ")


def parse_iso_local(text: Any, utc_offset: timedelta) -> datetime | None:
    """An ISO 8601 timestamp as the series' naive local time; None when it is not one.

    Only the extended form (``YYYY-MM-DD...``) is accepted: ``fromisoformat`` would
    also read ``20170101``, which is more likely a mistake than a date. A trailing
    ``Z`` or an offset makes it aware; aware times are converted to ``utc_offset``.
    """
    if not isinstance(text, str):
        return None
    raw = text.strip()
    if len(raw) < 10 or raw[4:5] != "-":
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone(utc_offset)).replace(tzinfo=None)
    return value


def parse_duration(text: str) -> timedelta:
    """A positive duration; ValueError naming the accepted forms otherwise."""
    raw = str(text).strip()
    if m := _SHORT.match(raw):
        value = timedelta(**{_UNITS[m["unit"].lower()]: float(m["n"])})
    elif (m := _ISO.match(raw)) and raw.upper() not in ("P", "PT") and not raw.upper().endswith("T"):
        parts = {k: float(v) for k, v in m.groupdict().items() if v}
        value = timedelta(weeks=parts.get("w", 0), days=parts.get("d", 0), hours=parts.get("h", 0),
                          minutes=parts.get("m", 0), seconds=parts.get("s", 0))
    else:
        raise ValueError(f"{text!r} is not a duration (use e.g. P7D, PT6H, 7d, 6h, 30m)")
    if value <= timedelta(0):
        raise ValueError(f"{text!r} must be a positive duration")
    return value


def format_duration(value: timedelta) -> str:
    """``value`` as ISO 8601 in its largest whole unit (``P1D``, ``PT6H``); ``parse_duration`` reads it back."""
    seconds = value.total_seconds()
    for unit, size in (("D", 86400), ("H", 3600), ("M", 60)):
        if seconds % size == 0:
            return f"P{int(seconds // size)}D" if unit == "D" else f"PT{int(seconds // size)}{unit}"
    return f"PT{seconds:g}S"
