"""Load a function's entry point the way functions-framework does, with test settings."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest

from shared.platform import names
from shared.platform.backends import Backends
from shared.platform.settings import Settings
from tests.support.bus import post_push
from tools.emulators import free_port, stop_process, wait_for_port

FUNCTIONS = Path(__file__).resolve().parent.parent.parent / "functions"


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that reproduces ``settings`` in a fresh process or module."""
    return settings.to_environ()


def function_app(name: str, settings: Settings, monkeypatch: pytest.MonkeyPatch,
                 signature: str = "http", **extra_env: str) -> Any:
    """The Flask app functions-framework builds for ``functions/<name>/main.py``."""
    for key, value in {**settings_env(settings), **extra_env}.items():
        monkeypatch.setenv(key, value)
    return functions_framework.create_app(name, str(FUNCTIONS / name / "main.py"), signature)


def retrain_client(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A test client of the ``retrain`` CloudEvent function, as functions-framework serves it."""
    return function_app("retrain", settings, monkeypatch, signature="cloudevent").test_client()


def push_data_ready(retrain: Any, settings: Settings, backends: Backends, batch_id: str,
                    message_id: str) -> dict[str, Any]:
    """Announce ``batch_id`` to retrain with the real push body; returns the run's summary.

    The summary is what retrain recorded on the event's claim when it finished.
    """
    response = post_push(retrain, settings, settings.topic_data_ready, {"batch_id": batch_id}, message_id)
    assert response.status_code == 200, response.get_data(as_text=True)[-2000:]
    claim = backends.documents.get(names.EVENT_CLAIMS, message_id)
    assert claim is not None and claim["state"] == "done", claim
    return claim["outcome"]


@contextlib.contextmanager
def served_function(name: str, settings: Settings, signature: str = "http",
                    **extra_env: str) -> Iterator[str]:
    """Run ``functions-framework`` for ``functions/<name>`` on a free port; yields its URL."""
    port = free_port()
    env = {**os.environ, **settings_env(settings), **extra_env,
           "PYTHONPATH": str(FUNCTIONS.parent)}
    cmd = [str(Path(sys.executable).parent / "functions-framework"), "--target", name,
           "--source", str(FUNCTIONS / name / "main.py"), "--signature-type", signature,
           "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    try:
        if not wait_for_port(port, process, 30):
            stop_process(process)
            output = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"{name} did not start:\n{output[-3000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)
