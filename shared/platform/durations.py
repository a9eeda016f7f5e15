"""Durations as operators write them: ISO 8601 (``P7D``, ``PT6H``) or short (``7d``, ``6h``, ``30m``)."""

from __future__ import annotations

import re
from datetime import timedelta

_ISO = re.compile(r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
                  r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
                  re.IGNORECASE)
_SHORT = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[wdhms])$", re.IGNORECASE)
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


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
