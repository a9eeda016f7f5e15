"""predict under generated input: no request of any shape, size, nesting or encoding gets
a 5xx, every refusal names its field, and memory stays bounded.

Hypothesis draws bodies from the OpenAPI document's own request schema (values at and
past each field's bounds, timestamps with offsets at the calendar's ends) and from far
outside it (any JSON, deep nesting, huge numbers, broken encodings), and posts them to
the function as functions-framework builds it. Valid requests are drawn on their own, so
they are tried in numbers: each is answered per instance, in every response shape, and a
batch agrees with its rows sent one by one.
"""

from __future__ import annotations

import json
import math
import resource

import pytest
import requests
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.functions.test_predict import OBS, SPEC, _schema_validator, collect_and_train
from tests.support.functions import function_app, served_function
from tests.support.predict_bodies import BODIES, TARGET_SUBSETS, encode, valid_observation

# Growth of the test process's peak RSS over every example; a leak of the request bodies
# (up to 2 MiB each, hundreds of examples) would pass it many times over.
RSS_GROWTH_LIMIT_MB = 300

pytestmark = pytest.mark.parametrize("backend_name", ["embedded"])


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture
def fuzz_client(settings, backends, monkeypatch):
    collect_and_train(settings, backends, monkeypatch)
    # A small body limit, so the generated large bodies meet it too.
    return function_app("predict", settings, monkeypatch, MAX_REQUEST_BYTES=str(2 * 1024 * 1024)).test_client()


def _check(response) -> None:
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    if response.status_code >= 400:
        body = response.get_json()
        assert isinstance(body, dict) and body.get("error"), body
        if response.status_code in (400, 413):
            assert body["errors"] and all(isinstance(e.get("field"), str) for e in body["errors"]), body


def test_no_generated_body_gets_a_5xx_and_every_refusal_names_its_field(fuzz_client):
    before = _peak_rss_mb()
    statuses: dict[int, int] = {}

    @hypothesis_settings(max_examples=400, deadline=None, derandomize=True, database=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                HealthCheck.function_scoped_fixture])
    @given(body=BODIES, content_type=st.sampled_from(["application/json", "application/json; charset=utf-8",
                                                      "text/plain", ""]))
    def post_one(body: bytes, content_type: str) -> None:
        response = fuzz_client.post("/predict", data=body, content_type=content_type)
        _check(response)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    post_one()
    assert statuses.get(200) and statuses.get(400), statuses  # both sides were reached
    assert _peak_rss_mb() - before < RSS_GROWTH_LIMIT_MB


@pytest.mark.parametrize("body,field,reason", [
    (b'{"Temperature": ' + b"9" * 401 + b', "Humidity": 60, "WindSpeed": 0.1, "GeneralDiffuseFlows": 1,'
     b' "DiffuseFlows": 1, "Timestamp": "2017-02-04T14:30:00"}', "Temperature", "not a finite number"),
    (b'{"Temperature": ' + b"9" * 350 + b', "Humidity": 60, "WindSpeed": 0.1, "GeneralDiffuseFlows": 1,'
     b' "DiffuseFlows": 1, "Timestamp": "2017-02-04T14:30:00"}', "Temperature", "not a finite number"),
    (b"[" * 100_000 + b"]" * 100_000, "body", "nested too deeply"),
    (b'{"a":' * 990 + b"1" + b"}" * 990, "body", "nested too deeply"),
    (encode({**OBS, "Timestamp": "0001-01-01T00:30+01:00"}), "Timestamp", "timestamp out of range"),
    (encode({**OBS, "Timestamp": "9999-12-31T23:59:00-01:00"}), "Timestamp", "timestamp out of range"),
    (encode({**OBS, "Timestamp": "0001-01-01T00:30:00+01:00"}), "Timestamp", "timestamp out of range"),
    (encode({"instances": [OBS, {**OBS, "Timestamp": "0001-01-01T00:30:00"}]}), "instances[1].Timestamp",
     "timestamp out of range"),
])
def test_each_input_that_once_got_a_5xx_is_refused_by_name(fuzz_client, body, field, reason):
    response = fuzz_client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == 400, response.get_data()[:300]
    assert any(e["field"] == field and e["reason"] == reason for e in response.get_json()["errors"])


