"""End to end: the local stack's scenario on both backends, with a crash and a concurrent client."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from shared.platform import names
from shared.platform.ports import where
from tests.conftest import require
from tests.support.wait import wait_until
from tools.emulators import EmulatorUnavailable, free_port
from tools.localstack import LocalStack, run_scenario

REFRESH_SECONDS = 3
# What predict promises is MODEL_REFRESH_SECONDS; the measurement adds the stack's
# health polling and, on a loaded machine, the reload itself.
RELOAD_SLACK_SECONDS = 4


@pytest.fixture(params=["embedded", "emulators"])
def stack(request, tmp_path):
    saved = dict(os.environ)
    stack = LocalStack(emulators=request.param == "emulators", state_dir=tmp_path / "state",
                       predict_port=free_port(), reset=True, log=lambda _: None,
                       env={"MODEL_REFRESH_SECONDS": str(REFRESH_SECONDS)})
    try:
        try:
            stack.start()  # an emulator that is installed but does not start raises EmulatorFailed
        except EmulatorUnavailable as exc:  # not installed
            stack.stop()
            require(f"emulators unavailable: {exc}")
        except BaseException:
            stack.stop()
            raise
        yield stack
        codes = stack.stop()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    # every process this stack started has exited, on its own signal handling
    assert all(code in (0, 143, -15) for code in codes.values()), codes


def test_the_scenario_end_to_end_with_a_crash_and_a_concurrent_client(stack):
    docs, blobs = stack.backends.documents, stack.backends.blobs
    results = run_scenario(stack, "P35D", "P7D", 1)

    # A crash: retrain is down when the next batch is announced, and comes back later.
    stack.kill("retrain")
    restarter = threading.Timer(2.0, stack.restart, args=("retrain",))
    restarter.start()
    results.append(stack.tick(2, "P7D"))
    restarter.join()
    results += run_scenario(stack, "P35D", "P7D", 1)

    # each tick's batch is stored once, windows contiguous
    batches = sorted((d for _, d in docs.query(where(names.BATCHES))), key=lambda d: d["start"])
    assert [b["status"] for b in batches] == ["accepted"] * 4
    assert len(blobs.list(names.RAW)) == 4 == len({b["batch_id"] for b in batches})
    assert [b["rows"] for b in batches] == [5040, 1008, 1008, 1008]
    # the announced batch the crashed server missed was redelivered and trained once
    crashed = next(b for b in batches if b["start"] == "2017-02-12T00:00:00")
    claim = docs.get(names.EVENT_CLAIMS, crashed["message_id"])
    assert claim["state"] == "done" and claim["attempts"] == 1
    head = docs.get(names.DATASETS, "tetouan_power")
    assert head["seq"] == 4 and len(head["batch_ids"]) == len(set(head["batch_ids"])) == 4

    # versions promoted or rejected as the gates say
    records = [d for _, d in docs.query(where(names.MODELS))]
    assert len(records) == 12
    for record in records:
        failed = [g for g in record["gates"] if g["status"] == "failed"]
        if record["status"] in ("production", "archived"):
            assert not failed, record["version"]
        else:
            assert record["status"] == "rejected" and (failed or "promotion lost" in record["reasons"][0])
    for version in stack.production_versions().values():
        assert docs.get(names.MODELS, version)["status"] == "production"

    # predict served each new production version within MODEL_REFRESH_SECONDS (plus slack)
    reloads = [r.reload_seconds for r in results if r.reload_seconds is not None]
    assert reloads and max(reloads) <= REFRESH_SECONDS + RELOAD_SLACK_SECONDS, reloads
    production = stack.production_versions()
    assert stack.serving_versions() == production

    # the concurrent client saw swaps, reaches the production versions, and no request failed
    seen = stack.client.versions_seen
    wait_until(lambda: all(seen.get(t, [None])[-1] == v for t, v in production.items()),
               timeout=60, what="the concurrent client to be served the production versions")
    assert stack.client.failed == []
    assert any(len(v) > 1 for v in seen.values())

    # monitor ran after each model update and on schedule, and its reports exist
    runs = [d for _, d in docs.query(where(names.MONITOR_RUNS))]
    assert sum(r["cause"] == "request" for r in runs) == len(results)
    assert sum(r["cause"] == "model-updated" for r in runs) >= len(reloads)
    assert f"{names.REPORTS}latest.html" in blobs.list(names.REPORTS)
    assert len([n for n in blobs.list(names.REPORTS) if n.endswith("report.html")]) == len(runs)
    assert stack.latest_report().endswith(".html")


def test_deploy_sh_local_once_runs_the_scenario_as_a_user_would(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        ["./deploy.sh", "local", "--once", "--reset", "--ticks", "1", "--state-dir", str(tmp_path / "s"),
         "--port", str(free_port())], cwd=root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "tick  0 |" in out and "tick  1 |" in out
    assert "predict client:" in out and ", 0 failed" in out
    assert "latest monitor report:" in out and "stopped:" in out
