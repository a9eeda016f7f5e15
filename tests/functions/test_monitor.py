"""monitor on both backends: quiet on unshifted data, each scenario alerts, cool-down,
resolution, webhook posts, operations and accuracy rules, the HTML report."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from werkzeug.wrappers import Request, Response

from shared.collect.service import Collector
from shared.collect.sources import ReplaySource, SourceConfig
from shared.core.dataset_spec import load_spec
from shared.platform import names
from shared.platform.settings import PROJECT_ROOT
from shared.predict import prediction_log
from tests.support.bus import post_push, pump_until, received_on, subscribe, unsubscribe
from tests.support.data_server import DataSource
from tests.support.functions import function_app, push_data_ready, retrain_client
from tests.support.servers import ThreadedServer
from tests.support.wait import wait_until

SPEC = load_spec("tetouan_power")
YEAR = pd.read_csv(io.BytesIO((PROJECT_ROOT / "data" / "tetouan_power_2017.csv").read_bytes()))
YEAR = YEAR.rename(columns=SPEC.rename_map(YEAR.columns))
YEAR["timestamp"] = pd.to_datetime(YEAR["timestamp"], format=SPEC.timestamp_format)


@pytest.fixture
def trained(settings, backends, monkeypatch):
    collector = Collector(settings, backends, SPEC, {"replay": ReplaySource(SourceConfig("replay", "replay"), SPEC)})
    batch = collector.collect_source("replay", timedelta(days=35), None)
    summary = push_data_ready(retrain_client(settings, monkeypatch), settings, backends, batch["batch_id"], "m-train")
    assert summary["status"] == "trained", summary
    return batch


def observations(rows: pd.DataFrame, **changes) -> list[dict]:
    out = []
    for _, row in rows.iterrows():
        obs = {f: float(row[f]) for f in SPEC.feature_names}
        obs["Timestamp"] = row["timestamp"].isoformat()
        out.append({**obs, **changes})
    return out


def unshifted_requests(n: int = 400) -> list[dict]:
    """Random timestamps of the training weeks, with their real weather: the reference distribution."""
    training = YEAR[(YEAR.timestamp >= "2017-01-01") & (YEAR.timestamp < "2017-01-29")]
    return observations(training.sample(n, random_state=1))


def last_day_requests() -> list[dict]:
    """The last stored day, predicted with history: what the accuracy join uses."""
    return observations(YEAR[(YEAR.timestamp >= "2017-02-04") & (YEAR.timestamp < "2017-02-05")])


def predict_then_flush(settings, monkeypatch, instances: list[dict], **env) -> list[int]:
    app = function_app("predict", settings, monkeypatch, **env)
    client = app.test_client()
    codes = [client.post("/predict", json={"instances": instances[i:i + 200]}).status_code
             for i in range(0, len(instances), 200)]
    prediction_log.close_all()
    return codes


def run_monitor(settings, monkeypatch, body=None, **env) -> dict:
    app = function_app("monitor", settings, monkeypatch, **env)
    response = app.test_client().post("/", json=body or {})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


class Webhook:
    """A chat webhook on 127.0.0.1 that records posts (and can fail)."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.status = 200
        self.server = ThreadedServer(self.app)

    def app(self, environ, start_response):
        self.posts.append(json.loads(Request(environ).get_data()))
        return Response("ok", status=self.status)(environ, start_response)

    def __enter__(self) -> Webhook:
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()


def test_unshifted_data_raises_no_alert(trained, settings, backends, monkeypatch):
    assert set(predict_then_flush(settings, monkeypatch, unshifted_requests())) == {200}
    # A 35-day window: the requests' timestamps fall in the data window, so accuracy is judged too.
    summary = run_monitor(settings, monkeypatch, {"window": "P35D"})
    assert summary["firing"] == 0 and summary["events"] == []
    report = json.loads(backends.blobs.read(summary["report"]["json"]))
    assert report["operations"]["requests"] == 2 and report["operations"]["errors"] == 0
    production = [a for a in report["accuracy"] if a["production"]]
    assert {a["target"] for a in production} == set(SPEC.target_names)
    assert [a["rows"] for a in production] == [400] * 3, production
    assert all(a["mape"] - a["holdout_mape"] < 2.0 for a in production)  # no MAPE increase
    inputs = [d for d in report["drift"] if d["source"] == "inputs"]
    assert {d["feature"] for d in inputs} == set(SPEC.feature_names)
    collected = [d for d in report["drift"] if d["source"] == "collected"]
    # Nothing collected after the model's dataset: every column judged "nothing new".
    assert {d["feature"] for d in collected} == set(SPEC.feature_names) | set(SPEC.target_names)
    assert all(d["recent_n"] == 0 for d in collected)
    assert all(d["level"] == "none" for d in report["drift"])


