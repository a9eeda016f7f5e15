"""collect_data on both backends: replay, idempotence, bad data, http fallback, crash recovery."""

from __future__ import annotations

import io
import uuid

import pandas as pd
import pytest

from shared.platform import names
from shared.platform.ports import where
from shared.platform.settings import PROJECT_ROOT
from tests.support.bus import pump_until, received_on, subscribe, unsubscribe
from tests.support.data_server import DataSource
from tests.support.functions import function_app

RAW_CSV = (PROJECT_ROOT / "data" / "tetouan_power_2017.csv").read_bytes()


def day_csv(first_row: int = 0, rows: int = 144, mutate=None) -> bytes:
    frame = pd.read_csv(io.BytesIO(RAW_CSV), dtype=str).iloc[first_row:first_row + rows]
    if mutate is not None:
        frame = mutate(frame)
    return frame.to_csv(index=False).encode()


@pytest.fixture
def listening(backends, settings, receiver):
    """Push subscriptions from data-ready and alerts to the receiver."""
    module, url = receiver
    subs = [subscribe(backends, settings, url, t) for t in (settings.topic_data_ready,
                                                             settings.topic_alerts)]
    yield module
    for name in subs:
        unsubscribe(settings, name)


def collect(app, body=None):
    response = app.test_client().post("/", json=body) if body is not None else app.test_client().post("/")
    return response.status_code, response.get_json()


def test_replaying_n_days_stores_n_batches_and_announces_each_once(backends, settings, listening,
                                                                   monkeypatch):
    app = function_app("collect_data", settings, monkeypatch)
    results = [collect(app) for _ in range(3)]
    assert [code for code, _ in results] == [200, 200, 200]
    bodies = [body for _, body in results]
    assert [b["status"] for b in bodies] == ["accepted"] * 3
    assert [(b["start"], b["end"], b["rows"]) for b in bodies] == [
        ("2017-01-01T00:00:00", "2017-01-01T23:50:00", 144),
        ("2017-01-02T00:00:00", "2017-01-02T23:50:00", 144),
        ("2017-01-03T00:00:00", "2017-01-03T23:50:00", 144)]
    assert backends.blobs.list(names.RAW) == [b["object"] for b in bodies]
    assert bodies[0]["object"].startswith("raw/replay/date=2017-01-01/replay-20170101T0000-")

    pump_until(backends.events, lambda: len(received_on(listening, settings.topic_data_ready)) >= 3)
    events = received_on(listening, settings.topic_data_ready)
    assert sorted(e["data"]["batch_id"] for e in events) == sorted(b["batch_id"] for b in bodies)
    assert {e["id"] for e in events} == {b["message_id"] for b in bodies}
    first = next(e for e in events if e["data"]["batch_id"] == bodies[0]["batch_id"])
    assert first["data"] == {k: bodies[0][k] for k in ("batch_id", "dataset", "source", "rows",
                                                       "start", "end", "quality_score", "object")}
    stored = pd.read_csv(io.BytesIO(backends.blobs.read(bodies[1]["object"])))
    assert list(stored.columns) == ["timestamp", "Temperature", "Humidity", "WindSpeed",
                                    "GeneralDiffuseFlows", "DiffuseFlows", "zone1", "zone2", "zone3"]
    record = backends.documents.get(names.BATCHES, bodies[2]["batch_id"])
    assert record["status"] == "accepted" and record["announced"] is True
    assert record["quality_score"] == 1.0 and {c["name"] for c in record["checks"]} >= {
        "schema", "ranges", "missing", "gaps", "duplicates"}


def test_repeating_a_window_stores_and_announces_nothing_new(backends, settings, listening,
                                                             monkeypatch):
    app = function_app("collect_data", settings, monkeypatch)
    code, first = collect(app, {"window": "P2D"})
    assert code == 200 and first["status"] == "accepted"
    code, again = collect(app, {"start": "2017-01-01T00:00:00", "window": "P2D"})
    assert code == 200 and again["status"] == "nothing_new"
    assert again["duplicates_dropped"] == 288
    code, partly = collect(app, {"start": "2017-01-02T00:00:00", "window": "P2D"})
    assert partly["status"] == "accepted" and partly["duplicates_dropped"] == 144
    assert partly["start"] == "2017-01-03T00:00:00" and partly["rows"] == 144
    assert len(backends.blobs.list(names.RAW)) == 2
    pump_until(backends.events, lambda: len(received_on(listening, settings.topic_data_ready)) >= 2)
    assert len(received_on(listening, settings.topic_data_ready)) == 2


