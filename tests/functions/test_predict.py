"""predict on both backends: parity with the registry, hot swaps, refusals, the API contract."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import timedelta

import numpy as np
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry as SchemaRegistry
from referencing import Resource

from shared.collect.service import Collector
from shared.collect.sources import ReplaySource, SourceConfig
from shared.core.dataset_spec import load_spec
from shared.core.frames import content_hash
from shared.core.registry import Registry, pack_arrays, unpack_arrays
from shared.platform import names
from shared.retrain.processed import ProcessedData
from shared.retrain.training import prepare, served_predictions
from shared.retrain.training import rows as rows_of
from tests.support.bus import post_push, push_body, topic_path
from tests.support.functions import function_app, push_data_ready, retrain_client, served_function
from tests.support.servers import ThreadedServer
from tests.support.wait import wait_until

SPEC = load_spec("tetouan_power")
OBS = {"Temperature": 12.5, "Humidity": 65.3, "WindSpeed": 0.08, "GeneralDiffuseFlows": 180.5,
       "DiffuseFlows": 95.1, "Timestamp": "2017-02-04T14:30:00"}


def collect_and_train(settings, backends, monkeypatch, windows=(35,)) -> None:
    """Collect each window and announce it to the retrain function, as its push subscription does."""
    collector = Collector(settings, backends, SPEC,
                          {"replay": ReplaySource(SourceConfig("replay", "replay"), SPEC)})
    retrain = retrain_client(settings, monkeypatch)
    for i, days in enumerate(windows):
        batch = collector.collect_source("replay", timedelta(days=days), None)
        summary = push_data_ready(retrain, settings, backends, batch["batch_id"], f"train-{i}")
        assert summary["status"] == "trained", summary


@pytest.fixture
def trained(settings, backends, monkeypatch):
    collect_and_train(settings, backends, monkeypatch)
    return Registry(settings, backends)


@pytest.fixture
def client(trained, settings, monkeypatch):
    app = function_app("predict", settings, monkeypatch, MODEL_REFRESH_SECONDS="0.05")
    return app.test_client()


def post(client, body, **kw):
    response = client.post("/predict", json=body, **kw)
    return response.status_code, response.get_json()


def test_predictions_match_the_training_time_holdout_predictions(client, trained, settings, backends):
    head = ProcessedData(backends, SPEC).head()
    frame = ProcessedData(backends, SPEC).read(head)
    prepared = prepare(frame, SPEC, 7)
    rows = np.flatnonzero(prepared.holdout)
    instances = [{**{f: float(prepared.weather[f][i]) for f in SPEC.feature_names},
                  "Timestamp": str(prepared.timestamps[i])} for i in rows]
    code, body = post(client, {"instances": instances})
    assert code == 200
    for target in SPEC.target_names:
        pointer = trained.production(target)
        record = trained.get(pointer["version"])
        expected, chosen = served_predictions(trained.load_ensembles(pointer),
                                              rows_of(prepared, target, prepared.holdout))
        # The recomputation is the training-time one: same hash as the registry records.
        import hashlib
        assert hashlib.sha256(np.ascontiguousarray(expected).tobytes()).hexdigest() == \
            record["holdout"]["prediction_sha256"]
        served = np.array([item["predictions"][target] for item in body["predictions"]])
        np.testing.assert_allclose(served, np.round(expected, 4), rtol=0, atol=1e-4)
        assert body["model_versions"][target] == pointer["version"]
        assert all(item["variants"][target] == "day_ahead" for item in body["predictions"])
        assert (chosen == 0).all()
        # The 80 % interval brackets each prediction, as wide as the model's holdout errors say.
        lower = np.array([item["intervals"][target]["lower"] for item in body["predictions"]])
        upper = np.array([item["intervals"][target]["upper"] for item in body["predictions"]])
        assert (lower < served).all() and (served < upper).all()
        assert body["interval_level"] == 0.8


def test_a_single_observation_answers_in_the_batch_shape_and_keeps_the_energy_documents_fields(client, trained):
    code, body = post(client, OBS)
    assert code == 200
    code, batch = post(client, {"instances": [OBS]})
    [item] = body["predictions"]  # one item, as a batch of one
    assert item == batch["predictions"][0] and body["model_versions"] == batch["model_versions"]
    assert set(item["predictions"]) == set(SPEC.target_names)
    assert item["derived_features"] == {"Day": 4, "Month": 2, "Hour": 14, "Minute": 30, "DayWeek": 6,
                                        "QuarterYear": 1, "DayYear": 35}
    assert item["variants"] == {t: "day_ahead" for t in SPEC.target_names}
    assert all(item["intervals"][t]["lower"] < item["predictions"][t] < item["intervals"][t]["upper"]
               for t in SPEC.target_names)
    # The energy document's fields, for its existing callers.
    assert body["predicted_power_consumption_zone2"] == item["predictions"]["zone2"]
    assert body["model_version"] == trained.production("zone2")["version"]
    assert body["input_features"]["Temperature"] == 12.5 and body["input_features"]["DayYear"] == 35


def test_far_past_the_actuals_the_no_history_model_serves_and_says_so(client):
    code, body = post(client, {**OBS, "Timestamp": "2017-06-01T12:00:00", "targets": ["zone3"]})
    [item] = body["predictions"]
    assert code == 200 and item["variants"] == {"zone3": "no_history"}
    assert set(item["predictions"]) == {"zone3"} and "predicted_power_consumption_zone2" not in body


def test_columns_format_carries_the_same_predictions(client):
    instances = [{**OBS, "Timestamp": f"2017-02-03T{h:02d}:00:00"} for h in range(24)]
    _, rows = post(client, {"instances": instances})
    code, cols = post(client, {"instances": instances, "format": "columns"})
    assert code == 200
    assert cols["columns"]["predictions"]["zone1"] == [r["predictions"]["zone1"] for r in rows["predictions"]]
    assert cols["columns"]["derived_features"]["Hour"] == list(range(24))


BAD_INPUTS = [
    ({**OBS, "Temperature": None}, "Temperature", "wrong type"),
    ({k: v for k, v in OBS.items() if k != "Humidity"}, "Humidity", "missing"),
    ({**OBS, "WindSpeed": "3"}, "WindSpeed", "wrong type"),
    ({**OBS, "WindSpeed": True}, "WindSpeed", "wrong type"),
    ({**OBS, "Humidity": 140}, "Humidity", "outside the physical range"),
    ({**OBS, "DiffuseFlows": -1}, "DiffuseFlows", "outside the physical range"),
    ({**OBS, "Timestamp": "next tuesday"}, "Timestamp", "unparseable timestamp"),
    ({**OBS, "Timestamp": 1483228800}, "Timestamp", "wrong type"),
    ({**OBS, "targets": ["zone7"]}, "targets[0]", "unknown target"),
    ({**OBS, "targets": "zone1"}, "targets", "wrong type"),
    ({**OBS, "Pressure": 1013}, "Pressure", "unknown field"),
    ({"instances": [OBS, {**OBS, "Temperature": 99}]}, "instances[1].Temperature", "outside the physical range"),
    ({"instances": [OBS, "not an object"]}, "instances[1]", "wrong type"),
    ({"instances": []}, "instances", "must be a non-empty list of observations"),
    ({"instances": [OBS] * 11}, "instances", "batch too large"),
    ({"instances": [OBS], "format": "xml"}, "format", "unknown response format"),
    ({**OBS, "Timestamp": "2017-02-04T14:35:00"}, "Timestamp", "not on the series' grid"),
    ({**OBS, "Timestamp": "2017-02-04T14:30:17"}, "Timestamp", "not on the series' grid"),
    ({"instances": [OBS, {**OBS, "Timestamp": "2017-02-04T14:30:00.5"}]}, "instances[1].Timestamp",
     "not on the series' grid"),
    ({**OBS, "Timestamp": "2017-02-04"}, "Timestamp", "unparseable timestamp"),
    ({**OBS, "Timestamp": "2017-W05-6T14:30"}, "Timestamp", "unparseable timestamp"),
    ({**OBS, "rounding": "ceil"}, "rounding", "unknown rounding"),
    ({**OBS, "format": "columns"}, "format", "unknown field"),
    ({"instances": [OBS], "parameters": {"format": "xml"}}, "parameters.format", "unknown response format"),
    ({"instances": [OBS], "parameters": {"confidence": 0.9}}, "parameters.confidence", "unknown field"),
    ({"instances": [OBS], "parameters": ["zone1"]}, "parameters", "wrong type"),
    ({"instances": [OBS], "parameters": {"targets": ["zone9"]}}, "parameters.targets[0]", "unknown target"),
    ({"instances": [OBS], "format": "columns", "parameters": {"format": "columns"}}, "parameters.format",
     "given twice"),
]


@pytest.mark.parametrize("body,field,reason", BAD_INPUTS)
def test_every_class_of_bad_input_is_a_400_naming_the_field(trained, settings, monkeypatch, body, field, reason):
    app = function_app("predict", settings, monkeypatch, PREDICT_MAX_INSTANCES="10")
    response = app.test_client().post("/predict", json=body)
    assert response.status_code == 400
    errors = response.get_json()["errors"]
    assert any(e["field"] == field and e["reason"] == reason for e in errors), errors


def test_off_grid_timestamps_floor_on_request_and_vertex_ai_parameters_are_read(client):
    on_grid = post(client, OBS)[1]
    code, floored = post(client, {**OBS, "Timestamp": "2017-02-04T14:39:59.9", "rounding": "floor"})
    assert code == 200 and floored["predictions"] == on_grid["predictions"]
    assert floored["predictions"][0]["derived_features"]["Minute"] == 30
    code, body = post(client, {"instances": [OBS, {**OBS, "Timestamp": "2017-02-04T14:35"}],
                               "parameters": {"targets": ["zone1"], "format": "columns", "rounding": "floor"}})
    assert code == 200 and set(body["columns"]["predictions"]) == {"zone1"}
    assert body["columns"]["predictions"]["zone1"] == [on_grid["predictions"][0]["predictions"]["zone1"]] * 2
    assert list(body["model_versions"]) == ["zone1"]


def test_transport_level_refusals(client):
    assert client.put("/predict", json=OBS).status_code == 405
    assert client.get("/predict").status_code == 405
    assert client.post("/health").status_code == 405
    assert client.post("/predict", data=json.dumps(OBS), content_type="text/plain").status_code == 415
    bad_json = client.post("/predict", data="{nope", content_type="application/json")
    assert bad_json.status_code == 400 and bad_json.get_json()["errors"][0]["field"] == "body"
    empty = client.post("/predict", data="", content_type="application/json")
    assert empty.status_code == 400
    assert client.post("/predict", json=[OBS]).status_code == 400
    assert client.get("/nowhere").status_code == 404
    # Unknown paths are 404 whatever the method; HEAD and OPTIONS work where GET does.
    assert {client.open("/nowhere", method=m).status_code for m in ("PUT", "DELETE", "HEAD", "OPTIONS")} == {404}
    head = client.head("/health")
    assert head.status_code == 200 and head.data == b"" and head.headers["Content-Type"] == "application/json"
    assert client.head("/openapi.json").status_code == 200
    options = client.options("/predict")
    assert options.status_code == 204 and options.headers["Allow"] == "POST, OPTIONS"
    assert client.options("/health").headers["Allow"] == "GET, HEAD, OPTIONS"
    assert client.put("/predict", json=OBS).headers["Allow"] == "POST, OPTIONS"


def test_random_garbage_never_gets_a_500(client):
    rng = random.Random(7)
    atoms = [None, True, 0, -1e308, 1e308, "", "x" * 300, [], {}, 3.5, "2017-01-01T00:00:00", [1, 2]]

    def value(depth: int = 0):
        if depth < 2 and rng.random() < 0.3:
            return {rng.choice([*list(OBS), "instances", "targets", "format", "z"]): value(depth + 1)
                    for _ in range(rng.randint(0, 7))}
        if depth < 2 and rng.random() < 0.2:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return rng.choice(atoms)

    statuses = set()
    for _ in range(300):
        garbage = value()
        body = {**OBS, **garbage} if isinstance(garbage, dict) and rng.random() < 0.5 else garbage
        statuses.add(client.post("/predict", data=json.dumps(body), content_type="application/json").status_code)
    assert statuses <= {200, 400}


def test_health_reports_versions_and_503_without_models(client, trained, settings, backends, tmp_path, monkeypatch):
    response = client.get("/health")
    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "ok"
    assert body["targets"]["zone1"]["version"] == trained.production("zone1")["version"]
    assert body["seconds_since_pointer_check"] is not None and body["actuals"]["rows"] > 0
    backends.documents.delete(names.PRODUCTION, "zone3")
    fresh = function_app("predict", settings, monkeypatch).test_client()
    response = fresh.get("/health")
    assert response.status_code == 503 and "zone3" in response.get_json()["reason"]
    code, body = post(fresh, {**OBS, "targets": ["zone3"]})
    assert code == 503
    assert post(fresh, {**OBS, "targets": ["zone1"]})[0] == 200


def _schema_validator(doc: dict, name: str) -> Draft202012Validator:
    resource = Resource.from_contents({**doc, "$schema": "https://json-schema.org/draft/2020-12/schema"})
    registry = SchemaRegistry().with_resource("urn:predict-openapi", resource)
    return Draft202012Validator({"$ref": f"urn:predict-openapi#/components/schemas/{name}"},
                                registry=registry)


def test_real_responses_follow_the_openapi_document(client):
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) >= {"/", "/predict", "/health", "/openapi.json", "/projects/{project}/topics/{topic}"}
    assert doc["servers"][0]["url"] == "/"  # the deployment that serves the document
    push = push_body({"cause": "retrain"}, "mu-doc", subscription="projects/p/subscriptions/s")
    assert not list(_schema_validator(doc, "PushEnvelope").iter_errors(push))
    assert list(_schema_validator(doc, "PushEnvelope").iter_errors({"reload": "please"}))
    assert doc["components"]["schemas"]["Observation"]["properties"]["Humidity"]["maximum"] == 100.0
    checks = [
        ("SingleRequest", OBS), ("BatchRequest", {"instances": [OBS, OBS]}),
        ("SingleRequest", {**OBS, "rounding": "floor"}),
        ("BatchRequest", {"instances": [OBS], "parameters": {"format": "columns", "rounding": "floor"}}),
        ("SingleResponse", post(client, OBS)[1]),
        ("BatchResponse", post(client, {"instances": [OBS, {**OBS, "Timestamp": "2017-07-01T00:00"}]})[1]),
        ("BatchResponse", post(client, {"instances": [OBS], "format": "columns"})[1]),
        ("Health", client.get("/health").get_json()),
        ("Error", post(client, {**OBS, "Humidity": -3})[1]),
    ]
    for name, instance in checks:
        errors = list(_schema_validator(doc, name).iter_errors(instance))
        assert not errors, (name, [e.message for e in errors])
    wrong = list(_schema_validator(doc, "SingleResponse").iter_errors({**post(client, OBS)[1], "predictions": {}}))
    assert wrong  # the schema does reject a malformed response
    page = client.get("/docs")
    assert page.status_code == 200 and b"openapi.json" in page.data


def _rewrite_arrays(data: bytes, change) -> bytes:
    arrays = unpack_arrays(data)
    change(arrays)
    return pack_arrays(arrays)


def _child_out_of_range(arrays) -> None:
    arrays["day_ahead/children"] = arrays["day_ahead/children"].copy()
    arrays["day_ahead/children"][0] = 10 ** 6


def _leaves_changed(arrays) -> None:
    arrays["day_ahead/value"] = arrays["day_ahead/value"] * 1.01


def _deeper_than_recorded(arrays) -> None:
    meta = arrays["no_history/meta"].copy()
    meta[0] = 1
    arrays["no_history/meta"] = meta


# How a promoted artifact can be broken: bytes, its sha256 as recorded, and what /health says.
BROKEN_ARTIFACTS = {
    "corrupt bytes with a matching sha256": (lambda data: data[:100], True, "not a readable array archive"),
    "bytes that do not match the recorded sha256": (lambda data: data[:-1] + b"x", False, "sha256"),
    "tree arrays pointing outside the tree": (lambda data: _rewrite_arrays(data, _child_out_of_range), True,
                                              "outside its"),
    "trees deeper than their recorded depth": (lambda data: _rewrite_arrays(data, _deeper_than_recorded), True,
                                               "deeper than its recorded depth"),
    "trees that no longer predict as trained": (lambda data: _rewrite_arrays(data, _leaves_changed), True,
                                                "training-time predictions"),
}


@pytest.mark.parametrize("kind", list(BROKEN_ARTIFACTS))
def test_a_broken_artifact_is_never_served_shows_on_health_and_clears_after_rollback(
        client, trained, backends, kind):
    breaking, rehash, reason = BROKEN_ARTIFACTS[kind]
    old = trained.production("zone1")
    bad = breaking(backends.blobs.read(old["artifact"]))
    path = "models/zone1/zone1-broken/model.npz"
    backends.blobs.write(path, bad)
    trained.record({**trained.get(old["version"]), "version": "zone1-broken", "status": "candidate",
                    "artifact": path, **({"sha256": content_hash(bad)} if rehash else {})})
    assert trained.promote("zone1", "zone1-broken", old["version"], "test").won

    def refused() -> bool:
        code, body = post(client, OBS)  # a request is what makes predict look at the pointers
        assert code == 200 and body["model_versions"]["zone1"] == old["version"], (code, body)
        return "zone1-broken" in (client.get("/health").get_json()["targets"]["zone1"].get("error") or "")

    wait_until(refused, timeout=60, what="predict to try the broken artifact and refuse it")
    health = client.get("/health").get_json()
    assert reason in health["targets"]["zone1"]["error"], health["targets"]["zone1"]
    assert health["targets"]["zone1"]["version"] == old["version"] and health["status"] == "ok"
    for _ in range(20):
        code, body = post(client, {"instances": [OBS, {**OBS, "Timestamp": "2017-09-01T00:00"}]})
        assert code == 200 and body["model_versions"]["zone1"] == old["version"]

    assert trained.rollback("zone1", old["version"], "broken artifact").won

    def cleared() -> bool:
        assert post(client, OBS)[0] == 200
        return "error" not in client.get("/health").get_json()["targets"]["zone1"]

    wait_until(cleared, timeout=60, what="the load error to clear once the pointer is back")


def test_a_model_updated_push_reloads_at_once(trained, settings, backends, monkeypatch):
    app = function_app("predict", settings, monkeypatch, MODEL_REFRESH_SECONDS="3600")
    c = app.test_client()
    first = post(c, OBS)[1]["model_versions"]["zone3"]
    collect_and_train_more(settings, backends)  # zone3's production pointer moves on
    new = trained.production("zone3")["version"]
    assert new != first
    assert post(c, OBS)[1]["model_versions"]["zone3"] == first  # not checked yet (1 h interval)
    pushed = post_push(c, settings, settings.topic_model_updated, {"cause": "retrain"}, "mu-1")
    assert pushed.status_code == 200 and pushed.get_json()["reloaded"]["zone3"] == new
    assert post(c, OBS)[1]["model_versions"]["zone3"] == new


def test_the_push_route_takes_only_a_push_envelope_and_a_burst_reloads_once(trained, settings, monkeypatch):
    app = function_app("predict", settings, monkeypatch, MODEL_REFRESH_SECONDS="0.5")
    c = app.test_client()
    path = topic_path(settings.project, settings.topic_model_updated)
    assert c.get(path).status_code == 405
    assert c.put(path, json={}).status_code == 405
    refused = c.post(path, json={"reload": "please"})
    assert refused.status_code == 400 and refused.get_json()["errors"][0]["field"] == "message"
    no_id = c.post(path, json={"message": {"data": ""}})
    assert no_id.status_code == 400 and no_id.get_json()["errors"][0]["field"] == "message.messageId"
    checks = []
    original = Registry.production_pointers
    monkeypatch.setattr(Registry, "production_pointers", lambda self: checks.append(1) or original(self))
    burst = [post_push(c, settings, settings.topic_model_updated, {"cause": "retrain"}, f"mu-{i}").get_json()
             for i in range(20)]
    assert [b["coalesced"] for b in burst] == [False] + [True] * 19
    assert len(checks) == 1  # twenty pushes, one registry read
    # The coalesced pushes brought the next check forward to the end of the period.
    wait_until(lambda: post(c, OBS)[0] == 200 and len(checks) == 2, timeout=30,
               what="the deferred check after the burst")


def collect_and_train_more(settings, backends) -> None:
    """Promote a different zone3 version (roll back to an archived one if retraining keeps the old)."""
    registry = Registry(settings, backends)
    current = registry.production("zone3")["version"]
    registry.record({**registry.get(current), "version": "zone3-next", "status": "candidate"})
    assert registry.promote("zone3", "zone3-next", current, "test").won


def test_a_promotion_during_a_concurrent_client_run_fails_no_request(trained, settings, backends, monkeypatch):
    app = function_app("predict", settings, monkeypatch, MODEL_REFRESH_SECONDS="0.05")
    server = ThreadedServer(app).start()
    import requests

    # Each client's zone3 versions in its own order: requests of one client are sequential.
    seen: list[list[str]] = [[] for _ in range(4)]
    failures: list[str] = []
    stop = threading.Event()

    def client_loop(versions: list[str]) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    r = session.post(f"{server.url}/predict", json=OBS, timeout=30)
                except requests.RequestException as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(f"HTTP {r.status_code}")
                else:
                    versions.append(r.json()["model_versions"]["zone3"])

    def every_client_has(count: list[int]) -> bool:
        return bool(failures) or all(len(v) >= n for v, n in zip(seen, count, strict=True))

    threads = [threading.Thread(target=client_loop, args=(versions,)) for versions in seen]
    for t in threads:
        t.start()
    try:
        old = trained.production("zone3")["version"]
        wait_until(lambda: every_client_has([3] * len(seen)), timeout=60, what="every client served")
        collect_and_train_more(settings, backends)
        wait_until(lambda: failures or all(v[-1] == "zone3-next" for v in seen), timeout=60,
                   what="every client served by the promoted version")
        after_swap = [len(v) + 3 for v in seen]
        wait_until(lambda: every_client_has(after_swap), timeout=60, what="more requests after the swap")
    finally:
        stop.set()
        for t in threads:
            t.join()
        server.stop()
    assert failures == []
    for versions in seen:  # old before the swap, the new one after it, never back
        switch = versions.index("zone3-next")
        assert switch >= 3 and set(versions[:switch]) == {old} and set(versions[switch:]) == {"zone3-next"}


def test_with_two_workers_a_push_to_one_swaps_both_within_a_second(trained, settings, backends):
    """Served as deployed (gunicorn, 2 workers); the push reaches one worker, and a new
    connection per request lets either worker answer each one. Without the marker the
    other worker would serve the old version until its next periodic check (1 h here)."""
    import requests

    answers: list[tuple[float, str]] = []  # (when the request started, zone3 version or failure)
    stop = threading.Event()

    def client_loop(url: str) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                r = requests.post(f"{url}/predict", json=OBS, timeout=30)
                answers.append((started, r.json()["model_versions"]["zone3"] if r.status_code == 200
                                else f"HTTP {r.status_code}"))
            except requests.RequestException as exc:
                answers.append((started, repr(exc)))
            time.sleep(0.03)  # 8 clients: about 200 requests/s

    with served_function("predict", settings, WORKERS="2", THREADS="4", MODEL_REFRESH_SECONDS="3600") as url:
        threads = [threading.Thread(target=client_loop, args=(url,)) for _ in range(8)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(answers) >= 200, timeout=60, what="200 answers before the swap")
            old = trained.production("zone3")["version"]
            collect_and_train_more(settings, backends)
            body = push_body({"cause": "retrain"}, "mu-2w", subscription="projects/p/subscriptions/s")
            pushed = requests.post(url + topic_path(settings.project, settings.topic_model_updated), json=body,
                                   timeout=30)
            pushed_at = time.monotonic()
            assert pushed.status_code == 200 and pushed.json()["reloaded"]["zone3"] == "zone3-next"
            wait_until(lambda: sum(t >= pushed_at + 1 for t, _ in answers) >= 300, timeout=60,
                       what="300 answers from a second after the push")
        finally:
            stop.set()
            for t in threads:
                t.join()
    versions = {v for _, v in answers}
    assert versions <= {old, "zone3-next"}, versions - {old, "zone3-next"}  # no request failed
    late = [v for t, v in answers if t >= pushed_at + 1]
    assert set(late) == {"zone3-next"}, f"{late.count(old)} of {len(late)} answers stale a second after the push"


def test_the_prediction_log_records_requests_in_batches(trained, settings, backends, monkeypatch):
    app = function_app("predict", settings, monkeypatch, PREDICTION_LOG_FLUSH_RECORDS="3")
    c = app.test_client()
    post(c, OBS)
    post(c, {"instances": [OBS, {**OBS, "Timestamp": "2017-02-04T15:00:00"}]})
    post(c, {**OBS, "Humidity": 300})
    (obj,) = wait_until(lambda: backends.blobs.list(names.PREDICTIONS), timeout=60,
                        what="the prediction log's first batch")
    assert obj.startswith("predictions/date=") and obj.endswith("-000001.jsonl")
    entries = [json.loads(line) for line in backends.blobs.read(obj).decode().splitlines()]
    assert [e["status"] for e in entries] == [200, 200, 400]
    assert entries[1]["rows"] == 2 and entries[1]["inputs"]["Timestamp"] == ["2017-02-04T14:30", "2017-02-04T15:00"]
    assert set(entries[1]["predictions"]) == set(SPEC.target_names)
    assert entries[0]["versions"]["zone1"] == trained.production("zone1")["version"]
    assert all(e["latency_ms"] > 0 for e in entries) and "Humidity" in entries[2]["error_fields"][0]


def test_an_api_key_when_configured_is_required_and_never_logged(trained, settings, monkeypatch, capsys):
    key = "k-" + "9" * 30
    app = function_app("predict", settings, monkeypatch, PREDICT_API_KEY=key)
    c = app.test_client()
    assert c.post("/predict", json=OBS).status_code == 401
    assert c.post("/predict", json=OBS, headers={"X-API-Key": "wrong"}).status_code == 401
    assert c.post("/predict", json=OBS, headers={"X-API-Key": key}).status_code == 200
    assert c.get("/health").status_code == 200
    out = capsys.readouterr()
    entries = [json.loads(line) for line in out.out.splitlines() if line.startswith("{")]
    refusals = [e for e in entries if e["message"] == "client error" and e.get("status") == 401]
    assert len(refusals) == 2, entries  # the refused requests were logged: there is a log to inspect
    assert key not in out.out and key not in out.err


def test_the_per_timestamp_input_cache_predicts_what_the_vectorised_path_does(client):
    """Small requests reuse inputs cached per timestamp; batches above 64 rows compute them at once."""
    code, single = post(client, OBS)
    assert code == 200
    other = {**OBS, "Temperature": 30.0, "Timestamp": "2017-02-04T21:10:00"}
    code, small = post(client, {"instances": [OBS, other]})
    assert code == 200
    code, large = post(client, {"instances": [OBS, other] * 40})
    assert code == 200
    for target in SPEC.target_names:
        assert small["predictions"][0]["predictions"][target] == single["predictions"][0]["predictions"][target]
        assert [i["predictions"][target] for i in large["predictions"][:2]] == \
            [i["predictions"][target] for i in small["predictions"]]
        assert large["predictions"][1]["intervals"] == small["predictions"][1]["intervals"]
    # The weather is not cached with the timestamp: a warmer evening predicts differently.
    code, warmer = post(client, {**other, "Temperature": 12.5})
    assert warmer["predictions"][0]["predictions"] != small["predictions"][1]["predictions"]