@pytest.mark.parametrize("scenario,changes,expected", [
    ("temperature shift", {"Temperature": "+8"}, {"drift:inputs:Temperature": "high"}),
    ("missing features", {"GeneralDiffuseFlows": 0.0, "DiffuseFlows": 0.0},
     {"drift:inputs:GeneralDiffuseFlows": "high", "drift:inputs:DiffuseFlows": "high"}),
    ("seasonal drift", "july", {"drift_share:inputs": "high", "drift:inputs:Temperature": "high"}),
])
def test_each_scenario_raises_its_alert_and_severity(trained, settings, backends, monkeypatch, receiver,
                                                     scenario, changes, expected):
    module, url = receiver
    sub = subscribe(backends, settings, url, settings.topic_alerts)
    try:
        if changes == "july":
            july = YEAR[(YEAR.timestamp >= "2017-07-09") & (YEAR.timestamp < "2017-07-29")].sample(400, random_state=1)
            instances = [{**o, "Timestamp": t} for o, t in zip(
                observations(july), [r["Timestamp"] for r in unshifted_requests()], strict=True)]
        elif "Temperature" in changes:
            instances = [{**o, "Temperature": o["Temperature"] + 8} for o in unshifted_requests()]
        else:
            instances = [{**o, **changes} for o in unshifted_requests()]
        predict_then_flush(settings, monkeypatch, instances)
        summary = run_monitor(settings, monkeypatch)
        opened = {e["alert_id"]: e["severity"] for e in summary["events"] if e["event"] == "opened"}
        for key, severity in expected.items():
            assert opened.get(key) == severity, (key, opened)
        assert backends.documents.get(names.ALERTS, next(iter(expected)))["status"] == "open"
        pump_until(backends.events, lambda: len(received_on(module, settings.topic_alerts)) >= len(opened))
        published = {m["data"]["alert_id"] for m in received_on(module, settings.topic_alerts)}
        assert published == set(opened)
    finally:
        unsubscribe(settings, sub)


def test_cool_down_silences_repeats_and_a_cleared_condition_resolves(trained, settings, backends, monkeypatch):
    with Webhook() as hook:
        env = {"ALERT_WEBHOOK_URL": f"{hook.server.url}/hooks/T000/B000/secret"}
        predict_then_flush(settings, monkeypatch, [{**o, "Temperature": o["Temperature"] + 8}
                                                   for o in unshifted_requests()])
        first = run_monitor(settings, monkeypatch, **env)
        opened = [e for e in first["events"] if e["event"] == "opened"]
        assert opened and len(hook.posts) == len(opened)
        assert all("[HIGH opened]" in p["text"] or "[MEDIUM opened]" in p["text"] for p in hook.posts)
        report = backends.blobs.location(first["report"]["html"])
        assert all(f"] {settings.project}: " in p["text"] and f"report {report}" in p["text"]
                   and "vs threshold" in p["text"] for p in hook.posts)

        again = run_monitor(settings, monkeypatch, **env)
        assert again["events"] == [] and len(hook.posts) == len(opened)  # inside the cool-down

        shifted_logged = time.time()  # every shifted request was logged before this
        predict_then_flush(settings, monkeypatch, unshifted_requests())
        # A window reaching back to that instant holds only the unshifted requests (checked below).
        client = function_app("monitor", settings, monkeypatch, **env).test_client()
        response = client.post("/", json={"window": f"PT{time.time() - shifted_logged:.3f}S"})
        assert response.status_code == 200, response.get_json()
        cleared = response.get_json()
    report = json.loads(backends.blobs.read(cleared["report"]["json"]))
    assert report["operations"]["requests"] == 2  # the two unshifted posts, none of the shifted ones
    resolved = [e for e in cleared["events"] if e["event"] == "resolved"]
    assert "drift:inputs:Temperature" in {e["alert_id"] for e in resolved}
    assert backends.documents.get(names.ALERTS, "drift:inputs:Temperature")["status"] == "resolved"
    assert sum("RESOLVED" in p["text"] for p in hook.posts) == len(resolved)
    # One post per event of the first and the last run, none from the run inside the cool-down.
    # (The last run may open others: its short window extrapolates to a high daily cost.)
    assert len(hook.posts) == len(opened) + len(cleared["events"])


