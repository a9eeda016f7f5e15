"""The operator CLI on the embedded backend."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from shared import cli
from shared.cli import main
from shared.platform import names
from shared.platform.backends import connect
from shared.platform.claims import EventClaims
from shared.platform.ports import PushSubscription
from shared.platform.settings import Settings


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An existing, empty embedded store (connecting creates it), as the CLI would read it."""
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("EVENT_MIN_BACKOFF_SECONDS", "0.01")
    monkeypatch.setenv("EVENT_MAX_BACKOFF_SECONDS", "0.01")
    monkeypatch.setenv("EVENT_MAX_DELIVERY_ATTEMPTS", "5")
    monkeypatch.setenv("CLAIM_LEASE_SECONDS", "0.02")  # the 0.04 s of retries span twice the lease
    backends = connect(Settings.from_env())
    assert backends.documents is not None  # builds the documents database
    return backends


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def run_all(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


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
                                                "dataset_version": "-", "excludes": "[]", "reason": "gates"}


# -- which store, and a missing or empty one ------------------------------------------


@pytest.mark.parametrize("command", [["status"], ["batches"], ["--json", "alerts"], ["dead-letters"],
                                     ["models", "zone1"], ["calendar", "list"],
                                     ["calendar", "add", "holiday", "2018-06-15", "--name", "Eid al-Fitr"]])
def test_a_missing_store_is_an_error_that_names_it_and_creates_nothing(tmp_path, monkeypatch, capsys,
                                                                          command):
    state = tmp_path / "nowhere"
    monkeypatch.setenv("STATE_DIR", str(state))
    code, out, err = run_all(capsys, *command)
    assert code == cli.EXIT_NO_STORE == 2
    assert out == ""
    assert str(state) in err and "does not exist" in err
    assert f"./deploy.sh local --state-dir {state}" in err and "STATE_DIR" in err
    assert not state.exists()


def test_a_directory_without_a_documents_database_is_no_store(tmp_path, monkeypatch, capsys):
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("STATE_DIR", str(state))
    code, _out, err = run_all(capsys, "status")
    assert code == 2 and str(state) in err and cli.DOCUMENTS_FILE in err
    assert list(state.iterdir()) == []


def test_config_needs_no_store(tmp_path, monkeypatch, capsys):
    state = tmp_path / "nowhere"
    monkeypatch.setenv("STATE_DIR", str(state))
    code, out, _err = run_all(capsys, "--json", "config")
    assert code == 0 and {"variable": "STATE_DIR", "value": str(state)} in json.loads(out)
    assert not state.exists()


def test_the_store_read_is_named_on_stderr_and_stdout_stays_json(env, capsys):
    code, out, err = run_all(capsys, "--json", "batches")
    assert code == 0 and json.loads(out) == []
    assert err.splitlines()[0] == f"embedded store {env.settings.state_dir}"


def test_the_gcp_store_line_names_project_bucket_database_and_emulators():
    settings = Settings.from_env({"BACKEND": "gcp", "GOOGLE_CLOUD_PROJECT": "p1", "BUCKET": "b1"})
    line = cli.describe_store(settings, {"FIRESTORE_EMULATOR_HOST": "127.0.0.1:8081",
                                         "PUBSUB_EMULATOR_HOST": "127.0.0.1:8085"})
    assert line == ("gcp project p1, bucket b1, firestore database (default) "
                    "(emulators: firestore 127.0.0.1:8081, pubsub 127.0.0.1:8085)")
    assert cli.describe_store(settings, {}) == "gcp project p1, bucket b1, firestore database (default)"
    assert cli.missing_store(settings) is None  # nothing to check on disk


@pytest.mark.parametrize("command,note", [
    (["batches"], "no batches collected yet"), (["alerts"], "no open alerts"),
    (["alerts", "--all"], "no alerts"), (["dead-letters"], "no dead letters"),
    (["models", "zone1"], "no versions of this target"),
    (["status"], "no target has a production model yet")])