def test_a_body_over_the_limit_is_refused_before_it_is_read(fuzz_client):
    big = b" " * (2 * 1024 * 1024 + 1)
    response = fuzz_client.post("/predict", data=big, content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["errors"] == [{"field": "body", "reason": "too large", "max_bytes": 2 * 1024 * 1024}]



def test_a_chunked_body_is_cut_off_at_the_limit_in_the_served_function(settings, backends, monkeypatch):
    collect_and_train(settings, backends, monkeypatch)
    with served_function("predict", settings, MAX_REQUEST_BYTES="1048576") as url:
        # A generator body goes out chunked: no Content-Length to refuse it by.
        chunks = (b" " * 65536 for _ in range(40))
        response = requests.post(f"{url}/predict", data=chunks, timeout=60,
                                 headers={"Content-Type": "application/json"})
        assert response.status_code == 413, response.text[:300]
        assert response.json()["errors"][0]["max_bytes"] == 1048576
        ok = requests.post(f"{url}/predict", data=iter([json.dumps(OBS).encode()]), timeout=60,
                           headers={"Content-Type": "application/json"})
        assert ok.status_code == 200, ok.text[:300]


def _rows(body: dict, targets: list[str]) -> list[dict[str, float]]:
    """Per instance, each target's prediction and bounds, whichever shape the answer has."""
    if "columns" in body:
        columns = body["columns"]
        n = len(columns["predictions"][targets[0]])
        return [{**{t: columns["predictions"][t][i] for t in targets},
                 **{f"{t}.{side}": columns["intervals"][t][side][i] for t in targets for side in ("lower", "upper")}}
                for i in range(n)]
    return [{**{t: item["predictions"][t] for t in targets},
             **{f"{t}.{side}": item["intervals"][t][side] for t in targets for side in ("lower", "upper")}}
            for item in body["predictions"]]


def test_every_valid_request_is_answered_per_instance_and_a_batch_agrees_with_its_singles(fuzz_client):
    doc = fuzz_client.get("/openapi.json").get_json()
    single_schema, batch_schema = (_schema_validator(doc, name) for name in ("SingleResponse", "BatchResponse"))

    @hypothesis_settings(max_examples=100, deadline=None, derandomize=True, database=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(instances=st.lists(valid_observation(), min_size=1, max_size=12), targets=TARGET_SUBSETS,
           shape=st.sampled_from(["instances", "columns", "vertex"]))
    def post_valid(instances: list[dict], targets: list[str] | None, shape: str) -> None:
        options = {"targets": targets} if targets else {}
        body = {"instances": instances, **({"parameters": {**options, "format": "columns"}} if shape == "vertex"
                                           else {**options, "format": shape})}
        response = fuzz_client.post("/predict", json=body)
        assert response.status_code == 200, (body, response.get_json())
        answer = response.get_json()
        assert not list(batch_schema.iter_errors(answer)), answer
        wanted = targets or SPEC.target_names
        assert set(answer["model_versions"]) == set(wanted)
        rows = _rows(answer, wanted)
        assert len(rows) == len(instances)
        for row in rows:
            for t in wanted:
                assert math.isfinite(row[t]) and row[t] > 0, row
                lower, upper = row[f"{t}.lower"], row[f"{t}.upper"]
                assert (lower is None) == (upper is None) and (lower is None or lower <= upper), row
        # The same rows one at a time: the single-observation path gives the batch's numbers.
        for instance, row in zip(instances, rows, strict=True):
            single = fuzz_client.post("/predict", json={**instance, **options})
            assert single.status_code == 200 and not list(single_schema.iter_errors(single.get_json()))
            assert _rows(single.get_json(), wanted) == [row], instance

    post_valid()
