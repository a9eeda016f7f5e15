"""The operator CLI on the embedded backend."""

from __future__ import annotations

import json

import pytest

from shared import cli
from shared.cli import main
from shared.platform import names
from shared.platform.backends import connect
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
    _code, out = run(capsys, "--json", "batches", "--limit", "2")
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


def test_the_table_shows_every_field_of_the_json_under_its_header(env, capsys):
    """The table's columns are the command's declared ones, and they drop no field the JSON has."""
    env.documents.set(names.PRODUCTION, "zone2", {"version": "zone2-v7", "metrics": {"mape": 3.1},
                                                  "promoted_at": "2026-11-01T00:00:00Z", "reason": "gates"})
    code, out = run(capsys, "status")
    header, *rows = out.splitlines()
    assert code == 0 and header.split() == cli.COLUMNS["status"]
    (json_row,) = [r for r in json.loads(run(capsys, "--json", "status")[1]) if r["target"] == "zone2"]
    assert set(json_row) == set(cli.COLUMNS["status"])
    (zone2,) = [r.split() for r in rows if r.startswith("zone2")]
    assert dict(zip(header.split(), zone2, strict=False)) == {"target": "zone2", "version": "zone2-v7",
                                                "promoted_at": "2026-11-01T00:00:00Z", "mape": "3.1",
                                                "reason": "gates"}