def test_an_expired_cool_down_reminds_once(trained, settings, backends, monkeypatch):
    predict_then_flush(settings, monkeypatch, [{**o, "Temperature": o["Temperature"] + 8}
                                               for o in unshifted_requests()])
    run_monitor(settings, monkeypatch, ALERT_COOLDOWN="PT1S")
    notified_at = backends.documents.get(names.ALERTS, "drift:inputs:Temperature")["notified_at"]
    wait_until(lambda: time.time() > notified_at + 1.0, timeout=30, what="the one-second cool-down to pass")
    reminded = run_monitor(settings, monkeypatch, ALERT_COOLDOWN="PT1S")
    assert "drift:inputs:Temperature" in {e["alert_id"] for e in reminded["events"] if e["event"] == "reminder"}
    assert backends.documents.get(names.ALERTS, "drift:inputs:Temperature")["notifications"] == 2


def test_a_failing_webhook_never_fails_the_run(trained, settings, backends, monkeypatch, capsys):
    with Webhook() as hook:
        hook.status = 500
        secret_url = f"{hook.server.url}/hooks/never-log-this-token"
        predict_then_flush(settings, monkeypatch, [{**o, "DiffuseFlows": 0.0} for o in unshifted_requests()])
        summary = run_monitor(settings, monkeypatch, ALERT_WEBHOOK_URL=secret_url)
    report = json.loads(backends.blobs.read(summary["report"]["json"]))
    assert summary["events"]
    assert {n["webhook"] for n in report["alerts"]["notifications"]} == {"failed: HTTP 500"}
    assert len(hook.posts) == 3 * len(summary["events"])  # one try plus two retries each
    out = capsys.readouterr()
    entries = [json.loads(line) for line in out.out.splitlines() if line.startswith("{")]
    failures = [e for e in entries if e["message"] == "alert webhook failed"]
    # The failures were logged (so there is a log to inspect), each without the URL.
    assert len(failures) == len(summary["events"]), entries
    assert {e["outcome"] for e in failures} == {"failed: HTTP 500"}
    assert "never-log-this-token" not in out.out + out.err


def test_accuracy_against_reality_alerts_when_actuals_surge(trained, settings, backends, monkeypatch):
    day = YEAR[(YEAR.timestamp >= "2017-02-05") & (YEAR.timestamp < "2017-02-06")]
    predict_then_flush(settings, monkeypatch, observations(day))  # predicted before the actuals exist
    surge = day.copy()
    for target in SPEC.target_names:
        surge[target] = surge[target] * 1.3
    raw = surge.rename(columns={"timestamp": "DateTime"})
    raw["DateTime"] = raw["DateTime"].dt.strftime(SPEC.timestamp_format)
    with DataSource() as source:
        source.body = raw.to_csv(index=False).encode()
        sources = f'[{{"name": "feed", "type": "http", "url": "{source.url}", "retries": 0}}]'
        collect = function_app("collect_data", settings, monkeypatch, COLLECT_SOURCES=sources)
        assert collect.test_client().post("/", json={}).get_json()["status"] == "accepted"
    summary = run_monitor(settings, monkeypatch)
    opened = {e["alert_id"]: e["severity"] for e in summary["events"] if e["event"] == "opened"}
    for target in SPEC.target_names:
        assert opened.get(f"mape_increase:{target}") == "high"
    alert = backends.documents.get(names.ALERTS, "mape_increase:zone1")
    assert alert["model_version"] and alert["value"] > 0.03 and alert["threshold"] == 0.02
    assert opened.get("drift:collected:zone1") in ("medium", "high")  # the surge is drift in the target too


def test_operations_rules_error_rate_latency_and_cost(trained, settings, backends, monkeypatch):
    backends.documents.delete(names.PRODUCTION, "zone3")
    codes = predict_then_flush(settings, monkeypatch, [{**o, "Timestamp": o["Timestamp"]}
                                                       for o in unshifted_requests(40)])
    app = function_app("predict", settings, monkeypatch)
    client = app.test_client()
    codes += [client.post("/predict", json={**unshifted_requests(1)[0], "targets": ["zone3"]}).status_code
              for _ in range(5)]
    prediction_log.close_all()
    assert codes.count(503) == 5
    summary = run_monitor(settings, monkeypatch,
                          ALERT_THRESHOLDS='{"latency_spike": 1e-9, "cost_daily": 1e-12}')
    opened = {e["alert_id"]: e["severity"] for e in summary["events"]}
    assert opened["error_rate:predict"] == "high"  # 5 of 6 requests
    assert opened["latency_spike:predict"] == "high" and opened["cost_daily:predict"] == "high"


