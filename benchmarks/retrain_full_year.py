"""Benchmark: retrain of every target on the full bundled year, embedded backend.

Measures from the data-ready event entering the retrain function to the
model-updated message leaving it (the push to retrain goes through
functions-framework, as in production). Prints the figures; asserts nothing.

    .venv/bin/python benchmarks/retrain_full_year.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import functions_framework

    from shared.platform import names
    from shared.platform.backends import connect
    from shared.platform.backends.local_events import LocalEventBus
    from shared.platform.ports import PushSubscription, where
    from shared.platform.settings import PROJECT_ROOT, Settings
    from tools.emulators import free_port, stop_process, wait_for_port

    timings = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as state:
            os.environ.update({"STATE_DIR": state, "LOG_LEVEL": "WARNING"})
            settings = Settings.from_env()
            backends = connect(settings)
            bus = backends.events
            assert isinstance(bus, LocalEventBus)
            port = free_port()
            server = subprocess.Popen(
                [str(Path(sys.executable).parent / "functions-framework"), "--target", "retrain",
                 "--signature-type", "cloudevent", "--source", str(PROJECT_ROOT / "functions/retrain/main.py"),
                 "--host", "127.0.0.1", "--port", str(port)], env=os.environ.copy())
            try:
                if not wait_for_port(port, server, timeout=120):
                    raise SystemExit("the retrain server did not start")
                bus.ensure_push_subscription(PushSubscription(
                    "retrain", settings.topic_data_ready,
                    f"http://127.0.0.1:{port}/projects/{settings.project}/topics/{settings.topic_data_ready}"))
                collect = functions_framework.create_app("collect_data", "functions/collect_data/main.py")
                batch = collect.test_client().post("/", json={"window": "P400D"}).get_json()
                started = time.perf_counter()
                bus.drain(timeout=600)
                elapsed = time.perf_counter() - started
            finally:
                stop_process(server)
            models = backends.documents.query(where("models"))
            promoted = len(backends.documents.query(where(names.PRODUCTION)))
            timings.append(elapsed)
            print(json.dumps({"run": run + 1, "rows": batch["rows"], "seconds": round(elapsed, 3),
                              "versions": len(models), "targets_in_production": promoted,
                              "decisions": {d["target"]: d["status"] for _, d in models}}))
    print(f"retrain full year, event in -> model-updated out: median {statistics.median(timings):.2f} s, "
          f"min {min(timings):.2f} s, max {max(timings):.2f} s over {len(timings)} runs")


if __name__ == "__main__":
    main()