def test_an_empty_result_succeeds_and_says_so_on_stderr(env, capsys, command, note):
    code, out, err = run_all(capsys, *command)
    assert code == 0
    if command != ["status"]:  # status lists every target, each without a version
        assert out.strip() == "(none)"
    assert f"note: {note} in embedded store {env.settings.state_dir}" in err


def test_a_non_empty_result_has_no_empty_note(env, capsys):
    env.documents.set(names.PRODUCTION, "zone2", {"version": "zone2-v7", "metrics": {"mape": 3.1}})
    _code, _out, err = run_all(capsys, "status")
    assert "note:" not in err


# -- each batch's retrain outcome -------------------------------------------------------


def batch(env, batch_id: str, day: int, **fields) -> None:
    env.documents.set(names.BATCHES, batch_id, {"batch_id": batch_id, "status": "accepted",
                                                "announced": True,
                                                "collected_at": f"2026-11-{day:02d}T00:00:00Z", **fields})


def outcomes(capsys) -> dict[str, dict]:
    code, out = run(capsys, "--json", "batches")
    assert code == 0
    return {r["batch_id"]: r for r in json.loads(out)}


def test_batches_show_pending_failed_error_and_not_retrained_from_the_claims(env, capsys):
    claims = EventClaims(env.documents, lease_seconds=120)
    batch(env, "b-pending", 1)
    batch(env, "b-unannounced", 2, announced=False)
    batch(env, "b-rejected", 3, status="rejected")
    batch(env, "b-failed", 4)
    failed = claims.claim("m-failed", topic="data-ready", batch_id="b-failed")
    claims.failed("m-failed", failed.owner, "unknown batch 'b-failed'")
    batch(env, "b-error", 5)
    errored = claims.claim("m-error", topic="data-ready", batch_id="b-error")
    claims.release("m-error", errored.owner, "OSError: disk full")
    batch(env, "b-running", 6)
    claims.claim("m-running", topic="data-ready", batch_id="b-running")
    rows = outcomes(capsys)
    assert rows["b-pending"]["retrain"] == "pending (announced, not yet retrained)"
    assert rows["b-unannounced"]["retrain"] == "pending (not yet announced)"
    assert rows["b-rejected"]["retrain_outcome"]["state"] == "not_retrained"
    assert rows["b-failed"]["retrain"] == "failed: unknown batch 'b-failed'"
    assert rows["b-failed"]["retrain_outcome"] == {
        "state": "failed", "reason": "unknown batch 'b-failed'", "event_id": "m-failed", "attempts": 1,
        "summary": "failed: unknown batch 'b-failed'"}
    assert rows["b-error"]["retrain_outcome"]["state"] == "error"
    assert "OSError: disk full" in rows["b-error"]["retrain"]
    assert rows["b-running"]["retrain"] == "running (attempt 1)"
    _code, table = run(capsys, "batches")
    header, *lines = table.splitlines()
    assert header.split() == cli.COLUMNS["batches"]
    (failed_line,) = [line for line in lines if line.startswith("b-failed")]
    assert failed_line.endswith("failed: unknown batch 'b-failed'")


def test_a_finished_run_outranks_an_earlier_failed_delivery_of_the_same_batch(env, capsys):
    """A batch announced twice (or a dead letter replayed) has two claims: the finished one tells."""
    claims = EventClaims(env.documents, lease_seconds=120)
    batch(env, "b1", 1)
    first = claims.claim("m-1", topic="data-ready", batch_id="b1")
    claims.release("m-1", first.owner, "TimeoutError")
    second = claims.claim("m-2", topic="data-ready", batch_id="b1")
    claims.done("m-2", second.owner, outcome={"status": "trained", "dataset_version": "tetouan_power-000002",
                                              "targets": [
        {"target": "zone1", "version": "zone1-a", "decision": "promoted", "reasons": ["passed"]},
        {"target": "zone2", "version": "zone2-a", "decision": "rejected", "reasons": ["mape"]},
        # A rerun after a crash reports an already-decided version by its status.
        {"target": "zone3", "version": "zone3-a", "decision": "production", "reasons": ["passed"]}]})
    row = outcomes(capsys)["b1"]
    assert row["retrain"] == "trained: zone1 promoted, zone2 rejected, zone3 promoted"
    assert row["retrain_outcome"]["event_id"] == "m-2"
    assert row["retrain_outcome"]["dataset_version"] == "tetouan_power-000002"


