"""predict's interactive docs: Swagger UI served offline by the function, real examples, every answer documented.

The docs do not depend on the storage backend, so these tests run on the embedded one.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry as SchemaRegistry
from referencing import Resource

from shared.core.dataset_spec import load_spec
from shared.predict.openapi import DOCS_PACKAGE, spec_examples
from tests.functions.test_predict import collect_and_train
from tests.support.functions import FUNCTIONS, function_app, settings_env

SPEC = load_spec("tetouan_power")
ROOT = FUNCTIONS.parent
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".json": "application/json"}
REQUEST_SCHEMA = "#/paths/~1predict/post/requestBody/content/application~1json/schema"
OK_SCHEMA = "#/paths/~1predict/post/responses/200/content/application~1json/schema"


@pytest.fixture
def backend_name() -> str:
    return "embedded"


@pytest.fixture
def untrained(settings, monkeypatch):
    """predict with no model at all: the docs, the refusals and the 503 need none."""
    return function_app("predict", settings, monkeypatch).test_client()


def validator(doc: dict, pointer: str) -> Draft202012Validator:
    """A JSON Schema validator for the schema at ``pointer`` (``#/...``) of the OpenAPI document."""
    resource = Resource.from_contents({**doc, "$schema": "https://json-schema.org/draft/2020-12/schema"})
    registry = SchemaRegistry().with_resource("urn:predict-openapi", resource)
    return Draft202012Validator({"$ref": f"urn:predict-openapi{pointer}"}, registry=registry)


def assert_valid(doc: dict, pointer: str, instance: Any) -> None:
    errors = [e.message for e in validator(doc, pointer).iter_errors(instance)]
    assert not errors, (pointer, errors, instance)


def response_schema(doc: dict, status: str) -> str:
    """The pointer of the body schema POST /predict documents for ``status``."""
    answer = doc["paths"]["/predict"]["post"]["responses"][status]
    if "$ref" in answer:
        answer = doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return answer["content"]["application/json"]["schema"]["$ref"]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def test_the_docs_page_and_every_asset_it_uses_come_from_the_function_itself(untrained):
    page = untrained.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    assert "SwaggerUIBundle" in html and not re.search(r"https?:|//cdn", html, re.I), html
    links = _Links()
    links.feed(html)
    config = re.search(r'"url": "([^"]+)"', "".join(links.scripts))
    assert config, links.scripts
    urls = [u for u in links.urls if not u.startswith("data:")] + [config.group(1)]
    assert {Path(urlsplit(u).path).suffix for u in urls} == {".css", ".js", ".json"}, urls
    for url in urls:
        assert not urlsplit(url).scheme and not urlsplit(url).netloc, url  # same origin
        target = urlsplit(urljoin("http://predict.invalid/docs", url))
        answer = untrained.get(target.path, query_string=target.query)
        assert answer.status_code == 200, url
        assert answer.mimetype == CONTENT_TYPES[Path(target.path).suffix], (url, answer.mimetype)
        if target.path.startswith("/docs/"):
            assert "immutable" in answer.headers["Cache-Control"] and "?v=5." in url
            assert len(answer.data) > 100_000  # Swagger UI itself, not a stub
        if target.path.endswith(".css"):  # a stylesheet may load only inline data or same-origin files
            for ref in re.findall(r"url\(\s*['\"]?([^'\")]*)", answer.get_data(as_text=True)):
                assert ref.startswith("data:") or (not urlsplit(ref).scheme and not ref.startswith("//")), ref


def test_only_the_listed_assets_are_served(untrained):
    for path in ["/docs/swagger-ui.js", "/docs/index.template.html", "/docs/../main.py", "/docs/..%2F__init__.py",
                 "/docs/%2e%2e/flask_swagger_ui.py", "/docs/VERSION", "/docs/nothing.css"]:
        answer = untrained.get(path)
        assert answer.status_code == 404 and answer.get_json()["error"], path
    assert untrained.post("/docs").status_code == 405
    assert untrained.post("/docs/swagger-ui.css").status_code == 405
    slash = untrained.get("/docs/")
    assert slash.status_code == 308 and urljoin("http://h/docs/", slash.headers["Location"]) == "http://h/docs"


def test_the_prediction_path_never_imports_the_docs_package(settings):
    """predict's cold start: the package is located and read on the first /docs request, never imported."""
    program = f"""
import sys
import functions_framework
app = functions_framework.create_app("predict", {str(FUNCTIONS / "predict" / "main.py")!r}, "http")
client = app.test_client()
assert client.get("/openapi.json").status_code == 200
assert {DOCS_PACKAGE!r} not in sys.modules, "imported at start"
assert client.get("/docs").status_code == 200
assert client.get("/docs/swagger-ui-bundle.js").status_code == 200
assert {DOCS_PACKAGE!r} not in sys.modules, "imported by /docs"
print("ok")
"""
    env = {**settings_env(settings), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}
    run = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]


