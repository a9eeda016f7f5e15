"""Fuzz: generated requests against predict served as deployed (functions-framework's gunicorn).

Trains five weeks on the embedded backend, serves predict with WORKERS workers, and posts
``--requests`` bodies drawn by Hypothesis (tests/support/predict_bodies.py: the request
schema at and past its bounds, any JSON, deep nesting, huge numbers, broken encodings),
every hundredth one a body past MAX_REQUEST_BYTES. Prints the statuses, the refusals that
name no field, and the server's RSS (master and workers) before, at its peak and after.
Exits non-zero on any 5xx. Bounded in time; stops everything it starts.

    .venv/bin/python benchmarks/predict_fuzz.py [--requests 5000] [--workers 2]
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAX_BODY = 2 * 1024 * 1024


def main() -> int:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from benchmarks.predict_bench import prepare_state, rss_mb, start_server
    from tests.support.predict_bodies import BODIES
    from tools.emulators import free_port, stop_process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    statuses: collections.Counter[int] = collections.Counter()
    unnamed = 0
    with tempfile.TemporaryDirectory() as state:
        prepare_state(state)
        os.environ["MAX_REQUEST_BYTES"] = str(MAX_BODY)
        port = free_port()
        process, _ = start_server(port, workers=args.workers)
        before = peak = rss_mb(process.pid)
        started = time.monotonic()
        sent = 0
        try:
            @settings(max_examples=args.requests, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(body=BODIES, content_type=st.sampled_from(["application/json", "text/plain"]))
            def post(body: bytes, content_type: str) -> None:
                nonlocal sent, unnamed, peak
                sent += 1
                if sent % 100 == 0:
                    body = b" " * (MAX_BODY + 1)
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request("POST", "/predict", body=body, headers={"Content-Type": content_type})
                response = conn.getresponse()
                data = response.read()
                conn.close()
                statuses[response.status] += 1
                if response.status in (400, 413):
                    errors = json.loads(data).get("errors") or []
                    unnamed += not errors or not all(isinstance(e.get("field"), str) for e in errors)
                if sent % 250 == 0:
                    peak = max(peak, rss_mb(process.pid))

            post()
            after = rss_mb(process.pid)
        finally:
            stop_process(process, 15)
    print(f"{sent} generated requests in {time.monotonic() - started:.0f} s against {args.workers} workers: "
          f"statuses {dict(sorted(statuses.items()))}; refusals naming no field: {unnamed}")
    print(f"server RSS: before {before:.0f} MB, peak {max(peak, after):.0f} MB, after {after:.0f} MB")
    return 1 if any(status >= 500 for status in statuses) else 0


if __name__ == "__main__":
    sys.exit(main())
