"""The whole system on one machine, wired as in Google Cloud, replaying the spec's bundled series.

Each function runs in its own functions-framework server on 127.0.0.1. With the
embedded backends (default) the SQLite event bus pushes the same CloudEvents to
them from this process; with ``--emulators`` the Pub/Sub, Firestore and
fake-gcs emulators run instead, with Pub/Sub push subscriptions (retry policy,
dead-letter topic) to the servers — the production topology.

A tick collects a window (collect_data over HTTP), then follows the chain:
data-ready -> retrain -> model-updated -> predict reloads and monitor runs; a
client keeps predicting the coming days all along (unless ``--no-client``).

The four ports are fixed (``DEFAULT_PORTS``, or ``--base-port``/``--ports``) and
checked before anything starts: a taken port fails at once, naming the function
and, when it can be found, the process holding it; a server counts as started
only once the process we spawned holds the listening socket. A stop (Ctrl-C,
SIGTERM) interrupts a tick's waits at once and stops the servers by PID, SIGKILL
after ``STOP_GRACE_SECONDS``. ``./deploy.sh local --help``.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    import pandas as pd

from shared.cli import format_table
from shared.core.dataset_spec import DatasetSpec
from shared.core.registry import Registry
from shared.platform import names
from shared.platform.backends import Backends, connect
from shared.platform.backends.local_events import LocalEventBus
from shared.platform.ports import PushSubscription, where
from shared.platform.settings import PROJECT_ROOT as ROOT
from shared.platform.settings import Settings
from shared.platform.timefmt import parse_duration
from tools.emulators import EmulatorStack

FUNCTIONS = {"collect_data": "http", "retrain": "cloudevent", "predict": "http", "monitor": "http"}
SUBSCRIPTIONS = (("retrain", "data_ready"), ("predict", "model_updated"), ("monitor", "model_updated"))
DEFAULT_STATE = ROOT / ".state" / "local"
# Fixed, so the URLs are the same every run; --base-port N gives N, N+1, N+2, N+3 in this order.
DEFAULT_PORTS = {"predict": 8080, "collect_data": 8081, "retrain": 8082, "monitor": 8083}
# How long a stop lets a server finish after SIGTERM (gunicorn waits for requests in
# flight, a retrain fit included) before SIGKILL.
STOP_GRACE_SECONDS = 5.0


class Interrupted(Exception):
    """The stack's stop event was set while it waited (Ctrl-C, SIGTERM)."""


class StackError(RuntimeError):
    """The stack cannot start: a port is taken, or a server did not come up."""


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


# -- ports ------------------------------------------------------------------------------

def _listening_inodes(port: int) -> set[str] | None:
    """Socket inodes listening on TCP ``port`` (any address), from /proc; None without /proc."""
    found: set[str] = set()
    readable = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            fields = line.split()  # sl local rem st ... inode (10th)
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(fields[9])
    return found if readable else None


def _socket_inodes(pid: int | str) -> set[str]:
    inodes = set()
    try:
        entries = list(os.scandir(f"/proc/{pid}/fd"))
    except OSError:  # gone, or another user's
        return set()
    for entry in entries:
        try:
            target = os.readlink(entry.path)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _command_line(pid: int | str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    text = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return text if len(text) <= 120 else text[:117] + "..."


def port_holders(port: int) -> list[str]:
    """Best effort: "pid N (command line)" of each process listening on ``port``.

    /proc/net/tcp{,6} and /proc/*/fd (this user's processes), else ``ss -ltnp``;
    empty when neither tells.
    """
    holders: list[str] = []
    inodes = _listening_inodes(port)
    if inodes:
        try:
            pids = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
        except OSError:
            pids = []
        holders = [f"pid {pid} ({_command_line(pid)})" for pid in pids if _socket_inodes(pid) & inodes]
    if not holders and shutil.which("ss"):
        try:
            out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True,
                                 timeout=2).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        holders = [f"pid {pid} ({_command_line(pid) if Path(f'/proc/{pid}').exists() else name})"
                   for name, pid in dict.fromkeys(re.findall(r'\("([^"]*)",pid=(\d+)', out))]
    return holders


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process group a server leads (its PID), the server included."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # nothing left in the group
        if process.poll() is None:
            process.kill()