BAD = {
    "schema": lambda f: f.drop(columns=["Humidity"]),
    "types": lambda f: f.assign(Temperature=["warm"] * 60 + list(f["Temperature"][60:])),
    "ranges": lambda f: f.assign(Humidity=["150"] * 60 + list(f["Humidity"][60:])),
    "missing": lambda f: f.assign(**{"Zone 1 Power Consumption": [""] * 60 + list(
        f["Zone 1 Power Consumption"][60:])}),
    "duplicates": lambda f: pd.concat([f, f]),
    "gaps": lambda f: pd.concat([f.iloc[:40], f.iloc[100:]]),
}


@pytest.mark.parametrize("kind", BAD)
def test_bad_data_is_rejected_with_its_reason_and_never_reaches_raw(backends, settings, listening,
                                                                    monkeypatch, kind):
    with DataSource() as source:
        source.body = day_csv(mutate=BAD[kind])
        sources = f'[{{"name": "feed", "type": "http", "url": "{source.url}", "retries": 0}}]'
        app = function_app("collect_data", settings, monkeypatch, COLLECT_SOURCES=sources)
        code, body = collect(app)
    assert code == 200
    assert body["status"] == "rejected"
    assert body["reasons"][0].split(":")[0] == kind
    assert body["quality_score"] < settings.quality_threshold
    assert backends.blobs.list(names.RAW) == []
    quarantined = backends.blobs.list(names.QUARANTINE)
    assert body["object"] in quarantined and any(q.endswith(".reasons.json") for q in quarantined)
    assert backends.documents.get(names.BATCHES, body["batch_id"])["status"] == "rejected"
    pump_until(backends.events, lambda: received_on(listening, settings.topic_alerts))
    (alert,) = received_on(listening, settings.topic_alerts)
    assert alert["data"]["kind"] == "batch_rejected" and alert["data"]["batch_id"] == body["batch_id"]
    assert alert["data"]["severity"] in ("medium", "high")
    assert received_on(listening, settings.topic_data_ready) == []
    assert backends.documents.get(names.CURSORS, "tetouan_power") is None


@pytest.mark.parametrize("failure", ["fail", "hang", "garbage"])
def test_a_failing_http_source_falls_back_to_its_cache_and_fails_loudly(backends, settings, monkeypatch,
                                                                   failure):
    with DataSource(hang_seconds=1.5) as source:
        source.body = day_csv()
        key = f"secret-{uuid.uuid4().hex}"
        sources = (f'[{{"name": "feed", "type": "http", "url": "{source.url}", "retries": 1, '
                   f'"backoff_factor": 0.01, "read_timeout": 0.5, "api_key_env": "FEED_KEY"}}]')
        app = function_app("collect_data", settings, monkeypatch, COLLECT_SOURCES=sources,
                           FEED_KEY=key)
        code, first = collect(app, {"window": "P1D"})
        assert code == 200 and first["status"] == "accepted" and first["fallback_used"] is False
        assert source.requests[0]["headers"]["X-Api-Key"] == key
        assert "start=2017-" not in source.requests[0]["path"]  # no cursor yet: open start

        source.mode = failure
        code, second = collect(app, {"window": "P1D"})
    # The cached copy holds the day already stored: nothing new, so the collection failed (502,
    # the scheduler retries), saying that it fell back and why; nothing is stored twice.
    assert code == 502
    assert second["fallback_used"] is True and second["from_cache"] is True
    assert {"fail": "HTTP 500", "hang": "ReadTimeout", "garbage": "binary data"}[failure] in \
        second["fallback_reason"]
    assert second["status"] == "failed" and "cached copy holds nothing new" in second["error"]
    assert second["source_failure"]["consecutive_failures"] == 1
    assert len(backends.blobs.list(names.RAW)) == 1
    record = backends.documents.get(names.COLLECTIONS, second["collection_id"])
    assert record["status"] == "failed" and record["fallback_used"] is True
    retries = {"fail": 2, "hang": 2, "garbage": 1}[failure]
    assert len(source.requests) == 1 + retries


