"""retrain on both backends: versions and gates, at-least-once safety, rejection, rollback."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from shared.collect.service import Collector
from shared.collect.sources import ReplaySource, SourceConfig
from shared.core.dataset_spec import load_spec
from shared.core.forest import FORMAT_VERSION
from shared.core.registry import Registry, ensembles_from_bytes
from shared.platform import names
from shared.platform.ports import where
from shared.platform.pubsub_push import push_body
from shared.retrain.service import ClaimBusy, Retrainer
from tests.support.bus import pubsub_event, pump_until, received_on, subscribe, unsubscribe
from tests.support.functions import function_app

SPEC = load_spec("tetouan_power")


def collector(settings, backends) -> Collector:
    return Collector(settings, backends, SPEC,
                     {"replay": ReplaySource(SourceConfig("replay", "replay"), SPEC)})


def collect(settings, backends, days: int) -> dict:
    result = collector(settings, backends).collect_source("replay", timedelta(days=days), None)
    assert result["status"] == "accepted"
    return result


def event_for(batch: dict, message_id: str) -> object:
    return pubsub_event({"batch_id": batch["batch_id"]}, message_id)


@pytest.fixture
def model_updates(backends, settings, receiver):
    module, url = receiver
    name = subscribe(backends, settings, url, settings.topic_model_updated)
    yield lambda: received_on(module, settings.topic_model_updated)
    unsubscribe(settings, name)


def statuses(backends) -> dict[str, str]:
    return {doc_id: doc["status"] for doc_id, doc in backends.documents.query(where(names.MODELS))}


def test_weekly_retrains_promote_or_reject_with_recorded_reasons(settings, backends, model_updates):
    retrainer = Retrainer(settings, backends, SPEC)
    registry = Registry(settings, backends)
    promoted_events = 0
    for i, days in enumerate([35, 7, 7, 7]):
        summary = retrainer.handle(event_for(collect(settings, backends, days), f"m-{i}"))
        assert summary["status"] == "trained"
        decisions = {t["target"]: t["decision"] for t in summary["targets"]}
        assert set(decisions) == set(SPEC.target_names)
        assert set(decisions.values()) <= {"promoted", "rejected"}
        promoted_events += bool(summary["model_updated_message_id"])
        for outcome in summary["targets"]:
            assert outcome["reasons"], outcome  # every decision says why
    records = [doc for _, doc in backends.documents.query(where(names.MODELS))]
    assert len(records) == 12
    for record in records:
        assert record["status"] in ("production", "archived", "rejected")
        if record["gates"] == [] or [g["name"] for g in record["gates"]] == ["data"]:
            continue  # stopped by the data gate before training
        assert [g["name"] for g in record["gates"]] == ["data", "parity", "mape", "r2", "rmse", "skill",
                                                        "champion"]
        assert all("status" in g and "value" in g and "threshold" in g for g in record["gates"])
        gate = {g["name"]: g for g in record["gates"]}
        assert gate["parity"]["status"] == "passed" and gate["parity"]["value"] <= 1e-9
        # Like with like: the candidate's served metrics against the champion's served
        # metrics on the same holdout rows.
        assert record["gated_metrics"] == "served"
        assert gate["mape"]["value"] == record["metrics"]["served"]["mape"]
        if gate["champion"]["status"] != "skipped":
            assert gate["champion"]["value"] == record["metrics"]["served"]["mape"]
            # A production model refit on the shared days is judged on the newer rows only.
            assert 0 < record["champion"]["n"] <= record["metrics"]["served"]["n"]
            assert gate["champion"]["threshold"] == pytest.approx(record["champion"]["mape"] * 1.1)
        assert record["size_bytes"] < 5 * 1024 * 1024
    for target in SPEC.target_names:
        pointer = registry.production(target)
        assert pointer is not None and registry.get(pointer["version"])["status"] == "production"
        model = registry.load_model(pointer)
        assert set(model.ensembles) == {"day_ahead", "day_ahead_week", "history", "no_history"}
        # Each variant carries its 80 % interval table, from its own holdout errors.
        assert set(model.intervals) == {"day_ahead", "history", "no_history"}
        table = model.intervals["day_ahead"]
        assert (table.lower < 1).all() and (table.upper > 1).all() and table.level == 0.8
        record = registry.get(pointer["version"])
        # Served after the gates passed: refit on every row, the holdout's too.
        assert record["refit"]["rows"]["day_ahead"] > record["rows"]["day_ahead"]
        metadata = json.loads(backends.blobs.read(registry.get(pointer["version"])["metadata_artifact"]))
        for key in ("version", "created_at", "target", "features", "params", "metrics", "gates",
                    "lineage", "code_version", "library_versions", "sha256", "reference"):
            assert key in metadata, key
        assert metadata["sha256"]["model.npz"] == pointer["sha256"]
        assert metadata["artifact_format"] == FORMAT_VERSION
        assert pointer["metrics"] == registry.get(pointer["version"])["metrics"]["served"]
        assert metadata["lineage"]["dataset_version"] == registry.get(pointer["version"])["dataset_version"]
        assert set(metadata["reference"]["columns"]) >= set(SPEC.feature_names)
    first = registry.history("zone1")[-1]
    assert first["action"] == "promote" and first["from_version"] is None
    pump_until(backends.events, lambda: len(model_updates()) >= promoted_events)
    updates = model_updates()
    assert len(updates) == promoted_events
    for update in updates:
        for target, info in update["data"]["targets"].items():
            assert info["artifact"].startswith(f"models/{target}/") and len(info["sha256"]) == 64


def test_a_duplicate_delivery_trains_once(settings, backends):
    retrainer = Retrainer(settings, backends, SPEC)
    event = event_for(collect(settings, backends, 35), "dup-1")
    assert retrainer.handle(event)["status"] == "trained"
    assert retrainer.handle(event) == {"status": "duplicate", "state": "done"}
    assert len(statuses(backends)) == 3
    assert backends.documents.get(names.DATASETS, SPEC.name)["seq"] == 1


def test_concurrent_deliveries_train_once(settings, backends):
    event = event_for(collect(settings, backends, 35), "race-1")
    results: list[str] = []
    barrier = threading.Barrier(2)

    def deliver() -> None:
        retrainer = Retrainer(settings, backends, SPEC)
        barrier.wait()
        try:
            results.append(retrainer.handle(event)["status"])
        except ClaimBusy:
            results.append("busy: redeliver")

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The second delivery either arrived after the first finished (a duplicate) or while
    # it ran (asked to be redelivered); either way one training, and a redelivery is a duplicate.
    assert results.count("trained") == 1 and len(results) == 2
    assert set(results) - {"trained"} <= {"duplicate", "busy: redeliver"}
    assert Retrainer(settings, backends, SPEC).handle(event)["status"] == "duplicate"
    assert len(statuses(backends)) == 3


def test_the_same_batch_in_two_events_adds_it_to_the_dataset_once(settings, backends):
    retrainer = Retrainer(settings, backends, SPEC)
    batch = collect(settings, backends, 35)
    retrainer.handle(event_for(batch, "a-1"))
    again = retrainer.handle(event_for(batch, "a-2"))  # e.g. re-announced after a crash
    assert again["status"] == "trained" and again["dataset_version"].endswith(
        backends.documents.get(names.DATASETS, SPEC.name)["version"][-8:])
    assert backends.documents.get(names.DATASETS, SPEC.name)["seq"] == 1
    assert len(statuses(backends)) == 3


@pytest.mark.parametrize("case", ["undecodable", "no batch id", "unknown batch", "rejected batch"])
def test_permanent_failures_are_recorded_and_acknowledged(settings, backends, case):
    retrainer = Retrainer(settings, backends, SPEC)
    if case == "undecodable":
        event = pubsub_event(None, "p-1", raw=b"\x00not json")
    elif case == "no batch id":
        event = pubsub_event({"rows": 3}, "p-1")
    elif case == "unknown batch":
        event = pubsub_event({"batch_id": "replay-nope"}, "p-1")
    else:
        backends.documents.set(names.BATCHES, "bad-1", {"batch_id": "bad-1", "status": "rejected"})
        event = pubsub_event({"batch_id": "bad-1"}, "p-1")
    result = retrainer.handle(event)  # returns: the message is acknowledged, not retried forever
    assert result["status"] == "failed"
    claim = backends.documents.get(names.EVENT_CLAIMS, "p-1")
    assert claim["state"] == "failed" and claim["reason"]
    assert statuses(backends) == {}


def test_a_retryable_failure_raises_and_the_redelivery_trains(settings, backends, monkeypatch):
    retrainer = Retrainer(settings, backends, SPEC)
    event = event_for(collect(settings, backends, 35), "flaky-1")
    original = retrainer.processed.extend
    monkeypatch.setattr(retrainer.processed, "extend",
                        lambda batch: (_ for _ in ()).throw(ConnectionError("storage blip")))
    with pytest.raises(ConnectionError):
        retrainer.handle(event)
    assert backends.documents.get(names.EVENT_CLAIMS, "flaky-1")["state"] == "released"
    monkeypatch.setattr(retrainer.processed, "extend", original)
    assert retrainer.handle(event)["status"] == "trained"


def test_a_claim_left_by_a_crashed_run_expires_and_is_taken_over(settings, backends):
    retrainer = Retrainer(settings, backends, SPEC)
    event = event_for(collect(settings, backends, 35), "crash-1")
    backends.documents.set(names.EVENT_CLAIMS, "crash-1", {"state": "running", "owner": "dead",
                                                           "expires_at": 0, "attempts": 1})
    assert retrainer.handle(event)["status"] == "trained"
    assert backends.documents.get(names.EVENT_CLAIMS, "crash-1")["attempts"] == 2


def test_a_live_claim_asks_for_a_redelivery_instead_of_acknowledging(settings, backends):
    retrainer = Retrainer(settings, backends, SPEC)
    event = event_for(collect(settings, backends, 35), "busy-1")
    backends.documents.set(names.EVENT_CLAIMS, "busy-1", {"state": "running", "owner": "other",
                                                          "expires_at": 4e9, "attempts": 1})
    with pytest.raises(ClaimBusy):  # acknowledging would lose the event if that run crashed
        retrainer.handle(event)
    assert statuses(backends) == {}


def test_a_worse_challenger_is_rejected_and_production_is_unchanged(settings, backends, model_updates):
    Retrainer(settings, backends, SPEC).handle(event_for(collect(settings, backends, 35), "good"))
    registry = Registry(settings, backends)
    before = {t: registry.production(t)["version"] for t in SPEC.target_names}
    worse = Retrainer(settings.__class__(**{**vars(settings), "training_params": dict(
        {"max_iter": 2, "learning_rate": 0.05})}), backends, SPEC)
    summary = worse.handle(event_for(collect(settings, backends, 7), "bad"))
    assert [t["decision"] for t in summary["targets"]] == ["rejected"] * 3
    for outcome in summary["targets"]:
        assert any(r.startswith(("skill", "champion", "mape", "r2")) for r in outcome["reasons"])
        assert registry.get(outcome["version"])["status"] == "rejected"
    assert {t: registry.production(t)["version"] for t in SPEC.target_names} == before
    assert summary["model_updated_message_id"] is None


def test_an_export_that_differs_from_scikit_learn_is_rejected_by_the_parity_gate(settings, backends, monkeypatch):
    import dataclasses

    from shared.retrain import training

    export = training.from_hist_gradient_boosting

    def misrouting(model, features):  # every missing value takes the other branch
        ensemble = export(model, features)
        return dataclasses.replace(ensemble, missing_left=~ensemble.missing_left)

    monkeypatch.setattr(training, "from_hist_gradient_boosting", misrouting)
    summary = Retrainer(settings, backends, SPEC).handle(event_for(collect(settings, backends, 35), "parity"))
    registry = Registry(settings, backends)
    assert [t["decision"] for t in summary["targets"]] == ["rejected"] * 3
    for outcome in summary["targets"]:
        assert any(r.startswith("parity") for r in outcome["reasons"]), outcome["reasons"]
        record = registry.get(outcome["version"])
        assert record["status"] == "rejected"
        assert next(g for g in record["gates"] if g["name"] == "parity")["status"] == "failed"
        assert registry.production(outcome["target"]) is None
    assert summary["model_updated_message_id"] is None


def test_concurrent_promotions_exactly_one_wins_and_the_loser_is_recorded(settings, backends):
    registry = Registry(settings, backends)
    for version in ("zone1-a", "zone1-b"):
        registry.record({"version": version, "target": "zone1", "status": "candidate",
                         "artifact": f"models/zone1/{version}/model.npz", "sha256": "0" * 64,
                         "variants": ["history", "no_history"], "created_at": version})
    barrier = threading.Barrier(2)
    outcomes = {}

    def promote(version: str) -> None:
        barrier.wait()
        outcomes[version] = registry.promote("zone1", version, None, "race")

    threads = [threading.Thread(target=promote, args=(v,)) for v in ("zone1-a", "zone1-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [v for v, o in outcomes.items() if o.won]
    assert len(winners) == 1
    loser = next(o for o in outcomes.values() if not o.won)
    assert "production moved" in loser.reason
    assert registry.production("zone1")["version"] == winners[0]
    assert len(registry.history("zone1")) == 1


def test_rollback_serves_an_earlier_version_records_it_and_announces(settings, backends, model_updates):
    retrainer = Retrainer(settings, backends, SPEC)
    retrainer.handle(event_for(collect(settings, backends, 35), "r-1"))
    registry = Registry(settings, backends)
    first = registry.production("zone3")["version"]
    for i in range(3):
        retrainer.handle(event_for(collect(settings, backends, 7), f"r-{i + 2}"))
        if registry.production("zone3")["version"] != first:
            break
    current = registry.production("zone3")["version"]
    assert current != first, "zone3 was never promoted again"
    outcome = registry.rollback("zone3", first, "bad predictions after the holiday", actor="alice")
    assert outcome.won
    message_id = registry.announce([outcome], cause="rollback")
    assert registry.production("zone3")["version"] == first
    assert registry.get(current)["status"] == "archived"
    latest = registry.history("zone3")[0]
    assert (latest["action"], latest["from_version"], latest["to_version"], latest["actor"]) == (
        "rollback", current, first, "alice")
    pump_until(backends.events, lambda: any(u["id"] == message_id for u in model_updates()))
    update = next(u for u in model_updates() if u["id"] == message_id)
    assert update["data"]["cause"] == "rollback" and update["data"]["targets"]["zone3"]["version"] == first
    assert not registry.rollback("zone3", first, "again").won  # already serving


def test_artifacts_are_plain_arrays_and_a_tampered_one_is_refused(settings, backends):
    from shared.core.registry import ArtifactError

    Retrainer(settings, backends, SPEC).handle(event_for(collect(settings, backends, 35), "t-1"))
    registry = Registry(settings, backends)
    pointer = registry.production("zone2")
    data = backends.blobs.read(pointer["artifact"])
    assert set(ensembles_from_bytes(data, ["day_ahead", "no_history"])) == {"day_ahead", "no_history"}
    backends.blobs.write(pointer["artifact"], data[:-10] + b"0123456789")
    with pytest.raises(ArtifactError, match="sha256"):
        registry.load_ensembles(pointer)


def test_the_retrain_function_handles_a_pubsub_push(settings, backends, monkeypatch):
    batch = collect(settings, backends, 35)
    app = function_app("retrain", settings, monkeypatch, signature="cloudevent")
    body = push_body(f"projects/{settings.project}/subscriptions/retrain", "push-1",
                     json.dumps({"batch_id": batch["batch_id"]}).encode(), {}, "2017-01-29T00:00:00.000Z")
    response = app.test_client().post(f"/projects/{settings.project}/topics/{settings.topic_data_ready}",
                                      json=body)
    assert response.status_code == 200
    assert len(statuses(backends)) == 3
    assert backends.documents.get(names.EVENT_CLAIMS, "push-1")["state"] == "done"
    failing = push_body(f"projects/{settings.project}/subscriptions/retrain", "push-2",
                        b"{not json", {}, "2017-01-29T00:00:00.000Z")
    assert app.test_client().post("/", json=failing).status_code == 200  # acknowledged, recorded
    assert backends.documents.get(names.EVENT_CLAIMS, "push-2")["state"] == "failed"
