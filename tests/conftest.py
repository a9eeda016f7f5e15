"""Fixtures shared by the whole suite: emulators, settings and backends per adapter.

The emulators start once per session, on free ports, only when a test asks for
the ``gcp`` backend. Where one is not installed those tests skip with the reason,
except under ``CI=true``, where a missing emulator fails them. An installed
emulator that fails to start is an error everywhere, its output in the message.

Every test runs with the logging configuration restored afterwards, so a test
that points the root logger at its own (later closed) stream leaves no trace.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything loads scikit-learn's OpenMP runtime (tests import it directly too): the
# servers the tests start, the emulators and the test process share two cores, where a
# fit's second thread only contends (shared/retrain/training.py). Measured on one monitor
# test on both backends (35-day training, twin and refit): 52 s with 2 threads, 26 s with 1.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from shared.platform.backends import Backends, connect
from shared.platform.settings import Settings
from tools.emulators import EmulatorStack, EmulatorUnavailable

IN_CI = os.environ.get("CI", "").lower() == "true"
PROJECT = "test-project"
BACKENDS = ("embedded", "gcp")
_startup: dict[str, float] = {}


def require(reason: str) -> None:
    """Skip for a missing part, or fail under CI=true, where nothing may be missing."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing emulator is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorStack]:
    """Pub/Sub, Firestore and fake-gcs emulators, with the client variables set."""
    log_path = tmp_path_factory.mktemp("emulators") / "emulators.log"
    try:
        stack = EmulatorStack(PROJECT, log_path=log_path)  # checks what is installed
    except EmulatorUnavailable as exc:
        require(f"emulators unavailable: {exc}")
    stack.start()  # EmulatorFailed (installed but not starting) is an error, never a skip
    saved = {k: os.environ.get(k) for k in stack.environment}
    os.environ.update(stack.environment)
    from google.cloud import firestore

    started = time.monotonic()
    firestore.Client(project=PROJECT).collection("warmup").document("w").set({"ok": True})
    _startup.update({e.name: e.startup_seconds for e in stack.emulators})
    _startup["firestore first write"] = time.monotonic() - started
    try:
        yield stack
    finally:
        from shared.predict.prediction_log import close_all

        close_all(budget=5)  # while the emulators still answer
        stack.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(autouse=True, scope="session")
def session_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The temporary directory of this process and the servers it starts: pytest's, which it
    prunes, so what the code keeps there (predict's generation markers, one per deployment
    and so one per test state) does not pile up in /tmp."""
    import tempfile

    folder = tmp_path_factory.mktemp("tmp")
    before = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = str(folder), str(folder)
    try:
        yield folder
    finally:
        if before[0] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = before[0]
        tempfile.tempdir = before[1]


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put back the logging configuration a test changed through ``log.configure``.

    ``configure`` replaces the root logger's JSON handler, sets levels and marks
    itself done; a test that configures it with a stream of its own (capsys's,
    closed after the test) would otherwise leave later records going nowhere.
    """
    from shared.platform import log

    def json_handlers() -> list[logging.Handler]:  # pytest's own capture handlers are not ours
        return [h for h in root.handlers if getattr(h, "_json_log", False)]

    root, quiet = logging.getLogger(), logging.getLogger("urllib3")
    handlers, level, quiet_level, configured = json_handlers(), root.level, quiet.level, log._configured
    try:
        yield
    finally:
        for handler in json_handlers():
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        quiet.setLevel(quiet_level)
        log._configured = configured
        log.bind_trace({})  # a trace bound by the test is no later test's


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _startup:
        figures = ", ".join(f"{k} {v:.2f} s" for k, v in _startup.items())
        terminalreporter.write_line(f"emulator start-up: {figures}")


def make_settings(backend: str, tmp_path: Path, **overrides: object) -> Settings:
    """Settings isolated to one test: own state directory, bucket and topic names."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        "BACKEND": backend,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "BUCKET": f"test-{suffix}",
        "STATE_DIR": str(tmp_path / "state"),
        "TOPIC_DATA_READY": f"data-ready-{suffix}",
        "TOPIC_MODEL_UPDATED": f"model-updated-{suffix}",
        "TOPIC_ALERTS": f"alerts-{suffix}",
        # Fast retries and dead letters; the retries (0.1 + 0.2 + 0.4 + 0.8 = 1.5 s) still
        # span twice the claim lease, as Settings requires (docs/retrain.md).
        "EVENT_MIN_BACKOFF_SECONDS": "0.1",
        "EVENT_MAX_BACKOFF_SECONDS": "1",
        "EVENT_MAX_DELIVERY_ATTEMPTS": "5",
        "CLAIM_LEASE_SECONDS": "0.75",
    }
    return Settings.from_env(env, **overrides)


def open_backends(settings: Settings, stack: EmulatorStack | None) -> Backends:
    """Fresh adapters for ``settings``; on gcp, an empty bucket and Firestore database."""
    if settings.backend == "gcp":
        assert stack is not None
        from google.cloud import storage

        stack.reset_firestore()
        storage.Client(project=settings.project).create_bucket(settings.bucket)
    backends = connect(settings)
    for topic in settings.topics:
        backends.events.ensure_topic(topic)
    return backends


@pytest.fixture(scope="session")
def receiver():
    """The push receiver (its module, for RECEIVED and FAILING) served on 127.0.0.1."""
    import sys

    import functions_framework

    from tests.support.bus import RECEIVER_SOURCE
    from tests.support.servers import ThreadedServer

    app = functions_framework.create_app("receive", str(RECEIVER_SOURCE), "cloudevent")
    module = sys.modules["push_receiver"]
    server = ThreadedServer(app).start()
    yield module, server.url
    server.stop()


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(backend_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    if backend_name == "gcp":
        request.getfixturevalue("emulators")
    return make_settings(backend_name, tmp_path)


@pytest.fixture
def backends(settings: Settings, request: pytest.FixtureRequest) -> Backends:
    stack = request.getfixturevalue("emulators") if settings.backend == "gcp" else None
    return open_backends(settings, stack)
