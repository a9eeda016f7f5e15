"""predict's request log reaches the store in the process that serves, and stays bounded when it cannot."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import requests

from shared.platform import names
from shared.predict.prediction_log import DROPPED_FIELD, PredictionLog
from tests.functions.test_predict import OBS, collect_and_train
from tests.support.functions import served_function
from tests.support.wait import wait_until

FLUSH_SECONDS = 1.0


def test_one_request_reaches_the_store_within_the_flush_period_under_gunicorn(settings, backends, monkeypatch):
    """functions-framework imports the code in gunicorn's master and forks the worker that serves."""
    collect_and_train(settings, backends, monkeypatch)
    with served_function("predict", settings, PREDICTION_LOG_FLUSH_SECONDS=str(FLUSH_SECONDS),
                         PREDICTION_LOG_FLUSH_RECORDS="200") as url:
        response = requests.post(f"{url}/predict", json=OBS, timeout=60)
        answered = time.monotonic()
        assert response.status_code == 200, response.text
        objects = wait_until(lambda: backends.blobs.list(names.PREDICTIONS), timeout=FLUSH_SECONDS + 2,
                             interval=0.1, what="the request's record in the store")
        assert time.monotonic() - answered <= FLUSH_SECONDS + 2
        records = [json.loads(line) for name in objects
                   for line in backends.blobs.read(name).decode().splitlines()]
        assert [(r["status"], r["rows"]) for r in records] == [(200, 1)]
        assert records[0]["versions"] == response.json()["model_versions"]
        health = requests.get(f"{url}/health", timeout=30).json()["prediction_log"]
        assert health["pending_records"] == 0 and health["dropped"] == 0 and health["last_written"]


def test_every_worker_of_an_instance_writes_its_own_objects(settings, backends, monkeypatch):
    """gunicorn forks every worker from one master: each must write under a name of its own,
    or one worker's create-only writes collide with the other's and its records never land."""
    collect_and_train(settings, backends, monkeypatch)
    sent = 0
    with served_function("predict", settings, WORKERS="2", THREADS="1", PREDICTION_LOG_FLUSH_RECORDS="1",
                         PREDICTION_LOG_FLUSH_SECONDS=str(FLUSH_SECONDS)) as url:

        def writers() -> set[str]:
            return {name.rsplit("/", 1)[-1].rsplit("-", 1)[0] for name in backends.blobs.list(names.PREDICTIONS)}

        def both_workers_wrote() -> bool:
            nonlocal sent
            for _ in range(5):  # a new connection each: the kernel hands them to either worker
                response = requests.post(f"{url}/predict", json=OBS, timeout=60)
                assert response.status_code == 200, response.text
                sent += 1
            return len(writers()) == 2

        wait_until(both_workers_wrote, timeout=90, interval=0.2, what="records from both workers")

        def records() -> list[dict[str, Any]]:
            return [json.loads(line) for name in backends.blobs.list(names.PREDICTIONS)
                    for line in backends.blobs.read(name).decode().splitlines()]

        # Every request's record lands, whichever worker served it.
        wait_until(lambda: len(records()) == sent, timeout=FLUSH_SECONDS + 30, interval=0.2,
                   what=f"all {sent} records")
        assert len({r["request_id"] for r in records()}) == sent


class FailingStore:
    """A blob store that refuses every write until ``healthy`` is set, counting attempts."""

    def __init__(self) -> None:
        self.healthy = threading.Event()
        self.attempts = 0
        self.objects: dict[str, bytes] = {}

    def create(self, name: str, data: bytes, content_type: str | None = None) -> None:
        self.attempts += 1
        if not self.healthy.is_set():
            raise ConnectionError("storage is down")
        self.objects[name] = data

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for data in self.objects.values() for line in data.decode().splitlines()]


def test_a_failing_store_keeps_memory_bounded_backs_off_and_reports_what_it_dropped():
    store = FailingStore()
    log = PredictionLog(store, flush_records=5, flush_seconds=0.05, max_rows=100)  # type: ignore[arg-type]
    threads_before = threading.active_count()
    try:
        for i in range(500):
            log.record({"request_id": str(i), "rows": 10, "status": 200})
        status = log.status()
        assert status["pending_rows"] <= 100 and status["pending_records"] <= 10
        assert status["dropped"] >= 490
        # One flusher, not one thread per request.
        assert threading.active_count() <= threads_before + 1
        wait_until(lambda: log.failures >= 2, timeout=30, what="two failed writes")
        attempts = store.attempts
        time.sleep(1.5)  # the backoff has grown past a second: at most one more attempt in this time
        assert store.attempts - attempts <= 1
        assert log.status()["last_error"] == "ConnectionError: storage is down"

        store.healthy.set()
        records = wait_until(store.records, timeout=90, what="the kept records written once storage is back")
        assert [r["request_id"] for r in records] == [str(i) for i in range(490, 500)]
        assert records[0][DROPPED_FIELD] == 490 and all(DROPPED_FIELD not in r for r in records[1:])
        assert log.status()["pending_records"] == 0
    finally:
        log.close()


def test_a_forked_worker_starts_its_own_flusher():
    store = FailingStore()
    store.healthy.set()
    log = PredictionLog(store, flush_records=1, flush_seconds=60, max_rows=100)  # type: ignore[arg-type]
    try:
        log.record({"request_id": "parent", "rows": 1, "status": 200})
        wait_until(store.records, timeout=30, what="the parent's record")
        log._reset_after_fork()  # what os.register_at_fork runs in a forked child
        log.record({"request_id": "child", "rows": 1, "status": 200})
        wait_until(lambda: len(store.records()) == 2, timeout=30, what="the child's record")
    finally:
        log.close()
