"""Load a function's entry point the way functions-framework does, with test settings."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import functions_framework
import pytest

from tools.emulators import free_port, stop_process, wait_for_port
from shared.platform.settings import VARIABLES, Settings, attribute_name

FUNCTIONS = Path(__file__).resolve().parent.parent.parent / "functions"


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that reproduces ``settings`` in a fresh process or module."""
    return {v.name: str(getattr(settings, attribute_name(v.name))) for v in VARIABLES}


def function_app(name: str, settings: Settings, monkeypatch: pytest.MonkeyPatch,
                 signature: str = "http", **extra_env: str) -> Any:
    """The Flask app functions-framework builds for ``functions/<name>/main.py``."""
    for key, value in {**settings_env(settings), **extra_env}.items():
        monkeypatch.setenv(key, value)
    return functions_framework.create_app(name, str(FUNCTIONS / name / "main.py"), signature)


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
