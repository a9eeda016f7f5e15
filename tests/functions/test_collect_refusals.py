"""Data that cannot poison the models, through collect_data's HTTP entry point on both backends.

A system trained on five real weeks collects the next days from an http source on
127.0.0.1. Every refused answer — ambiguous or missing columns, believable bad data,
garbage from the source — leaves raw/, the processed dataset, the production
pointers and the cursor exactly as they were, keeps a quarantine copy and a
record with its reasons, and never replaces the source's last good cached copy.
Then an accepted day is retracted, and retrain, lineage, ``status`` and the
actuals predict reads all leave it out.
"""

from __future__ import annotations

import gzip
import io
import json
from datetime import timedelta

import pandas as pd
import pytest

from shared.cli import main as cli_main
from shared.collect.service import Collector
from shared.collect.sources import ReplaySource
from shared.core.dataset_spec import load_spec
from shared.core.frames import read_canonical_csv, read_dataset_csv
from shared.core.recent_actuals import RecentActuals
from shared.platform import names
from shared.platform.ports import where
from shared.platform.settings import PROJECT_ROOT, SourceConfig
from tests.support.bus import post_push, pump_until, received_on, subscribe, unsubscribe
from tests.support.data_server import DataSource
from tests.support.functions import function_app, push_data_ready, retrain_client

SPEC = load_spec("tetouan_power")
YEAR = read_dataset_csv((PROJECT_ROOT / "data" / "tetouan_power_2017.csv").read_bytes(), SPEC)
TRAINED_DAYS = 35
GOOD_DAY = pd.Timestamp("2017-02-05")   # collected from the http source first: its cached copy
FAULT_DAY = pd.Timestamp("2017-02-06")  # every fault is tried on this day


def rows(start: pd.Timestamp, days: int = 1) -> pd.DataFrame:
    return YEAR[(YEAR.timestamp >= start) & (YEAR.timestamp < start + pd.Timedelta(days=days))].copy()


def as_source_csv(frame: pd.DataFrame) -> bytes:
    """Canonical rows written as the source writes them (its headers, its timestamp format)."""
    raw = frame.rename(columns={"timestamp": SPEC.timestamp_column,
                                **{c.name: c.column for c in SPEC.value_columns}})
    raw[SPEC.timestamp_column] = raw[SPEC.timestamp_column].dt.strftime(SPEC.timestamp_format)
    return raw.to_csv(index=False).encode()