def test_the_examples_are_real_rows_of_the_bundled_data():
    examples = spec_examples(SPEC)
    assert len(examples) >= 2
    rows = csv.DictReader(io.StringIO(SPEC.read_replay_data().decode()))
    assert rows.fieldnames is not None
    names = SPEC.rename_map(rows.fieldnames)
    wanted = {datetime.fromisoformat(e["observation"]["Timestamp"]): e for e in examples}
    found = 0
    for row in rows:
        stamp = row[SPEC.timestamp_column]
        if stamp.split(" ")[0] not in {f"{t.month}/{t.day}/{t.year}" for t in wanted}:
            continue
        example = wanted.get(datetime.strptime(stamp, SPEC.timestamp_format))
        if example is None:
            continue
        values = {names[k]: float(v) for k, v in row.items() if k in names and k != SPEC.timestamp_column}
        assert {k: values[k] for k in SPEC.feature_names} == \
            {k: example["observation"][k] for k in SPEC.feature_names}
        assert {k: values[k] for k in SPEC.target_names} == pytest.approx(example["actual"])
        found += 1
    assert found == len(examples)


def test_the_examples_follow_the_document_and_predict_answers_each(settings, backends, monkeypatch):
    collect_and_train(settings, backends, monkeypatch)
    client = function_app("predict", settings, monkeypatch).test_client()
    doc = client.get("/openapi.json").get_json()
    media = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert {"single1", "single2", "batch", "columns"} <= set(media["examples"])
    timestamps = {e["observation"]["Timestamp"] for e in spec_examples(SPEC)}
    ok_examples = doc["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["examples"]
    for name, example in media["examples"].items():
        assert_valid(doc, REQUEST_SCHEMA, example["value"])
        assert_valid(doc, OK_SCHEMA, ok_examples[name]["value"])
        instances = example["value"].get("instances", [example["value"]])
        assert {i["Timestamp"] for i in instances} <= timestamps  # the spec's real observations
        response = client.post("/predict", json=example["value"])
        assert response.status_code == 200, (name, response.get_json())
        assert_valid(doc, OK_SCHEMA, response.get_json())
        assert set(response.get_json()) == set(ok_examples[name]["value"]), name  # the example's shape
    error_example = doc["components"]["responses"]["ValidationError"]["content"]["application/json"]["example"]
    assert_valid(doc, response_schema(doc, "400"), error_example)
    # The schema features carry the real values as examples: no made-up 18.75 m/s wind.
    wind = doc["components"]["schemas"]["Observation"]["properties"]["WindSpeed"]
    assert max(wind["examples"]) <= 6.5


def test_every_refusal_follows_the_document(untrained, settings, monkeypatch):
    doc = untrained.get("/openapi.json").get_json()
    observation = spec_examples(SPEC)[0]["observation"]
    assert "securitySchemes" not in doc["components"]  # no key configured: none asked for
    assert "security" not in doc["paths"]["/predict"]["post"]
    documented = doc["paths"]["/predict"]["post"]["responses"]
    answers = {
        "400": untrained.post("/predict", json={**observation, "Humidity": 140, "Pressure": 1}),
        "415": untrained.post("/predict", data=json.dumps(observation), content_type="text/plain"),
        "413": untrained.post("/predict", data=b" " * (settings.max_request_bytes + 1),
                              content_type="application/json"),
        "503": untrained.post("/predict", json=observation),  # no model loaded
    }
    for status, answer in answers.items():
        assert answer.status_code == int(status), (status, answer.get_json())
        assert_valid(doc, response_schema(doc, status), answer.get_json())
    assert set(answers) <= set(documented)
    bad_json = untrained.post("/predict", data="{nope", content_type="application/json")
    assert_valid(doc, response_schema(doc, "400"), bad_json.get_json())
    others = {"NotFound": (untrained.get("/nowhere"), 404), "MethodNotAllowed": (untrained.get("/predict"), 405)}
    for name, (answer, status) in others.items():
        assert answer.status_code == status
        pointer = doc["components"]["responses"][name]["content"]["application/json"]["schema"]["$ref"]
        assert_valid(doc, pointer, answer.get_json())
        assert f"| {status} |" in doc["info"]["description"]
    assert others["MethodNotAllowed"][0].headers["Allow"] == "POST, OPTIONS"

    key = "k-" + "7" * 30
    keyed = function_app("predict", settings, monkeypatch, PREDICT_API_KEY=key).test_client()
    doc = keyed.get("/openapi.json").get_json()
    assert doc["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key", "description": "the service's PREDICT_API_KEY"}
    assert doc["paths"]["/predict"]["post"]["security"] == [{"apiKey": []}]
    assert key not in json.dumps(doc) and key not in keyed.get("/docs").get_data(as_text=True)
    refused = keyed.post("/predict", json=observation, headers={"X-API-Key": "wrong"})
    assert refused.status_code == 401
    assert_valid(doc, response_schema(doc, "401"), refused.get_json())
    assert keyed.post("/predict", json=observation, headers={"X-API-Key": key}).status_code == 503  # past the key