def test_batches_show_what_the_real_retrain_decided_per_target(env, capsys):
    from shared.collect.service import Collector
    from shared.collect.sources import ReplaySource, SourceConfig
    from shared.core.dataset_spec import load_spec
    from shared.retrain.service import Retrainer
    from tests.support.bus import pubsub_event

    spec = load_spec("tetouan_power")
    settings = env.settings
    collector = Collector(settings, env, spec, {"replay": ReplaySource(SourceConfig("replay", "replay"), spec)})
    trained = collector.collect_source("replay", timedelta(days=35), None)
    summary = Retrainer(settings, env, spec).handle(pubsub_event({"batch_id": trained["batch_id"]}, "m-1"))
    assert summary["status"] == "trained"
    waiting = collector.collect_source("replay", timedelta(days=7), None)
    rows = outcomes(capsys)
    expected = ", ".join(f"{t['target']} {t['decision']}" for t in summary["targets"])
    assert rows[trained["batch_id"]]["retrain"] == f"trained: {expected}"
    decisions = rows[trained["batch_id"]]["retrain_outcome"]["targets"]
    assert set(decisions) == set(spec.target_names) and set(decisions.values()) <= {"promoted", "rejected"}
    assert rows[waiting["batch_id"]]["retrain_outcome"]["state"] == "pending"


# -- the holiday calendar -----------------------------------------------------------------


def calendar_rows(capsys, *argv: str) -> list[dict]:
    code, out = run(capsys, "--json", "calendar", "list", *argv)
    assert code == 0
    return json.loads(out)


def test_an_added_holiday_range_is_listed_day_by_day_as_the_operators(env, capsys):
    code, out, err = run_all(capsys, "--json", "calendar", "add", "holiday", "2018-06-15", "--to", "2018-06-16",
                             "--name", "Eid al-Fitr", "--actor", "amina")
    (added,) = json.loads(out)
    assert code == 0 and added["added"] is True and added["days"] == 2
    assert "retrain uses it from its next training" in err
    assert f"MODEL_REFRESH_SECONDS ({env.settings.model_refresh_seconds:g} s)" in err
    rows = [r for r in calendar_rows(capsys, "--from", "2018-06-01") if r["source"] == "operator"]
    assert [(r["date"], r["kind"], r["name"], r["added_by"]) for r in rows] == [
        ("2018-06-15", "holiday", "Eid al-Fitr", "amina"), ("2018-06-16", "holiday", "Eid al-Fitr", "amina")]


def test_the_spec_s_days_are_listed_as_the_spec_s_in_date_order_within_the_range(env, capsys):
    rows = calendar_rows(capsys, "--from", "2017-11-18", "--to", "2017-12-01")
    assert [(r["date"], r["name"], r["source"]) for r in rows] == [
        ("2017-11-18", "Independence Day", "spec"), ("2017-12-01", "Mawlid", "spec")]
    everything = calendar_rows(capsys)
    assert [r["date"] for r in everything] == sorted(r["date"] for r in everything)
    assert sum(r["kind"] == "ramadan" for r in everything) == 30  # 2017-05-27..06-25, each day


def test_the_calendar_table_has_the_declared_columns_and_a_ramadan_period(env, capsys):
    assert run(capsys, "calendar", "add", "ramadan", "2018-05-17", "--to", "2018-06-14",
               "--name", "Ramadan 1439")[0] == 0
    code, out = run(capsys, "calendar", "list", "--from", "2018-05-17", "--to", "2018-05-18")
    header, *lines = out.splitlines()
    assert code == 0 and header.split() == cli.COLUMNS["calendar list"]
    assert [line.split()[:5] for line in lines] == [["2018-05-17", "ramadan", "Ramadan", "1439", "operator"],
                                                    ["2018-05-18", "ramadan", "Ramadan", "1439", "operator"]]