def test_closed_loop_publishes_a_retrain_request_when_enabled(trained, settings, backends, monkeypatch, receiver):
    module, url = receiver
    sub = subscribe(backends, settings, url, settings.topic_data_ready)
    try:
        predict_then_flush(settings, monkeypatch, [{**o, "DiffuseFlows": 0.0} for o in unshifted_requests()])
        off = run_monitor(settings, monkeypatch)
        assert off["retrain_request"] is None
        backends.documents.delete(names.ALERTS, "drift:inputs:DiffuseFlows")
        on = run_monitor(settings, monkeypatch, MONITOR_AUTO_RETRAIN="true")
        assert on["retrain_request"]
        pump_until(backends.events, lambda: any(m["data"].get("cause") == "monitor"
                                                for m in received_on(module, settings.topic_data_ready)))
        request = next(m for m in received_on(module, settings.topic_data_ready) if m["data"].get("cause") == "monitor")
        assert request["data"]["batch_id"] == trained["batch_id"]
    finally:
        unsubscribe(settings, sub)


class _Figures(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.figures: list[str] = []
        self.svgs = 0
        self.open_figure = None

    def handle_starttag(self, tag, attrs):
        if tag == "figure":
            self.figures.append(dict(attrs)["id"])
        if tag == "svg":
            self.svgs += 1


def test_the_html_report_embeds_every_plot_and_latest_points_at_it(trained, settings, backends, monkeypatch):
    predict_then_flush(settings, monkeypatch, unshifted_requests(200) + last_day_requests())
    summary = run_monitor(settings, monkeypatch)
    page = backends.blobs.read(summary["report"]["html"]).decode()
    parser = _Figures()
    parser.feed(page)
    expected = ({f"plot-distribution-{f}" for f in SPEC.feature_names}
                | {f"plot-accuracy-{t}" for t in SPEC.target_names}
                | {f"plot-history-{t}" for t in SPEC.target_names})
    assert set(parser.figures) == expected and parser.svgs == len(expected)
    assert "<polyline" in page and "<rect" in page
    assert backends.blobs.read("reports/latest.html").decode() == page
    assert json.loads(backends.blobs.read("reports/latest.json"))["run_id"] == summary["run_id"]


def test_bad_monitor_requests_are_refused(trained, settings, monkeypatch):
    app = function_app("monitor", settings, monkeypatch)
    client = app.test_client()
    bad = client.post("/", json={"window": "forever", "x": 1})
    assert bad.status_code == 400 and {e["field"] for e in bad.get_json()["errors"]} == {"window", "x"}
    assert client.get("/").status_code == 405


def test_a_model_updated_push_runs_the_monitor(trained, settings, backends, monkeypatch):
    app = function_app("monitor", settings, monkeypatch)
    response = post_push(app.test_client(), settings, settings.topic_model_updated, {"cause": "retrain"}, "7")
    assert response.status_code == 200
    run = backends.documents.get(names.MONITOR_RUNS, response.get_json()["run_id"])
    assert run["cause"] == "model-updated"


def test_drift_scenarios_command_prints_each_scenarios_alerts(tmp_path, monkeypatch, capsys):
    from tools.scenarios import main

    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    output = tmp_path / "scenarios.json"
    assert main(["--json", "--output", str(output)]) == 0
    rows = {r["scenario"]: r["alerts"] for r in json.loads(capsys.readouterr().out)}
    assert rows["unshifted"] == "none"
    assert "drift:inputs:Temperature HIGH" in rows["temperature_shift"]
    assert "drift:inputs:GeneralDiffuseFlows HIGH" in rows["missing_features"]
    assert "drift_share:inputs HIGH" in rows["seasonal_drift"]
    report = json.loads(output.read_text())
    assert set(report["scenarios"]) == {"unshifted", "temperature_shift", "seasonal_drift", "missing_features"}
    assert np.isfinite(report["scenarios"]["seasonal_drift"]["accuracy"]["zone3"]["rmse_change_pct"])


def test_collected_data_drift_opens_for_unseen_data_and_clears_once_a_model_has_seen_it(
        trained, settings, backends, monkeypatch):
    collector = Collector(settings, backends, SPEC, {"replay": ReplaySource(SourceConfig("replay", "replay"), SPEC)})
    week = collector.collect_source("replay", timedelta(days=7), None)  # not trained on yet
    before = run_monitor(settings, monkeypatch, {"window": "P7D"})
    opened = {e["alert_id"] for e in before["events"] if e["event"] == "opened"}
    weather = {a for a in opened if a.split(":")[-1] in SPEC.feature_names and a.startswith("drift:collected:")}
    assert weather, opened  # February's weather against the January reference

    summary = push_data_ready(retrain_client(settings, monkeypatch), settings, backends, week["batch_id"], "m-week")
    assert "promoted" in {t["decision"] for t in summary["targets"]}
    after = run_monitor(settings, monkeypatch, {"window": "P7D"})
    resolved = {e["alert_id"] for e in after["events"] if e["event"] == "resolved"}
    assert weather <= resolved
    assert all(backends.documents.get(names.ALERTS, a)["status"] == "resolved" for a in weather)