def holds_port(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds the socket listening on ``port``; None when /proc cannot tell."""
    inodes = _listening_inodes(port)
    if inodes is None:
        return None
    return bool(inodes & _socket_inodes(pid))


def check_ports(ports: Mapping[str, int]) -> None:
    """StackError naming every port that is given twice, taken, or cannot be bound on 127.0.0.1."""
    problems = []
    owners: dict[int, str] = {}
    for name, port in ports.items():
        if port in owners:
            problems.append(f"port {port} is given to both {owners[port]} and {name}")
            continue
        owners[port] = name
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As gunicorn binds: a closed connection in TIME_WAIT does not count as taken.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    holders = port_holders(port)
                    by = ", ".join(holders) if holders else "another process (which one could not be found)"
                    problems.append(f"port {port} wanted by {name} is already in use by {by}")
                else:
                    problems.append(f"port {port} wanted by {name} cannot be bound on 127.0.0.1: "
                                    f"{exc.strerror or exc}")
    if problems:
        raise StackError("; ".join(problems) + ". Stop that process, or give the stack other ports: "
                         "--ports NAME=PORT[,NAME=PORT...] or --base-port N (see --help).")


@dataclass
class Server:
    """One functions-framework process."""

    name: str
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class TickResult:
    """What one collection tick did, end to end."""

    tick: int
    window: str
    rows: int
    status: str
    quality: float | None
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    reload_seconds: float | None = None
    seconds: float = 0.0


class PredictClient(threading.Thread):
    """Keeps asking predict for the span the next tick collects, as a caller with weather forecasts would."""

    def __init__(self, url: str, stack: LocalStack, pause: float = 0.05) -> None:
        super().__init__(name="predict-client", daemon=True)
        self.url = url
        self.stack = stack
        self.pause = pause
        self.stop_event = threading.Event()
        self.ok = 0
        self.failed: list[str] = []
        self.versions_seen: dict[str, list[str]] = {}

    def run(self) -> None:
        with requests.Session() as session:
            while not self.stop_event.is_set():
                # A caller starts once the service reports ready, as a load balancer would.
                body = self.stack.next_observations() if self.ok or self._healthy(session) else None
                if body is None:
                    self.stop_event.wait(0.2)
                    continue
                try:
                    response = session.post(f"{self.url}/predict", json=body, timeout=10)
                except requests.RequestException as exc:
                    self.failed.append(type(exc).__name__)
                else:
                    if response.status_code == 200:
                        self.ok += 1
                        for target, version in response.json()["model_versions"].items():
                            seen = self.versions_seen.setdefault(target, [])
                            if not seen or seen[-1] != version:
                                seen.append(version)
                    else:
                        self.failed.append(f"HTTP {response.status_code}")
                self.stop_event.wait(self.pause)

    def _healthy(self, session: requests.Session) -> bool:
        try:
            return session.get(f"{self.url}/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, timeout: float = 10) -> None:
        self.stop_event.set()
        self.join(timeout)


class LocalStack:
    """Start, wire, drive and stop the local system.

    ``ports`` overrides ``DEFAULT_PORTS`` per function; ``client=False`` runs no
    predicting client. ``stop_event`` (set by a stop) interrupts every wait of
    ``start`` and ``tick`` with ``Interrupted``.
    """

    def __init__(self, emulators: bool = False, state_dir: Path = DEFAULT_STATE,
                 ports: Mapping[str, int] | None = None, reset: bool = False, env: dict[str, str] | None = None,
                 log: Callable[[str], None] = print, client: bool = True) -> None:
        unknown = set(ports or {}) - set(FUNCTIONS)
        if unknown:
            raise ValueError(f"no such function: {sorted(unknown)}")
        self.use_emulators = emulators
        self.state_dir = Path(state_dir)
        self.ports = {**DEFAULT_PORTS, **(ports or {})}
        self.run_client = client
        self.reset = reset
        self.extra_env = dict(env or {})
        self.log = log
        self.emulators: EmulatorStack | None = None
        self.servers: dict[str, Server] = {}
        self.settings: Settings | None = None
        self.backends: Backends | None = None
        self._stop_bus = threading.Event()
        self._bus_thread: threading.Thread | None = None
        self._weather: tuple[DatasetSpec, pd.DataFrame] | None = None
        self.client: PredictClient | None = None
        self.stop_event = threading.Event()
        self.killed: list[str] = []  # servers that needed SIGKILL at the last stop
        self.forecast_span = timedelta(days=1)  # how far past the stored data the client forecasts

    # -- lifecycle ------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """What every function server and this process share."""
        env = {"BACKEND": "gcp" if self.use_emulators else "embedded", "STATE_DIR": str(self.state_dir),
               "GOOGLE_CLOUD_PROJECT": "local-project", "BUCKET": "forecast-local",
               "EVENT_MIN_BACKOFF_SECONDS": "1", "EVENT_MAX_BACKOFF_SECONDS": "10",
               "EVENT_MAX_DELIVERY_ATTEMPTS": "10", "EVENT_ACK_DEADLINE_SECONDS": "120",
               "MODEL_REFRESH_SECONDS": "10", "CLAIM_LEASE_SECONDS": "30",
               "PREDICTION_LOG_FLUSH_SECONDS": "1", "LOG_LEVEL": "INFO", **self.extra_env}
        if self.emulators is not None:
            env.update(self.emulators.environment)
        return env

    def start(self) -> None:
        check_ports(self.ports)  # before anything is created or started
        if self.reset and self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        if self.use_emulators:
            self.log("starting the Pub/Sub, Firestore and Cloud Storage emulators...")
            self.emulators = EmulatorStack("local-project", log_path=self.state_dir / "logs" / "emulators.log",
                                           avoid_ports=tuple(self.ports.values()))
            self.emulators.start()
        os.environ.update(self.environment())
        self.settings = Settings.from_env()
        self.backends = connect(self.settings)
        if self.use_emulators:
            import google.cloud.storage as storage

            storage.Client(project=self.settings.project).create_bucket(self.settings.bucket)
        for topic in self.settings.topics:
            self.backends.events.ensure_topic(topic)
        for name in FUNCTIONS:
            self.servers[name] = self._spawn(Server(name, self.ports[name]))
        for name in FUNCTIONS:
            self._wait_ready(self.servers[name])
        self._subscribe()
        if not self.use_emulators:
            assert isinstance(self.backends.events, LocalEventBus)
            self._bus_thread = threading.Thread(target=self.backends.events.run, args=(self._stop_bus,),
                                                name="event-bus", daemon=True)
            self._bus_thread.start()
        if self.run_client:
            self.client = PredictClient(self.servers["predict"].url, self)
            self.client.start()

    def server_threads(self, name: str) -> int:
        """OMP_NUM_THREADS of a server: retrain's fits get every CPU, the others one, so four
        servers on a small machine do not each size OpenMP and BLAS pools on all cores."""
        return available_cpus() if name == "retrain" else 1

    def _spawn(self, server: Server) -> Server:
        env = {**os.environ, **self.environment(), "PYTHONPATH": str(ROOT)}
        env["OMP_NUM_THREADS"] = self.extra_env.get("OMP_NUM_THREADS", str(self.server_threads(server.name)))
        if server.name == "predict":
            env.update(WORKERS="1", THREADS="8")
        # The server keeps its own copy of the descriptor; ours closes once it has started.
        with open(self.state_dir / "logs" / f"{server.name}.log", "ab") as log:
            server.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "functions-framework"), "--target", server.name,
                 "--source", str(ROOT / "functions" / server.name / "main.py"), "--signature-type",
                 FUNCTIONS[server.name], "--host", "127.0.0.1", "--port", str(server.port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                # Its own process group, led by the PID we hold: gunicorn's worker goes with its
                # master on SIGKILL, and a terminal's Ctrl-C reaches this process only, which stops
                # the servers in order.
                start_new_session=True)
        return server

    def _wait_ready(self, server: Server, timeout: float = 60) -> None:
        """Until the process we spawned holds the listening socket: a server another process
        runs on the port is never taken for ours."""
        assert server.process is not None
        log = self.state_dir / "logs" / f"{server.name}.log"
        deadline = time.monotonic() + timeout
        while True:
            code = server.process.poll()
            if code is not None:
                holders = port_holders(server.port)
                taken = f"; port {server.port} is held by {', '.join(holders)}" if holders else ""
                raise StackError(f"{server.name} exited with code {code} before serving on port "
                                 f"{server.port}{taken}; see {log}")
            ours = holds_port(server.process.pid, server.port)
            if ours is None:  # no /proc: accepting connections is the best sign left
                ours = _accepts(server.port)
            if ours:
                return
            if time.monotonic() > deadline:
                holders = port_holders(server.port)
                taken = f"; port {server.port} is held by {', '.join(holders)}" if holders else ""
                raise StackError(f"{server.name} did not serve on port {server.port} within {timeout:g} s"
                                 f"{taken}; see {log}")
            self._pause(0.05)

    def _pause(self, seconds: float) -> None:
        """Sleep, unless a stop comes first (then Interrupted)."""
        if self.stop_event.wait(seconds):
            raise Interrupted("stopped")

    def _subscribe(self) -> None:
        assert self.settings and self.backends
        for function, topic_attr in SUBSCRIPTIONS:
            topic = getattr(self.settings, f"topic_{topic_attr}")
            self.backends.events.ensure_push_subscription(PushSubscription(
                f"{function}-{topic}", topic,
                f"{self.servers[function].url}/projects/{self.settings.project}/topics/{topic}"))

    def kill(self, name: str) -> None:
        """Kill a function server at once (SIGKILL, its worker too), as a crash would."""
        process = self.servers[name].process
        if process is not None and process.poll() is None:
            _kill_group(process)
            process.wait()

    def restart(self, name: str) -> None:
        self.kill(name)
        self._wait_ready(self._spawn(self.servers[name]))

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> dict[str, int | None]:
        """Stop everything this stack started, by PID; returns each process's exit code.

        Every server gets SIGTERM at once; one still running ``grace`` s later (a request
        in flight, say a retrain fit) gets SIGKILL and is listed in ``killed``.
        """
        codes: dict[str, int | None] = {}
        self.stop_event.set()
        if self.client is not None:
            self.client.stop_event.set()
        self._stop_bus.set()
        for server in self.servers.values():
            if server.process is not None and server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        self.killed = []
        for name, server in self.servers.items():
            if server.process is None:
                continue
            try:
                codes[name] = server.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(server.process)
                codes[name] = server.process.wait()
                self.killed.append(name)
            _kill_group(server.process)  # a worker its master left behind, if any
        # With the servers gone, a request in flight fails at once.
        if self.client is not None:
            self.client.stop(5)
        if self._bus_thread is not None:
            self._bus_thread.join(5)
        if self.emulators is not None:
            self.emulators.stop()
            codes.update({f"emulator {e.name}": e.process.returncode for e in self.emulators.emulators
                          if e.process is not None})
        return codes

    # -- the predicting client's data -------------------------------------------------

    def _series(self) -> tuple[DatasetSpec, pd.DataFrame]:
        """The spec and its bundled series, read once."""
        from shared.core.dataset_spec import load_spec
        from shared.core.frames import read_dataset_csv

        assert self.settings
        if self._weather is None:
            spec = load_spec(self.settings.dataset_spec)
            self._weather = (spec, read_dataset_csv(spec.read_replay_data(), spec))
        return self._weather

    @staticmethod
    def _observation(spec: DatasetSpec, row: Any) -> dict[str, Any]:
        return {**{f: float(row[f]) for f in spec.feature_names}, "Timestamp": row["timestamp"].isoformat()}

    def example_observation(self) -> dict[str, Any]:
        """One real observation of the coming day (or the series' last), for the printed curl."""
        coming = self.next_observations()
        if coming is not None:
            return dict(coming["instances"][0])
        spec, frame = self._series()
        return self._observation(spec, frame.iloc[-1])

    def next_observations(self) -> dict[str, Any] | None:
        """Observations of the span after the stored data (weather as a forecast would give it),
        or None before data."""
        import numpy as np

        assert self.backends and self.settings
        cursor = self.backends.documents.get(names.CURSORS, self.settings.dataset_spec)
        if cursor is None:
            return None
        spec, frame = self._series()
        last = np.datetime64(cursor["last_timestamp"], "m")
        span = np.timedelta64(int(self.forecast_span.total_seconds() // 60), "m")
        ahead = frame[(frame["timestamp"] > last) & (frame["timestamp"] <= last + span)]
        if ahead.empty:
            return None
        rows = ahead.sample(min(12, len(ahead)), random_state=int(time.time() * 10) % 2**31)
        return {"instances": [self._observation(spec, r) for _, r in rows.iterrows()]}

    # -- a tick -----------------------------------------------------------------------

    def _wait(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            self._pause(0.1)

    def _post(self, url: str, body: dict[str, Any], timeout: float = 120) -> requests.Response:
        """POST on a helper thread, so that a stop interrupts the wait for the answer (Interrupted);
        the request itself ends when the servers stop."""
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def call() -> None:
            try:
                outcome["response"] = requests.post(url, json=body, timeout=timeout)
            except Exception as exc:  # raised again in the caller's thread
                outcome["error"] = exc
            finally:
                done.set()

        if self.stop_event.is_set():
            raise Interrupted("stopped")
        threading.Thread(target=call, name=f"post {url}", daemon=True).start()
        while not done.wait(0.1):
            if self.stop_event.is_set():
                raise Interrupted("stopped")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["response"]

    def production_versions(self) -> dict[str, str]:
        assert self.backends and self.settings
        pointers = Registry(self.settings, self.backends).production_pointers()
        return {target: pointer["version"] for target, pointer in pointers.items()}

    def serving_versions(self) -> dict[str, str]:
        try:
            health = requests.get(f"{self.servers['predict'].url}/health", timeout=5).json()
        except (requests.RequestException, ValueError):
            return {}
        return {t: v["version"] for t, v in health.get("targets", {}).items() if v.get("version")}

    def tick(self, number: int, window: str, timeout: float = 120) -> TickResult:
        """Collect one window and follow the chain until predict serves and monitor has run.

        Every wait ends with Interrupted as soon as ``stop_event`` is set."""
        assert self.backends and self.settings
        started = time.monotonic()
        before = self.production_versions()
        runs_before = {doc_id for doc_id, _ in self.backends.documents.query(where(names.MONITOR_RUNS))}
        response = self._post(self.servers["collect_data"].url, {"window": window})
        body = response.json()
        if response.status_code != 200:
            raise RuntimeError(f"collect_data answered {response.status_code}: {body}")
        result = TickResult(number, f"{body.get('start', '-')}..{body.get('end', '-')}", body.get("rows", 0),
                            body["status"], body.get("quality_score"))
        if body["status"] == "accepted":
            claim = self._wait(lambda: self._finished_claim(body["message_id"]), timeout,
                               f"retrain of {body['batch_id']}")
            result.decisions = self._decisions(claim)
            after = self.production_versions()
            if after != before:
                promoted_at = time.monotonic()
                self._wait(lambda: self.serving_versions() == after, float(self.settings.model_refresh_seconds) + 5,
                           "predict to serve the new versions")
                result.reload_seconds = round(time.monotonic() - promoted_at, 3)
                self._wait(lambda: self._new_runs(runs_before, "model-updated"), timeout, "monitor after model-updated")
        # monitor judges requests logged up to 2 flush periods + 1 s ago (PREDICTION_LOG_FLUSH_SECONDS=1).
        self._pause(3.2)
        self._post(self.servers["monitor"].url, {}).raise_for_status()
        # Alert changes of every monitor run in this tick: after model-updated and scheduled.
        for doc_id, run in self.backends.documents.query(where(names.MONITOR_RUNS)):
            if doc_id not in runs_before:
                for event in run.get("events", []):
                    result.alerts[event["event"]] = result.alerts.get(event["event"], 0) + 1
        result.seconds = round(time.monotonic() - started, 2)
        return result

    def _finished_claim(self, message_id: str) -> dict[str, Any] | None:
        assert self.backends
        claim = self.backends.documents.get(names.EVENT_CLAIMS, message_id)
        return claim if claim and claim.get("state") in ("done", "failed") else None

    def _new_runs(self, before: set[str], cause: str) -> bool:
        assert self.backends
        return any(doc_id not in before and doc.get("cause") == cause
                   for doc_id, doc in self.backends.documents.query(where(names.MONITOR_RUNS)))

    def _decisions(self, claim: dict[str, Any]) -> dict[str, dict[str, Any]]:
        assert self.backends
        decisions = {}
        for outcome in (claim.get("outcome") or {}).get("targets", []):
            record = self.backends.documents.get(names.MODELS, outcome["version"]) or {}
            metrics = ((record.get("metrics") or {}).get("served") or {})  # what the gates judge
            decisions[outcome["target"]] = {"version": outcome["version"], "decision": outcome["decision"],
                                            "mape": metrics.get("mape"),
                                            "naive_mape": (record.get("seasonal_naive") or {}).get("mape"),
                                            "reasons": outcome["reasons"]}
        return decisions

    def latest_report(self) -> str:
        """Where to open the latest monitor report."""
        assert self.backends and self.settings
        if not self.use_emulators:
            return str(self.state_dir / "blobs" / self.settings.bucket / "reports" / "latest.html")
        copy = self.state_dir / "latest-report.html"
        copy.write_bytes(self.backends.blobs.read(f"{names.REPORTS}latest.html"))
        return str(copy)


def _two(value: float | None) -> str:
    # Seasonal naive is not measurable on a holdout right after a week-long gap.
    return "-" if value is None else f"{value:.2f}"


def progress_line(result: TickResult) -> str:
    decisions = " ".join(
        f"{t} {d['decision'][:4]} {d['mape']:.2f}/{_two(d['naive_mape'])}" if d.get("mape") is not None
        else f"{t} {d['decision'][:4]}" for t, d in sorted(result.decisions.items())) or "-"
    alerts = ", ".join(f"{n} {e}" for e, n in sorted(result.alerts.items())) or "none"
    quality = f"{result.quality:.3f}" if result.quality is not None else "-"
    reload = f" reload {result.reload_seconds:.1f}s" if result.reload_seconds is not None else ""
    return (f"tick {result.tick:>2} | {result.window} | {result.rows:>5} rows | quality {quality} | "
            f"{result.status:<11} | MAPE/naive: {decisions} | alerts: {alerts}{reload} | {result.seconds:.1f}s")


def summary_table(results: list[TickResult], stack: LocalStack, wall: float) -> str:
    targets = sorted({t for r in results for t in r.decisions})
    head = ["tick", "window", "rows", "quality", *targets, "alerts"]
    rows = []
    for r in results:
        row = {"tick": r.tick, "window": r.window, "rows": r.rows,
               "quality": f"{r.quality:.3f}" if r.quality is not None else None,
               "alerts": ", ".join(f"{n} {e}" for e, n in sorted(r.alerts.items())) or "none"}
        for t in targets:
            d = r.decisions.get(t)
            row[t] = None if d is None else f"{d['decision']} {d['mape']:.2f}" if d.get("mape") is not None \
                else d["decision"]
        rows.append(row)
    lines = [format_table(rows, head)]
    client = stack.client
    served = stack.production_versions()
    lines += ["", f"production now: {', '.join(f'{t} {v}' for t, v in sorted(served.items())) or 'none'}",
              f"predict client: {client.ok} requests served, {len(client.failed)} failed" if client
              else "predict client: none ran (--no-client); predict saw only the requests sent to it",
              f"longest reload after a promotion: "
              f"{max((r.reload_seconds for r in results if r.reload_seconds is not None), default=0):.2f} s",
              f"scenario wall time: {wall:.1f} s",
              f"latest monitor report: {stack.latest_report()}"]
    return "\n".join(lines)


def run_scenario(stack: LocalStack, backfill: str, tick_window: str, ticks: int,
                 on_tick: Callable[[TickResult], None] | None = None,
                 stop: threading.Event | None = None) -> list[TickResult]:
    """The backfill (when the store is empty), then ``ticks`` windows.

    ``stop`` (default: the stack's ``stop_event``) ends it early, mid-tick included:
    the ticks finished so far are returned.
    """
    assert stack.backends and stack.settings
    stop = stop or stack.stop_event
    fresh = stack.backends.documents.get(names.CURSORS, stack.settings.dataset_spec) is None
    windows = ([backfill] if fresh else []) + [tick_window] * ticks
    # The client forecasts the span the next tick collects, so every tick's monitor run
    # joins the predictions of that span with their actuals.
    stack.forecast_span = parse_duration(tick_window)
    results = []
    for number, window in enumerate(windows):
        if stop.is_set():
            break
        try:
            result = stack.tick(number, window)
        except Interrupted:
            break
        results.append(result)
        if on_tick:
            on_tick(result)
    return results


def cli_command(stack: LocalStack) -> str:
    """The operator CLI line that reads this stack's state."""
    python = Path(sys.executable)
    shown = python.relative_to(Path.cwd()) if python.is_relative_to(Path.cwd()) else python
    env: dict[str, str] = {}
    if stack.use_emulators:
        env["BACKEND"] = "gcp"
        env.update({k: v for k, v in stack.environment().items()
                    if k.endswith("_EMULATOR_HOST") or k in ("GOOGLE_CLOUD_PROJECT", "BUCKET")})
    elif stack.state_dir.resolve() != DEFAULT_STATE.resolve():
        env["STATE_DIR"] = str(stack.state_dir.resolve())
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return f"{prefix + ' ' if prefix else ''}{shlex.quote(str(shown))} -m shared.cli status"


def start_block(stack: LocalStack) -> str:
    """What a user needs once the stack is up: URLs, state, backend, the CLI line, the client."""
    if stack.use_emulators:
        env = stack.environment()
        backend = ("gcp, on the emulators: Pub/Sub " + env.get("PUBSUB_EMULATOR_HOST", "?") + ", Firestore "
                   + env.get("FIRESTORE_EMULATOR_HOST", "?") + ", Cloud Storage "
                   + env.get("STORAGE_EMULATOR_HOST", "?"))
    else:
        backend = "embedded (SQLite documents and event bus, blobs in a directory)"
    client = ("a built-in client predicts the coming day every 50 ms" if stack.run_client
              else "none (--no-client): only your own requests reach predict")
    width = max(len(n) for n in stack.servers)
    lines = ["local stack up", *(f"  {n:<{width}}  {s.url}  (pid {s.process.pid if s.process else '-'}, "
                                 f"OMP_NUM_THREADS {stack.server_threads(n)})" for n, s in stack.servers.items()),
             f"  {'state':<{width}}  {stack.state_dir.resolve()} (function logs in logs/)",
             f"  {'backend':<{width}}  {backend}",
             f"  {'client':<{width}}  {client}",
             "operator CLI on this stack:", f"  {cli_command(stack)}"]
    return "\n".join(lines)


def parse_ports(text: str) -> dict[str, int]:
    """``collect_data=9001,retrain=9002`` -> {"collect_data": 9001, "retrain": 9002}."""
    ports = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in FUNCTIONS:
            raise argparse.ArgumentTypeError(f"{name!r} is not a function (one of {', '.join(DEFAULT_PORTS)})")
        ports[name] = _port(value)
    return ports


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (1-65535)")
    return port


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = ", ".join(f"{n} {p}" for n, p in DEFAULT_PORTS.items())
    parser = argparse.ArgumentParser(prog="./deploy.sh local", description=(
        "Run the four functions on 127.0.0.1 and replay the dataset spec's bundled series through them. "
        "By default the stored state is resumed (.state/local); --reset starts clean."),
        epilog=f"Ports: {defaults} by default. Every port is checked before anything starts; a taken one "
               "stops the stack at once with the process that holds it. Ctrl-C or SIGTERM stops everything "
               f"within a few seconds (SIGKILL after {STOP_GRACE_SECONDS:g} s for a server still busy).")
    parser.add_argument("--emulators", action="store_true",
                        help="Pub/Sub, Firestore and fake-gcs emulators with push subscriptions "
                             "(the production topology) instead of the embedded backends; always starts clean")
    parser.add_argument("--once", action="store_true", help="exit after the scenario (status 0 if it completed)")
    parser.add_argument("--reset", action="store_true", help="delete the stored state first")
    parser.add_argument("--no-client", action="store_true",
                        help="run no built-in predicting client: only your own requests reach predict")
    parser.add_argument("--backfill", default="P35D", help="first window when the store is empty (default P35D)")
    parser.add_argument("--tick-window", default="P7D", help="window of each further tick (default P7D)")
    parser.add_argument("--ticks", type=int, default=6, help="ticks after the backfill (default 6)")
    parser.add_argument("--base-port", type=_port, metavar="N",
                        help="ports N, N+1, N+2, N+3 for predict, collect_data, retrain, monitor "
                             f"(default {DEFAULT_PORTS['predict']})")
    parser.add_argument("--port", type=_port, help=f"predict's port (default {DEFAULT_PORTS['predict']})")
    parser.add_argument("--ports", type=parse_ports, default={}, metavar="NAME=PORT[,NAME=PORT...]",
                        help="any function's port, e.g. --ports collect_data=9001,monitor=9003")
    parser.add_argument("--state-dir", default=str(DEFAULT_STATE), help="embedded state (default .state/local)")
    args = parser.parse_args(argv)
    if args.port is not None and "predict" in args.ports and args.ports["predict"] != args.port:
        parser.error("--port and --ports predict=... disagree")
    if args.base_port is not None and args.base_port + len(DEFAULT_PORTS) - 1 > 65535:
        parser.error(f"--base-port {args.base_port}: the last port would be above 65535")
    return args


def chosen_ports(args: argparse.Namespace) -> dict[str, int]:
    """--base-port, then --port, then --ports, over DEFAULT_PORTS."""
    ports = dict(DEFAULT_PORTS)
    if args.base_port is not None:
        ports = {name: args.base_port + i for i, name in enumerate(DEFAULT_PORTS)}
    if args.port is not None:
        ports["predict"] = args.port
    return {**ports, **args.ports}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ports = chosen_ports(args)
    try:
        check_ports(ports)  # fail fast, before anything is created or started
    except StackError as exc:
        print(f"local stack: {exc}", file=sys.stderr, flush=True)
        return 2
    state = Path(args.state_dir)
    if args.emulators:
        state = state.with_name(state.name + "-emulators")
    stack = LocalStack(emulators=args.emulators, state_dir=state, ports=ports,
                       reset=args.reset or args.emulators, client=not args.no_client)
    started = time.monotonic()
    stop = stack.stop_event
    # Ctrl-C, SIGTERM and SIGHUP (the terminal closed) set the stop event, which every wait of the stack watches; set
    # explicitly because a process started in the background by a shell inherits SIGINT as ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    completed = False
    try:
        try:
            stack.start()
        except StackError as exc:
            print(f"local stack: {exc}", file=sys.stderr, flush=True)
            return 1
        except Interrupted:
            print("interrupted while starting", flush=True)
            return 130
        print(start_block(stack), flush=True)
        results = run_scenario(stack, args.backfill, args.tick_window, args.ticks,
                               lambda r: print(progress_line(r), flush=True))
        if stop.is_set():
            print(f"interrupted after {len(results)} tick(s); stopping", flush=True)
            return 130
        print("\n" + summary_table(results, stack, time.monotonic() - started), flush=True)
        completed = not (stack.client and stack.client.failed)
        if args.once:
            return 0 if completed else 1
        predict = stack.servers["predict"].url
        sample = json.dumps(stack.example_observation())
        print(f"\npredict keeps serving on {predict} — try:\n"
              f"  curl -X POST {predict}/predict -H 'Content-Type: application/json' "
              f"-d '{sample}'\n  curl {predict}/health\nCtrl-C stops everything.", flush=True)
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        codes = stack.stop()
        killed = f" (SIGKILL after {STOP_GRACE_SECONDS:g} s: {', '.join(stack.killed)})" if stack.killed else ""
        print(f"stopped: {', '.join(f'{n} exit {c}' for n, c in codes.items())}{killed}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