def test_a_source_failing_without_a_cache_is_a_502_naming_it(settings, backends, monkeypatch):
    with DataSource() as source:
        source.mode = "fail"
        sources = f'[{{"name": "feed", "type": "http", "url": "{source.url}", "retries": 0}}]'
        app = function_app("collect_data", settings, monkeypatch, COLLECT_SOURCES=sources)
        code, body = collect(app)
    assert code == 502 and body["status"] == "failed" and "no cached copy" in body["error"]


def test_the_api_key_never_reaches_the_log(settings, backends, monkeypatch, capsys):
    with DataSource() as source:
        source.mode = "fail"
        key = "do-not-log-" + uuid.uuid4().hex
        url = source.url + f"&token={key}"
        sources = (f'[{{"name": "feed", "type": "http", "url": "{url}", "retries": 1, '
                   f'"backoff_factor": 0.01, "api_key_env": "FEED_KEY"}}]')
        app = function_app("collect_data", settings, monkeypatch, COLLECT_SOURCES=sources,
                           FEED_KEY=key)
        collect(app)
    out = capsys.readouterr()
    assert "source unavailable" in out.out
    assert key not in out.out and key not in out.err


def test_rate_limit_serves_the_cache_between_calls(settings, backends, monkeypatch):
    with DataSource() as source:
        source.body = day_csv()
        sources = (f'[{{"name": "feed", "type": "http", "url": "{source.url}", '
                   f'"min_interval_seconds": 3600}}]')
        app = function_app("collect_data", settings, monkeypatch, COLLECT_SOURCES=sources)
        assert collect(app)[1]["status"] == "accepted"
        _code, body = collect(app)
    assert len(source.requests) == 1
    assert body["fallback_used"] is True and "rate limited" in body["fallback_reason"]


def test_a_crash_before_the_announcement_is_recovered_by_the_next_run(backends, settings, listening,
                                                                      monkeypatch):
    app = function_app("collect_data", settings, monkeypatch)
    publish = type(backends.events).publish
    calls = {"n": 0}

    def flaky_publish(self, topic, data, attributes=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("publisher unreachable")
        return publish(self, topic, data, attributes)

    monkeypatch.setattr(type(backends.events), "publish", flaky_publish)
    code, body = collect(app)
    assert code == 500 and body == {"error": "internal error"}
    (_stored,) = backends.blobs.list(names.RAW)
    ((batch_id, record),) = backends.documents.query(where(names.BATCHES))
    assert record["announced"] is False

    code, body = collect(app)
    assert code == 200 and body["status"] == "accepted" and body["start"] == "2017-01-02T00:00:00"
    assert backends.documents.get(names.BATCHES, batch_id)["announced"] is True
    pump_until(backends.events, lambda: len(received_on(listening, settings.topic_data_ready)) >= 2)
    announced = [e["data"]["batch_id"] for e in received_on(listening, settings.topic_data_ready)]
    assert sorted(announced) == sorted([batch_id, body["batch_id"]])
    assert len(backends.blobs.list(names.RAW)) == 2


def test_collect_data_answers_over_http_under_functions_framework(backends, settings):
    import requests

    from tests.support.functions import served_function

    with served_function("collect_data", settings) as url:
        first = requests.post(url, json={"window": "PT6H"}, timeout=30)
        wrong = requests.get(url, timeout=10)
        bad = requests.post(url, data="window=1d", headers={"Content-Type": "text/plain"}, timeout=10)
    assert first.status_code == 200 and first.headers["Content-Type"] == "application/json"
    assert first.json()["status"] == "accepted" and first.json()["rows"] == 36
    assert wrong.status_code == 405
    assert bad.status_code == 415
    assert backends.blobs.list(names.RAW) == [first.json()["object"]]
