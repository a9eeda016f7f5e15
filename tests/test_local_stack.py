"""End to end: the local stack's scenario on both backends, with a crash and a concurrent client;
``./deploy.sh local`` as a user runs it: taken ports, ``--no-client``, a stop mid-tick.

Every stack here runs on free ports (``--ports``), never the fixed defaults, so the
tests run beside a user's own stack.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shared.platform import names
from shared.platform.backends.local_blobs import LocalBlobStore
from shared.platform.ports import where
from tests.conftest import require
from tests.support.wait import wait_until
from tools.emulators import EmulatorUnavailable
from tools.localstack import FUNCTIONS, LocalStack, port_holders, run_scenario

ROOT = Path(__file__).resolve().parent.parent

REFRESH_SECONDS = 3
# What predict promises is MODEL_REFRESH_SECONDS; the measurement adds the stack's
# health polling and, on a loaded machine, the reload itself.
RELOAD_SLACK_SECONDS = 4


def free_ports() -> dict[str, int]:
    """A distinct free port per function (the sockets are all bound at once, then released)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in FUNCTIONS]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return {name: sock.getsockname()[1] for name, sock in zip(FUNCTIONS, sockets, strict=True)}
    finally:
        for sock in sockets:
            sock.close()


def ports_option(ports: dict[str, int]) -> list[str]:
    return ["--ports", ",".join(f"{name}={port}" for name, port in ports.items())]


def localstack(*args: str) -> list[str]:
    """The command ./deploy.sh local runs, without the venv check."""
    return [sys.executable, "-m", "tools.localstack", *args]


@pytest.fixture(params=["embedded", "emulators"])
def stack(request, tmp_path):
    saved = dict(os.environ)
    stack = LocalStack(emulators=request.param == "emulators", state_dir=tmp_path / "state",
                       ports=free_ports(), reset=True, log=lambda _: None,
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
         *ports_option(free_ports())], cwd=root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "tick  0 |" in out and "tick  1 |" in out
    assert "predict client:" in out and ", 0 failed" in out
    assert "latest monitor report:" in out and "stopped:" in out
    # the start block: every URL, the state and the CLI line that reads it
    assert "local stack up" in out and out.count("http://127.0.0.1:") >= 4
    assert f"STATE_DIR={tmp_path / 's'}" in out and "-m shared.cli status" in out


def test_a_taken_port_stops_the_stack_at_once_naming_the_port_and_the_function(tmp_path):
    ports = free_ports()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:  # another program's server
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = ports["retrain"] = other.getsockname()[1]
        # It used to accept the other server as its own and time out 80 s later: now it
        # stops before starting anything (the timeout bounds a hang; Python starts in ~1 s).
        result = subprocess.run(localstack("--once", "--state-dir", str(tmp_path / "s"), *ports_option(ports)),
                                cwd=ROOT, capture_output=True, text=True, timeout=30)
        holders = port_holders(taken)
    assert result.returncode != 0
    message = result.stderr
    assert f"port {taken} wanted by retrain is already in use" in message, message
    if Path("/proc/net/tcp").exists():  # the holder is found through /proc
        assert holders and f"pid {os.getpid()} " in message, message
    assert not (tmp_path / "s").exists()  # nothing was created or started
    assert "local stack up" not in result.stdout


def test_no_client_means_only_your_own_requests_reach_predict(tmp_path):
    state = tmp_path / "s"
    result = subprocess.run(localstack("--once", "--reset", "--no-client", "--ticks", "0", "--state-dir",
                                       str(state), *ports_option(free_ports())),
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    logs = state / "logs"
    retrain_log = (logs / "retrain.log").read_text()[-3000:] if (logs / "retrain.log").exists() else ""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + "\nretrain log:\n" + retrain_log
    out = result.stdout
    assert "tick  0 |" in out and "none (--no-client)" in out
    assert "predict client: none ran (--no-client)" in out
    # not one prediction was requested, so predict logged none
    assert LocalBlobStore(state / "blobs" / "forecast-local").list(names.PREDICTIONS) == []


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_stop_mid_tick_ends_the_stack_within_seconds(tmp_path):
    state = tmp_path / "s"
    stack = subprocess.Popen(localstack("--once", "--reset", "--state-dir", str(state), *ports_option(free_ports())),
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stack.stdout.readline, "")), daemon=True)
    reader.start()
    retrain = None
    try:
        wait_until(lambda: "operator CLI on this stack:\n" in "".join(lines) or stack.poll() is not None,
                   timeout=180, what="the stack to start")
        out = "".join(lines)
        pids = {name: int(pid) for name, pid in re.findall(r"^  (\w+) +http://127\.0\.0\.1:\d+ +\(pid (\d+)",
                                                              out, re.MULTILINE)}
        assert set(pids) == set(FUNCTIONS), out
        # Freeze retrain (its master and worker): the first tick then waits for its claim for
        # up to two minutes, as a long fit would.
        retrain = pids["retrain"]
        os.killpg(retrain, signal.SIGSTOP)
        wait_until(lambda: "batch announced" in (state / "logs" / "collect_data.log").read_text(),
                   timeout=120, what="collect_data to announce the first batch")
        assert "tick  0 |" not in "".join(lines)  # mid-tick
        signalled = time.monotonic()
        stack.send_signal(signal.SIGTERM)
        code = stack.wait(timeout=20)  # the grace before SIGKILL is 5 s; the rest is slack
        stopped_after = time.monotonic() - signalled
        reader.join(5)
        out = "".join(lines)
        assert code == 130, out
        assert "interrupted after 0 tick(s)" in out and "tick  0 |" not in out
        assert re.search(r"stopped: .*retrain exit -9", out) and "SIGKILL after 5 s: retrain" in out, out
        assert stopped_after < 20
        # every server it started is gone, the frozen one included
        wait_until(lambda: all(_gone(pid) for pid in pids.values()), timeout=10, what="the servers to exit")
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait()
        if retrain is not None:
            try:
                os.killpg(retrain, signal.SIGKILL)
            except ProcessLookupError:
                pass
