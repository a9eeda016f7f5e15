"""The operator CLI on the embedded backend."""

from __future__ import annotations

import json

import pytest

from shared.platform import names
from shared.platform.backends import connect
from shared.cli import main
from shared.platform.ports import PushSubscription
from shared.platform.settings import Settings


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("EVENT_MIN_BACKOFF_SECONDS", "0.01")
    monkeypatch.setenv("EVENT_MAX_BACKOFF_SECONDS", "0.01")
    return connect(Settings.from_env())


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_status_lists_each_target_and_its_production_version(env, capsys):
    env.documents.set(names.PRODUCTION, "zone2", {"version": "zone2-v7", "metrics": {"mape": 3.1}})
    code, out = run(capsys, "--json", "status")
    rows = {r["target"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["zone2"]["version"] == "zone2-v7" and rows["zone2"]["mape"] == 3.1
    assert rows["zone1"]["version"] is None


def test_batches_are_newest_first_and_limited(env, capsys):
    for day in range(1, 6):
        env.documents.set(names.BATCHES, f"b{day}", {"collected_at": f"2026-11-0{day}T00:00:00Z",
                                                     "status": "accepted"})
    code, out = run(capsys, "--json", "batches", "--limit", "2")
    assert [r["batch_id"] for r in json.loads(out)] == ["b5", "b4"]


def test_alerts_shows_open_ones_unless_all(env, capsys):
    env.documents.set(names.ALERTS, "a1", {"status": "open", "opened_at": "2026-11-01", "metric": "psi"})
    env.documents.set(names.ALERTS, "a2", {"status": "resolved", "opened_at": "2026-11-02"})
    assert [r["alert_id"] for r in json.loads(run(capsys, "--json", "alerts")[1])] == ["a1"]
    assert [r["alert_id"] for r in json.loads(run(capsys, "--json", "alerts", "--all")[1])] == ["a2", "a1"]


def test_dead_letters_are_listed_and_replayed(env, capsys):
    bus = env.events
    bus.ensure_push_subscription(PushSubscription("retrain", "data-ready", "http://127.0.0.1:9/"))
    bus.publish("data-ready", {"batch_id": "b1"})
    bus.drain(timeout=10)  # port 9 refuses: every attempt fails, then it is parked
    capsys.readouterr()
    code, out = run(capsys, "--json", "dead-letters")
    (letter,) = json.loads(out)
    assert letter["subscription"] == "retrain" and letter["delivery_attempts"] == 5
    code, out = run(capsys, "replay", letter["id"], "--topic", "data-ready")
    assert code == 0 and letter["id"] in out
    assert json.loads(run(capsys, "--json", "dead-letters")[1]) == []
    assert bus.pending() == 1


def test_unknown_dead_letter_is_an_error_exit(env, capsys):
    assert main(["replay", "nope", "--topic", "alerts"]) == 1


def test_bad_configuration_exits_with_2(monkeypatch, capsys):
    monkeypatch.setenv("BACKEND", "azure")
    assert main(["status"]) == 2
    assert "BACKEND" in capsys.readouterr().err


def test_table_output_has_a_header_row(env, capsys):
    code, out = run(capsys, "status")
    assert out.splitlines()[0].split() == ["target", "version", "promoted_at", "mape", "reason"]