def test_adding_the_same_day_twice_keeps_one_and_says_so(env, capsys):
    argv = ("--json", "calendar", "add", "holiday", "2018-08-22", "--name", "Eid al-Adha")
    first = json.loads(run(capsys, *argv)[1])[0]
    code, out, err = run_all(capsys, *argv)
    again = json.loads(out)[0]
    assert code == 0 and first["added"] is True and again["added"] is False
    assert again["added_at"] == first["added_at"] and "already in the calendar" in err
    assert [r["date"] for r in calendar_rows(capsys, "--from", "2018-08-22", "--to", "2018-08-22")] == ["2018-08-22"]
    doc = env.documents.get(names.CALENDARS, env.settings.dataset_spec)
    assert len(doc["holidays"]) == 1


def test_a_one_day_range_is_the_same_holiday_as_the_day(env, capsys):
    assert json.loads(run(capsys, "--json", "calendar", "add", "holiday", "2018-06-15",
                          "--name", "Eid al-Fitr")[1])[0]["added"] is True
    (again,) = json.loads(run(capsys, "--json", "calendar", "add", "holiday", "2018-06-15", "--to", "2018-06-15",
                              "--name", "Eid al-Fitr")[1])
    assert again["added"] is False and again["days"] == 1


@pytest.mark.parametrize("argv,message", [
    (["holiday", "2018-06-31"], "'2018-06-31' is not a date written YYYY-MM-DD"),
    (["holiday", "20180615"], "'20180615' is not a date written YYYY-MM-DD"),
    (["holiday", "2018-06-15", "--to", "2018-06-1x"], "'2018-06-1x' is not a date"),
    (["holiday", "2018-06-15", "--to", "2018-06-14"], "end date 2018-06-14 is before start date 2018-06-15"),
    (["eid", "2018-06-15"], "kind must be one of ['holiday', 'ramadan'], not 'eid'"),
    (["ramadan", "2018-05-17", "--to", "2019-06-14"], "more than a year")])
def test_a_bad_entry_is_refused_with_a_message_and_stores_nothing(env, capsys, argv, message):
    code, out, err = run_all(capsys, "calendar", "add", *argv, "--name", "Eid al-Fitr")
    assert code == cli.EXIT_FAILED and out == ""
    assert "\nerror: " in err and message in err and "Traceback" not in err
    assert env.documents.get(names.CALENDARS, env.settings.dataset_spec) is None


def test_a_bad_list_bound_is_refused(env, capsys):
    code, _out, err = run_all(capsys, "calendar", "list", "--from", "2018-02-30")
    assert code == cli.EXIT_FAILED and "'2018-02-30' is not a date" in err


def test_an_added_holiday_reaches_the_features_retrain_and_predict_build(env, capsys):
    import numpy as np

    from shared.core.calendar_store import operator_calendar
    from shared.core.dataset_spec import load_spec
    from shared.core.features import FeatureContext

    spec = load_spec(env.settings.dataset_spec)
    ts = np.array(["2018-06-14T12:00", "2018-06-15T00:00", "2018-06-15T23:50", "2018-06-16T12:00"],
                  dtype="datetime64[m]")
    before = FeatureContext.from_spec(spec, operator_calendar(env.documents, spec)).special_days
    assert before is not None and before.columns(ts)["holiday"].tolist() == [0, 0, 0, 0]
    assert run(capsys, "calendar", "add", "holiday", "2018-06-15", "--name", "Eid al-Fitr")[0] == 0
    after = FeatureContext.from_spec(spec, operator_calendar(env.documents, spec)).special_days
    assert after is not None
    columns = after.columns(ts)
    assert columns["holiday"].tolist() == [0, 1, 1, 0]
    assert columns["holiday_next"].tolist() == [1, 0, 0, 0] and columns["holiday_prev"].tolist() == [0, 0, 0, 1]
