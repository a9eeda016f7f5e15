"""Timestamps as the stores keep them: ISO 8601 in UTC, which sort as text."""

from __future__ import annotations

import time
from datetime import datetime, timezone


def iso_utc(epoch: float | None = None, timespec: str = "seconds") -> str:
    """``epoch`` (default now) as ISO 8601 UTC, e.g. ``2026-11-22T20:45:25+00:00``."""
    return datetime.fromtimestamp(time.time() if epoch is None else epoch, timezone.utc).isoformat(
        timespec=timespec)
