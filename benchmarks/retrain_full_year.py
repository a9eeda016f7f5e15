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
import sys
import tempfile
import time
from pathlib import Path



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    timings = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as state:
            os.environ.update({"STATE_DIR": state, "LOG_LEVEL": "WARNING"})
            import functions_framework

            from shared.platform.backends import connect
            from shared.platform.backends.local_events import LocalEventBus
            from shared.platform.ports import PushSubscription, where
            from shared.platform.settings import Settings

            settings = Settings.from_env()
            backends = connect(settings)
            collect = functions_framework.create_app("collect_data", "functions/collect_data/main.py")
            retrain = functions_framework.create_app("retrain", "functions/retrain/main.py", "cloudevent")
            bus = backends.events
            assert isinstance(bus, LocalEventBus)
            bus.attach("retrain", retrain)
            bus.ensure_push_subscription(PushSubscription(
                "retrain", settings.topic_data_ready,
                f"wsgi://retrain/projects/{settings.project}/topics/{settings.topic_data_ready}"))
            batch = collect.test_client().post("/", json={"window": "P400D"}).get_json()
            started = time.perf_counter()
            bus.drain(timeout=120)
            elapsed = time.perf_counter() - started
            models = backends.documents.query(where("models"))
            updates = [m for m in bus._db().execute("SELECT id FROM messages WHERE topic=?",
                                                    (settings.topic_model_updated,))]
            timings.append(elapsed)
            print(json.dumps({"run": run + 1, "rows": batch["rows"], "seconds": round(elapsed, 3),
                              "versions": len(models), "model_updated_messages": len(updates),
                              "decisions": {d["target"]: d["status"] for _, d in models}}))
    print(f"retrain full year, event in -> model-updated out: median {statistics.median(timings):.2f} s, "
          f"min {min(timings):.2f} s, max {max(timings):.2f} s over {len(timings)} runs")


if __name__ == "__main__":
    main()
