"""retrain when a delivery meets a live claim, and when its worker dies mid-run.

A duplicate that meets a live claim is answered 409 (a nack: Pub/Sub redelivers)
with one INFO line, never a 500 with an ERROR traceback. A retrain whose gunicorn
worker is SIGKILLed is redelivered after its claim's lease has run out, with the
default retry and lease settings, and trains the batch exactly once.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

from shared.collect.service import Collector
from shared.collect.sources import ReplaySource, SourceConfig
from shared.core.dataset_spec import load_spec
from shared.platform import names
from shared.platform.backends import connect, retry_policy
from shared.platform.backends.local_events import LocalEventBus
from shared.platform.claims import BUSY_STATUS
from shared.platform.ports import PushSubscription, RetryPolicy, where
from shared.platform.settings import PROJECT_ROOT, Settings
from tests.support.bus import post_push, received_on, subscribe
from tests.support.functions import retrain_client
from tests.support.wait import wait_until
from tools.emulators import free_port, wait_for_port

SPEC = load_spec("tetouan_power")


def collect(settings: Settings, backends, days: int) -> dict:
    collector = Collector(settings, backends, SPEC,
                          {"replay": ReplaySource(SourceConfig("replay", "replay"), SPEC)})
    result = collector.collect_source("replay", timedelta(days=days), None)
    assert result["status"] == "accepted"
    return result


def error_records(records: list[logging.LogRecord]) -> list[str]:
    return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in records
            if r.levelno >= logging.ERROR or r.exc_info]


# -- a duplicate meeting a live claim --------------------------------------------------


def test_a_duplicate_meeting_a_live_claim_is_answered_409_without_an_error_traceback(
        settings, backends, monkeypatch, caplog):
    batch = collect(settings, backends, 35)
    retrain = retrain_client(settings, monkeypatch)  # functions-framework's app, as served
    live = {"state": "running", "owner": "another-delivery", "claimed_at": time.time(),
            "expires_at": time.time() + 3600, "attempts": 1}
    backends.documents.set(names.EVENT_CLAIMS, "busy-push", live)
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        response = post_push(retrain, settings, settings.topic_data_ready,
                             {"batch_id": batch["batch_id"]}, "busy-push")
    assert response.status_code == BUSY_STATUS == 409  # not a success: Pub/Sub redelivers
    assert not error_records(caplog.records)  # no ERROR, no traceback (a 500 would log both)
    busy = [r for r in caplog.records if "live claim" in r.getMessage()]
    assert [(r.levelno, r.fields["event_id"], r.fields["status"]) for r in busy] == [
        (logging.INFO, "busy-push", 409)]
    assert backends.documents.get(names.EVENT_CLAIMS, "busy-push") == live  # left to its owner
    assert backends.documents.query(where(names.MODELS)) == []

    # Once the lease has run out, the next redelivery takes the claim over and trains.
    backends.documents.set(names.EVENT_CLAIMS, "busy-push", {**live, "expires_at": 0})
    response = post_push(retrain, settings, settings.topic_data_ready,
                         {"batch_id": batch["batch_id"]}, "busy-push")
    assert response.status_code == 200
    claim = backends.documents.get(names.EVENT_CLAIMS, "busy-push")
    assert claim["state"] == "done" and claim["attempts"] == 2
    assert len(backends.documents.query(where(names.MODELS))) == len(SPEC.target_names)


def test_other_failures_still_answer_500_with_their_traceback(settings, backends, monkeypatch, caplog):
    """Only a live claim is a quiet 409: a real fault stays loud (and is retried)."""
    from shared.retrain.processed import ProcessedData

    monkeypatch.setattr(ProcessedData, "extend",
                        lambda self, batch: (_ for _ in ()).throw(ConnectionError("storage blip")))
    batch = collect(settings, backends, 35)
    retrain = retrain_client(settings, monkeypatch)
    with caplog.at_level(logging.DEBUG):
        response = post_push(retrain, settings, settings.topic_data_ready,
                             {"batch_id": batch["batch_id"]}, "blip-push")
    assert response.status_code == 500
    (logged,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged.exc_info and logged.exc_info[0] is ConnectionError
    assert backends.documents.get(names.EVENT_CLAIMS, "blip-push")["state"] == "released"


# -- a worker killed mid-retrain, with the default retry and lease settings -------------


def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (gunicorn's workers under its master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its closing bracket
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (led by the PID we started), SIGKILL if it lingers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the master and any worker it left behind
    except ProcessLookupError:
        pass
    process.wait()


def delivery(bus: LocalEventBus, subscription: str) -> tuple[str, int, str]:
    """State, attempts and last error of the one delivery to ``subscription``."""
    return bus._db().execute("SELECT state, attempts, last_error FROM deliveries WHERE subscription=?",
                             (subscription,)).fetchone()


def test_a_sigkilled_worker_is_redelivered_after_its_lease_and_the_batch_is_trained_once(tmp_path, receiver):
    module, receiver_url = receiver
    suffix = uuid.uuid4().hex[:8]
    env = {"BACKEND": "embedded", "STATE_DIR": str(tmp_path / "state"), "BUCKET": f"crash-{suffix}",
           "TOPIC_DATA_READY": f"data-ready-{suffix}", "TOPIC_MODEL_UPDATED": f"model-updated-{suffix}",
           "TOPIC_ALERTS": f"alerts-{suffix}", "LOG_LEVEL": "INFO"}
    settings = Settings.from_env(env)  # the default EVENT_* and CLAIM_LEASE_SECONDS
    defaults = Settings.from_env({})
    assert retry_policy(settings) == retry_policy(defaults) == RetryPolicy()
    assert settings.claim_lease_seconds == defaults.claim_lease_seconds
    policy = retry_policy(settings)
    backends = connect(settings)
    bus = backends.events
    assert isinstance(bus, LocalEventBus)

    # retrain served as deployed: functions-framework's gunicorn, a master and its worker
    port = free_port()
    log_path = tmp_path / "retrain.log"
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "functions-framework"), "--target", "retrain",
             "--source", str(PROJECT_ROOT / "functions" / "retrain" / "main.py"),
             "--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, **settings.to_environ(), "PYTHONPATH": str(PROJECT_ROOT)},
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=PROJECT_ROOT,
            start_new_session=True)  # its own process group, led by the PID we hold
    stop_bus = threading.Event()
    dispatcher = threading.Thread(target=bus.run, args=(stop_bus,), kwargs={"workers": 2}, daemon=True)
    try:
        assert wait_for_port(port, server, 60), log_path.read_text()[-3000:]
        retrain_subscription = f"retrain-{settings.topic_data_ready}"
        bus.ensure_push_subscription(PushSubscription(
            retrain_subscription, settings.topic_data_ready,
            f"http://127.0.0.1:{port}/projects/{settings.project}/topics/{settings.topic_data_ready}"))
        subscribe(backends, settings, receiver_url, settings.topic_model_updated)
        batch = collect(settings, backends, 35)  # publishes data-ready
        event_id = batch["message_id"]
        dispatcher.start()

        # the worker claims the event and starts; kill it there, as an OOM or a lost instance would
        running = wait_until(lambda: (c := backends.documents.get(names.EVENT_CLAIMS, event_id))
                             and c["state"] == "running" and c, timeout=120, interval=0.02,
                             what="the retrain's claim")
        (worker,) = wait_until(lambda: children(server.pid), timeout=10, what="gunicorn's worker")
        os.kill(worker, signal.SIGKILL)
        killed_at = time.time()
        wait_until(lambda: delivery(bus, retrain_subscription)[1] >= 1, timeout=30, what="the failed push")
        state, attempts, error = delivery(bus, retrain_subscription)
        assert (state, attempts) == ("pending", 1) and "Connection" in error, (state, attempts, error)
        assert server.poll() is None  # the master lives on and starts a fresh worker

        # redeliveries meet the live claim (409) until the lease has run out; the next one
        # takes the claim over and trains
        redeliveries = list(itertools.accumulate(policy.schedule()))
        takeover = next(t for t in redeliveries if killed_at + t > running["expires_at"])
        busy = sum(1 for t in redeliveries if t < takeover)
        done = wait_until(lambda: (c := backends.documents.get(names.EVENT_CLAIMS, event_id))
                          and c["state"] == "done" and c,
                          timeout=takeover - (time.time() - killed_at) + 120, interval=0.2,
                          what="the redelivered retrain")
        assert done["claimed_at"] >= running["expires_at"]  # taken over once the lease ran out
        wait_until(lambda: bus.pending() == 0, timeout=30, what="model-updated delivered")
    finally:
        stop_bus.set()
        if dispatcher.is_alive():
            dispatcher.join(10)
        stop_server(server)

    assert done["attempts"] == 2 and done["owner"] != running["owner"]
    assert delivery(bus, retrain_subscription) == ("acked", 1 + busy + 1, "")
    assert bus.dead_letters(settings.topic_data_ready) == []
    # exactly once: one processed version holding the batch, one version per target, one announcement
    head = backends.documents.get(names.DATASETS, SPEC.name)
    assert (head["seq"], head["batch_ids"]) == (1, [batch["batch_id"]])
    versions = backends.documents.query(where(names.DATASET_VERSIONS))
    assert [version_id for version_id, _ in versions] == [head["version"]]
    models = [d for _, d in backends.documents.query(where(names.MODELS))]
    assert sorted(m["target"] for m in models) == sorted(SPEC.target_names)
    updates = received_on(module, settings.topic_model_updated)
    assert [u["data"]["batch_id"] for u in updates] == [batch["batch_id"]]
    assert done["outcome"]["model_updated_message_id"] == updates[0]["id"]

    # each refused redelivery logged one INFO line; nothing logged an error or a traceback
    lines = log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert [r["severity"] for r in records if "live claim" in r["message"]] == ["INFO"] * busy
    assert [r for r in records if r["severity"] in ("ERROR", "CRITICAL")] == []
    assert not any("Traceback" in line for line in lines), "\n".join(lines[-40:])

