"""mape_increase follows the serving model: a rollback to an early, weak version opens it,
rolling forward resolves it (on both backends, with real weather and real actuals)."""

from __future__ import annotations

import json
from datetime import timedelta

from shared.collect.service import Collector
from shared.collect.sources import ReplaySource, SourceConfig
from shared.core.registry import Registry
from shared.platform import names
from tests.functions.test_monitor import (
    SPEC,
    collect_next_day,
    day_rows,
    observations,
    opened_alerts,
    predict_then_flush,
    run_monitor,
)
from tests.support.functions import push_data_ready, retrain_client

TARGET = "zone1"
KEY = f"mape_increase:{TARGET}"
# Days collected before each retrain, from 2017-01-01; the served days follow the second window.
WEAK_DAYS, STRONG_DAYS = 15, 40
SERVED_DAY, NEXT_DAY = "2017-02-10", "2017-02-11"


def retrain_after(collector: Collector, days: int, settings, backends, monkeypatch, message_id: str) -> str:
    """Collect ``days`` more days, retrain on everything stored; returns the promoted zone 1 version."""
    batch = collector.collect_source("replay", timedelta(days=days), None)
    assert batch["status"] == "accepted", batch
    summary = push_data_ready(retrain_client(settings, monkeypatch), settings, backends, batch["batch_id"],
                              message_id)
    outcome = {t["target"]: t for t in summary["targets"]}[TARGET]
    assert outcome["decision"] == "promoted", summary
    return outcome["version"]


def serving(registry: Registry) -> str:
    pointer = registry.production(TARGET)
    assert pointer is not None
    return pointer["version"]


def holdout_mape(registry: Registry, version: str) -> float:
    record = registry.get(version)
    assert record is not None
    return record["metrics"]["served"]["mape"]


def accuracy_of(report: dict, version: str) -> dict:
    [row] = [r for r in report["accuracy"] if r["target"] == TARGET and r["model_version"] == version]
    return row


def test_mape_increase_opens_for_a_rolled_back_weak_version_and_resolves_after_rolling_forward(
        settings, backends, monkeypatch):
    """The condition compares the serving version's live MAPE with its *own* holdout MAPE,
    so a model that is merely bad everywhere does not fire: what fires is a version whose
    holdout flattered it.

    The weak version is the first model, trained on 2017-01-01..15: about the shortest
    window the data gate accepts (the day-ahead variant needs only the day before, so 7
    days of training rows and 7 of holdout; its 14-day lag has no value yet). It serves
    2017-02-10, almost four weeks after its data ends, more than 2 points worse than its
    holdout said; the strong version, trained on 2017-01-01..02-09, stays within 2 points.
    The margin depends on the day: the weak holdout week holds a holiday (2017-01-11), so
    its holdout MAPE is high, and on several other February days its live MAPE stays
    within 2 points of it (measured: 02-02 +0.4, 02-06 −0.2, 02-15 +1.5, 02-20 +1.8). Both
    serve 2017-02-10 (the strong one first, then the weak one after the rollback), so the
    report shows the two on the same rows: the alert is the weak model's, not the day's.
    After rolling forward, the strong version is judged on both its days (the lookback
    spans the runs) and the alert resolves.
    """
    registry = Registry(settings, backends)
    collector = Collector(settings, backends, SPEC, {"replay": ReplaySource(SourceConfig("replay", "replay"), SPEC)})
    weak = retrain_after(collector, WEAK_DAYS, settings, backends, monkeypatch, "m-weak")
    strong = retrain_after(collector, STRONG_DAYS - WEAK_DAYS, settings, backends, monkeypatch, "m-strong")
    assert weak != strong and serving(registry) == strong
    holdout = {v: holdout_mape(registry, v) for v in (weak, strong)}
    assert holdout[strong] < holdout[weak], holdout

    served = observations(day_rows(SERVED_DAY))  # the day after the stored data, actuals not yet in
    assert set(predict_then_flush(settings, monkeypatch, served)) == {200}  # the strong version
    rollback = registry.rollback(TARGET, weak, "drill: serve the early model again")
    assert rollback.won and serving(registry) == weak, rollback
    assert set(predict_then_flush(settings, monkeypatch, served)) == {200}  # the weak version
    collect_next_day(settings, backends)

    first = run_monitor(settings, monkeypatch)
    report = json.loads(backends.blobs.read(first["report"]["json"]))
    live = {v: accuracy_of(report, v) for v in (weak, strong)}
    assert live[weak]["production"] and not live[strong]["production"]
    assert live[weak]["rows"] == live[strong]["rows"] == 144
    # The weak version misses by more than its holdout + 2 points; the strong one, on the
    # same rows, would not have fired.
    assert live[weak]["mape"] - holdout[weak] > 2, (live, holdout)
    assert live[strong]["mape"] - holdout[strong] < 2, (live, holdout)
    assert live[strong]["mape"] < live[weak]["mape"]
    opened = opened_alerts(first)
    assert {k for k in opened if k.startswith("mape_increase:")} == {KEY}, opened
    alert = backends.documents.get(names.ALERTS, KEY)
    assert alert is not None and alert["status"] == "open", alert
    assert alert["model_version"] == weak and alert["target"] == TARGET
    assert abs(alert["value"] - (live[weak]["mape"] - holdout[weak]) / 100) < 1e-5
    assert alert["value"] > alert["threshold"] == 0.02

    forward = registry.rollback(TARGET, strong, "drill over: roll forward")
    assert forward.won and serving(registry) == strong, forward
    assert set(predict_then_flush(settings, monkeypatch, observations(day_rows(NEXT_DAY)))) == {200}
    collect_next_day(settings, backends)

    second = run_monitor(settings, monkeypatch)
    assert KEY in {e["alert_id"] for e in second["events"] if e["event"] == "resolved"}, second["events"]
    assert KEY not in opened_alerts(second)
    alert = backends.documents.get(names.ALERTS, KEY)
    assert alert is not None and alert["status"] == "resolved" and alert["model_version"] == strong
    assert alert["value"] <= alert["threshold"]
    report = json.loads(backends.blobs.read(second["report"]["json"]))
    assert accuracy_of(report, strong)["production"] and accuracy_of(report, strong)["rows"] == 144
    assert all(r["model_version"] != weak for r in report["accuracy"])