def with_timestamps_of(frame: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    return frame.assign(timestamp=pd.date_range(day, periods=len(frame), freq="10min")).reset_index(drop=True)


def source_csv_with(extra: str, copy_of: str) -> bytes:
    raw = pd.read_csv(io.BytesIO(as_source_csv(rows(FAULT_DAY))), dtype=str)
    return raw.assign(**{extra: raw[copy_of]}).to_csv(index=False).encode()


# Rejected by validation: (body, the reason's check, words the reason must hold)
REJECTED = {
    "WindSpeed beside Wind Speed": (lambda: source_csv_with("WindSpeed", "Wind Speed"),
                                    "schema", ["'Wind Speed' and 'WindSpeed'"]),
    "timestamp beside DateTime": (lambda: source_csv_with("timestamp", "DateTime"),
                                  "schema", ["'DateTime' and 'timestamp'"]),
    "Humidity missing": (lambda: as_source_csv(rows(FAULT_DAY).drop(columns=["Humidity"])),
                         "schema", ["missing required columns: Humidity"]),
    "zone1 at zero": (lambda: as_source_csv(rows(FAULT_DAY).assign(zone1=0.0)),
                      "plausibility", ["zone1"]),
    "zone1 in MW": (lambda: as_source_csv(rows(FAULT_DAY).assign(zone1=lambda f: f.zone1 / 1000)),
                    "plausibility", ["zone1"]),
    "Temperature stuck": (lambda: as_source_csv(rows(FAULT_DAY).assign(Temperature=11.37)),
                          "plausibility", ["Temperature"]),
    "Temperature sign flipped": (lambda: as_source_csv(rows(FAULT_DAY).assign(
        Temperature=lambda f: -f.Temperature)), "plausibility", ["Temperature"]),
    "clock an hour late": (lambda: as_source_csv(with_timestamps_of(
        rows(FAULT_DAY + pd.Timedelta(hours=1)), FAULT_DAY)), "plausibility", ["clock"]),
    "a copy of last week": (lambda: as_source_csv(with_timestamps_of(
        rows(FAULT_DAY - pd.Timedelta(days=7)), FAULT_DAY)), "plausibility", ["copy"]),
}
# Garbage from the source: (DataSource mode, words the failure's reason must hold)
GARBAGE = {"binary": ("garbage", "binary data"), "HTML with 200": ("html", "HTML page"),
           "not UTF-8": ("non-utf8", "not UTF-8"), "empty": ("empty", "empty response"),
           "oversized": ("chunked", "max_bytes")}


@pytest.fixture
def trained(settings, backends, monkeypatch):
    """Five real weeks collected and trained: a production model for every target."""
    collector = Collector(settings, backends, SPEC, {"replay": ReplaySource(SourceConfig("replay", "replay"), SPEC)})
    batch = collector.collect_source("replay", timedelta(days=TRAINED_DAYS), None)
    summary = push_data_ready(retrain_client(settings, monkeypatch), settings, backends, batch["batch_id"], "m-train")
    assert summary["status"] == "trained", summary
    assert all(backends.documents.get(names.PRODUCTION, t) for t in SPEC.target_names)
    return batch


def production_state(backends) -> dict:
    """Everything a refused batch must leave as it was."""
    head = backends.documents.get(names.DATASETS, SPEC.name) or {}
    return {"raw": backends.blobs.list(names.RAW),
            "processed": (head.get("version"), head.get("sha256")),
            "production": {t: (backends.documents.get(names.PRODUCTION, t) or {}).get("version")
                           for t in SPEC.target_names},
            "cursor": (backends.documents.get(names.CURSORS, SPEC.name) or {}).get("last_timestamp"),
            "accepted": sorted(i for i, _ in backends.documents.query(
                where(names.BATCHES, ("status", "==", names.BATCH_ACCEPTED))))}


def cli(capsys, *args: str) -> list[dict]:
    """Run the operator CLI with ``--json``; its rows (log lines on the same stream left out)."""
    capsys.readouterr()
    assert cli_main(["--json", *args]) == 0
    out = capsys.readouterr().out.splitlines()
    return json.loads("\n".join(line for line in out if not line.startswith('{"severity"')))


def collect(app) -> tuple[int, dict]:
    response = app.test_client().post("/", json={"window": "P1D"})
    return response.status_code, response.get_json()


def test_refused_data_never_reaches_production_and_a_retraction_takes_a_day_back_out(
        trained, settings, backends, monkeypatch, receiver, capsys):
    module, url = receiver
    subs = [subscribe(backends, settings, url, t) for t in (settings.topic_data_ready, settings.topic_alerts)]
    cache = "cache/feed/latest.csv"
    try:
        with DataSource() as source:
            sources = json.dumps([{"name": "feed", "type": "http", "url": source.url, "retries": 0,
                                   "max_bytes": 200_000}])
            app = function_app("collect_data", settings, monkeypatch, COLLECT_SOURCES=sources)
            source.body = as_source_csv(rows(GOOD_DAY))
            code, good = collect(app)
            assert code == 200 and good["status"] == "accepted", good
            assert backends.blobs.read(cache) == source.body  # remembered once it passed validation
            pump_until(backends.events, lambda: received_on(module, settings.topic_data_ready))
            before = production_state(backends)

            for name, (body, check, words) in REJECTED.items():
                source.mode, source.body = "ok", body()
                code, result = collect(app)
                assert code == 200 and result["status"] == "rejected", (name, result)
                assert result["reasons"][0].startswith(check), (name, result["reasons"])
                assert all(w in " ".join(result["reasons"]) for w in words), (name, result["reasons"])
                assert result["implausible"] is (check == "plausibility"), name
                assert backends.blobs.read(result["object"]) == source.body
                assert result["object"].startswith(names.QUARANTINE)
                record = backends.documents.get(names.COLLECTIONS, result["collection_id"])
                assert record["status"] == "rejected" and record["reasons"] == result["reasons"]
                assert production_state(backends) == before, name
                assert backends.blobs.read(cache) == as_source_csv(rows(GOOD_DAY)), name

            for name, (mode, words) in GARBAGE.items():
                source.mode, source.size = mode, None
                code, result = collect(app)
                assert code == 502 and result["status"] == "failed", (name, result)
                assert result["fallback_used"] is True and words in result["fallback_reason"], (name, result)
                failure = result["source_failure"]
                if mode != "empty":
                    assert failure["quarantine_object"] in backends.blobs.list(names.QUARANTINE), name
                    assert len(backends.blobs.read(failure["quarantine_object"])) <= 200_000
                assert backends.documents.get(names.COLLECTIONS, result["collection_id"])["status"] == "failed"
                assert production_state(backends) == before, name
                assert backends.blobs.read(cache) == as_source_csv(rows(GOOD_DAY)), name
            state = backends.documents.get(names.SOURCE_STATE, "feed")
            assert state["consecutive_failures"] == len(GARBAGE)

            # The source recovers; a day with a new column is accepted and the change is told.
            source.mode = "ok"
            source.body = as_source_csv(rows(FAULT_DAY))
            assert collect(app)[1]["status"] == "accepted"
            assert backends.documents.get(names.SOURCE_STATE, "feed")["consecutive_failures"] == 0
            next_day = FAULT_DAY + pd.Timedelta(days=1)
            raw = pd.read_csv(io.BytesIO(as_source_csv(rows(next_day))), dtype=str).assign(Pressure="1013")
            source.body = raw.to_csv(index=False).encode()
            code, extra = collect(app)
        assert code == 200 and extra["status"] == "accepted" and extra["unknown_columns"] == ["Pressure"]
        assert "Pressure" not in read_canonical_csv(backends.blobs.read(extra["object"])).columns
        pump_until(backends.events, lambda: any(
            a["data"].get("kind") == "schema_changed" for a in received_on(module, settings.topic_alerts)))
        rejected_alerts = [a["data"] for a in received_on(module, settings.topic_alerts)
                           if a["data"].get("kind") == "batch_rejected"]
        assert len(rejected_alerts) == len(REJECTED)
        assert {a["severity"] for a in rejected_alerts if "plausibility" in a["reasons"][0]} == {"high"}
        announced = {e["data"]["batch_id"] for e in received_on(module, settings.topic_data_ready)}
        assert announced <= {good["batch_id"]} | set(production_state(backends)["accepted"])

        # Train on the last day, then take it back out.
        retrain = retrain_client(settings, monkeypatch)
        trained_with = push_data_ready(retrain, settings, backends, extra["batch_id"], "m-extra")
        assert trained_with["status"] == "trained"
        actuals = RecentActuals(backends, SPEC)
        assert actuals.refresh().last == next_day.to_datetime64().astype("datetime64[m]") + 143 * 10
        (retraction,) = cli(capsys, "retract", extra["batch_id"], "--reason", "meter replaced; readings wrong",
                            "--actor", "ops")
        assert retraction["status"] == "retracted" and retraction["message_id"]
        assert actuals.refresh().last < next_day.to_datetime64()  # predict stops using it
        assert cli(capsys, "retract", extra["batch_id"], "--reason", "again")[0]["already_retracted"] is True

        data = {"batch_id": extra["batch_id"], "dataset": SPEC.name, "retracted": True,
                "reason": retraction["reason"]}
        response = post_push(retrain, settings, settings.topic_data_ready, data, retraction["message_id"])
        assert response.status_code == 200, response.get_data(as_text=True)[-2000:]
        outcome = backends.documents.get(names.EVENT_CLAIMS, retraction["message_id"])["outcome"]
        assert outcome["status"] == "trained" and outcome["retracted_batch_id"] == extra["batch_id"]
        head = backends.documents.get(names.DATASETS, SPEC.name)
        assert extra["batch_id"] in head["retracted"] and extra["batch_id"] not in head["batch_ids"]
        lineage = backends.documents.get(names.DATASET_VERSIONS, head["version"])
        assert lineage["removed_batch"] == extra["batch_id"] and lineage["parent"] == trained_with["dataset_version"]
        frame = read_canonical_csv(gzip.decompress(backends.blobs.read(head["object"])))
        assert frame["timestamp"].max() < next_day
        status = cli(capsys, "status")
        promoted = [r for r in status if r["dataset_version"] == head["version"]]
        assert len(promoted) == sum(t["decision"] == "promoted" for t in outcome["targets"])
        assert all(r["excludes"] == [extra["batch_id"]] for r in promoted)
        listed = {b["batch_id"]: b for b in cli(capsys, "batches", "--limit", "50")}
        assert listed[extra["batch_id"]]["retrain"].startswith("retracted by ops (meter replaced")
    finally:
        for name in subs:
            unsubscribe(settings, name)


def test_an_operator_releases_a_quarantined_day_the_row_checks_still_apply(settings, backends, monkeypatch,
                                                                          capsys):
    collector = Collector(settings, backends, SPEC, {"replay": ReplaySource(SourceConfig("replay", "replay"), SPEC)})
    assert collector.collect_source("replay", timedelta(days=14), None)["status"] == "accepted"
    day = pd.Timestamp("2017-01-15")
    with DataSource() as source:
        # Zone 3 at 30 % of its level: real (a feeder moved), but no history says so.
        source.body = as_source_csv(rows(day).assign(zone3=lambda f: f.zone3 * 0.3))
        sources = json.dumps([{"name": "feed", "type": "http", "url": source.url, "retries": 0}])
        app = function_app("collect_data", settings, monkeypatch, COLLECT_SOURCES=sources)
        code, quarantined = collect(app)
    assert code == 200 and quarantined["status"] == "rejected" and quarantined["implausible"] is True
    assert "zone3" in quarantined["reasons"][0]
    (released,) = cli(capsys, "release", quarantined["batch_id"], "--reason", "feeder switched to zone 3 B",
                      "--actor", "ops")
    assert released["status"] == "accepted" and released["rows"] == 144
    assert released["released"]["quarantine_reasons"] == quarantined["reasons"]
    assert backends.documents.get(names.BATCHES, quarantined["batch_id"])["released_as"] == released["batch_id"]
    assert released["object"] in backends.blobs.list(names.RAW)
    assert (backends.documents.get(names.CURSORS, SPEC.name) or {})["last_timestamp"] == "2017-01-15T23:50:00"
    capsys.readouterr()
    assert cli_main(["release", quarantined["batch_id"], "--reason", "again"]) == 1
    assert f"already released as {released['batch_id']}" in capsys.readouterr().err


def test_retracting_the_only_batch_is_acknowledged_as_failed_and_changes_nothing(settings, backends, monkeypatch,
                                                                                capsys):
    collector = Collector(settings, backends, SPEC, {"replay": ReplaySource(SourceConfig("replay", "replay"), SPEC)})
    batch = collector.collect_source("replay", timedelta(days=14), None)
    retrain = retrain_client(settings, monkeypatch)
    assert push_data_ready(retrain, settings, backends, batch["batch_id"], "m-only")["status"] == "trained"
    head = backends.documents.get(names.DATASETS, SPEC.name)
    (retraction,) = cli(capsys, "retract", batch["batch_id"], "--reason", "wrong feed")
    data = {"batch_id": batch["batch_id"], "dataset": SPEC.name, "retracted": True, "reason": "wrong feed"}
    response = post_push(retrain, settings, settings.topic_data_ready, data, retraction["message_id"])
    assert response.status_code == 200  # acknowledged: no redelivery can ever succeed
    claim = backends.documents.get(names.EVENT_CLAIMS, retraction["message_id"])
    assert claim["state"] == "failed" and "leaves no processed data" in claim["reason"]
    assert backends.documents.get(names.DATASETS, SPEC.name) == head
