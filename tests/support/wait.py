"""Waiting in tests: poll a condition until it holds, with a deadline; never a fixed sleep.

Deadlines are generous (the suite runs on loaded two-core machines): they bound
a hang, they do not measure speed. Speed belongs in ``benchmarks/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05,
               what: str = "") -> T:
    """Call ``predicate`` every ``interval`` s until it returns something truthy; return that.

    AssertionError naming ``what`` if it has not within ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            name = what or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"not reached within {timeout:g} s: {name}")
        time.sleep(interval)
