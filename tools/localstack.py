"""The whole system on one machine, wired as in Google Cloud, replaying the spec's bundled series.

Each function runs in its own functions-framework server on 127.0.0.1. With the
embedded backends (default) the SQLite event bus pushes the same CloudEvents to
them from this process; with ``--emulators`` the Pub/Sub, Firestore and
fake-gcs emulators run instead, with Pub/Sub push subscriptions (retry policy,
dead-letter topic) to the servers — the production topology.

A tick collects a window (collect_data over HTTP), then follows the chain:
data-ready -> retrain -> model-updated -> predict reloads and monitor runs; a
client keeps predicting the coming days all along. ``./deploy.sh local --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
from tools.emulators import EmulatorStack, free_port, wait_for_port

FUNCTIONS = {"collect_data": "http", "retrain": "cloudevent", "predict": "http", "monitor": "http"}
SUBSCRIPTIONS = (("retrain", "data_ready"), ("predict", "model_updated"), ("monitor", "model_updated"))
DEFAULT_STATE = ROOT / ".state" / "local"


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
    """Keeps asking predict for the coming day, as a caller with weather forecasts would."""

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

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


class LocalStack:
    """Start, wire, drive and stop the local system."""

    def __init__(self, emulators: bool = False, state_dir: Path = DEFAULT_STATE, predict_port: int = 8080,
                 reset: bool = False, env: dict[str, str] | None = None, log: Callable[[str], None] = print) -> None:
        self.use_emulators = emulators
        self.state_dir = Path(state_dir)
        self.predict_port = predict_port
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
        if self.reset and self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        if self.use_emulators:
            self.log("starting the Pub/Sub, Firestore and Cloud Storage emulators...")
            self.emulators = EmulatorStack("local-project", log_path=self.state_dir / "logs" / "emulators.log")
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
            port = self.predict_port if name == "predict" else free_port()
            self.servers[name] = self._spawn(Server(name, port))
        for name in FUNCTIONS:
            self._wait_ready(self.servers[name])
        self._subscribe()
        if not self.use_emulators:
            assert isinstance(self.backends.events, LocalEventBus)
            self._bus_thread = threading.Thread(target=self.backends.events.run, args=(self._stop_bus,),
                                                name="event-bus", daemon=True)
            self._bus_thread.start()
        self.client = PredictClient(self.servers["predict"].url, self)
        self.client.start()

    def _spawn(self, server: Server) -> Server:
        env = {**os.environ, **self.environment(), "PYTHONPATH": str(ROOT)}
        if server.name == "predict":
            env.update(WORKERS="1", THREADS="8")
        # The server keeps its own copy of the descriptor; ours closes once it has started.
        with open(self.state_dir / "logs" / f"{server.name}.log", "ab") as log:
            server.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "functions-framework"), "--target", server.name,
                 "--source", str(ROOT / "functions" / server.name / "main.py"), "--signature-type",
                 FUNCTIONS[server.name], "--host", "127.0.0.1", "--port", str(server.port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
        return server

    def _wait_ready(self, server: Server, timeout: float = 60) -> None:
        if server.process is None or not wait_for_port(server.port, server.process, timeout):
            raise RuntimeError(f"{server.name} did not start; see {self.state_dir / 'logs' / server.name}.log")

    def _subscribe(self) -> None:
        assert self.settings and self.backends
        for function, topic_attr in SUBSCRIPTIONS:
            topic = getattr(self.settings, f"topic_{topic_attr}")
            self.backends.events.ensure_push_subscription(PushSubscription(
                f"{function}-{topic}", topic,
                f"{self.servers[function].url}/projects/{self.settings.project}/topics/{topic}"))

    def kill(self, name: str) -> None:
        """Kill a function server at once (SIGKILL), as a crash would."""
        process = self.servers[name].process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self, name: str) -> None:
        self.kill(name)
        self._wait_ready(self._spawn(self.servers[name]))

    def stop(self) -> dict[str, int | None]:
        """Stop everything this stack started, by PID; returns each process's exit code."""
        codes: dict[str, int | None] = {}
        if self.client is not None:
            self.client.stop()
        self._stop_bus.set()
        if self._bus_thread is not None:
            self._bus_thread.join(10)
        for server in self.servers.values():
            if server.process is not None and server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        for name, server in self.servers.items():
            if server.process is None:
                continue
            try:
                codes[name] = server.process.wait(15)
            except subprocess.TimeoutExpired:
                server.process.kill()
                codes[name] = server.process.wait()
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
        """The next day's observations (weather as a forecast would give it), or None before data."""
        import numpy as np

        assert self.backends and self.settings
        cursor = self.backends.documents.get(names.CURSORS, self.settings.dataset_spec)
        if cursor is None:
            return None
        spec, frame = self._series()
        last = np.datetime64(cursor["last_timestamp"], "m")
        ahead = frame[(frame["timestamp"] > last) & (frame["timestamp"] <= last + np.timedelta64(1, "D"))]
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
            time.sleep(0.1)

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
        """Collect one window and follow the chain until predict serves and monitor has run."""
        assert self.backends and self.settings
        started = time.monotonic()
        before = self.production_versions()
        runs_before = {doc_id for doc_id, _ in self.backends.documents.query(where(names.MONITOR_RUNS))}
        response = requests.post(self.servers["collect_data"].url, json={"window": window}, timeout=120)
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
        time.sleep(1.2)  # let predict flush its request log (PREDICTION_LOG_FLUSH_SECONDS=1)
        requests.post(self.servers["monitor"].url, json={}, timeout=120).raise_for_status()
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


def progress_line(result: TickResult) -> str:
    decisions = " ".join(
        f"{t} {d['decision'][:4]} {d['mape']:.2f}/{d['naive_mape']:.2f}" if d.get("mape") is not None
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
              f"predict client: {client.ok if client else 0} requests served, "
              f"{len(client.failed) if client else 0} failed",
              f"longest reload after a promotion: "
              f"{max((r.reload_seconds for r in results if r.reload_seconds is not None), default=0):.2f} s",
              f"scenario wall time: {wall:.1f} s",
              f"latest monitor report: {stack.latest_report()}"]
    return "\n".join(lines)


def run_scenario(stack: LocalStack, backfill: str, tick_window: str, ticks: int,
                 on_tick: Callable[[TickResult], None] | None = None,
                 stop: threading.Event | None = None) -> list[TickResult]:
    """The backfill (when the store is empty), then ``ticks`` windows; ``stop`` ends it early."""
    assert stack.backends and stack.settings
    fresh = stack.backends.documents.get(names.CURSORS, stack.settings.dataset_spec) is None
    windows = ([backfill] if fresh else []) + [tick_window] * ticks
    results = []
    for number, window in enumerate(windows):
        if stop is not None and stop.is_set():
            break
        result = stack.tick(number, window)
        results.append(result)
        if on_tick:
            on_tick(result)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="./deploy.sh local", description=(
        "Run the four functions on 127.0.0.1 and replay the dataset spec's bundled series through them. "
        "By default the stored state is resumed (.state/local); --reset starts clean."))
    parser.add_argument("--emulators", action="store_true",
                        help="Pub/Sub, Firestore and fake-gcs emulators with push subscriptions "
                             "(the production topology) instead of the embedded backends; always starts clean")
    parser.add_argument("--once", action="store_true", help="exit after the scenario (status 0 if it completed)")
    parser.add_argument("--reset", action="store_true", help="delete the stored state first")
    parser.add_argument("--backfill", default="P35D", help="first window when the store is empty (default P35D)")
    parser.add_argument("--tick-window", default="P7D", help="window of each further tick (default P7D)")
    parser.add_argument("--ticks", type=int, default=6, help="ticks after the backfill (default 6)")
    parser.add_argument("--port", type=int, default=8080, help="predict's port (default 8080)")
    parser.add_argument("--state-dir", default=str(DEFAULT_STATE), help="embedded state (default .state/local)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state = Path(args.state_dir)
    if args.emulators:
        state = state.with_name(state.name + "-emulators")
    stack = LocalStack(emulators=args.emulators, state_dir=state, predict_port=args.port,
                       reset=args.reset or args.emulators)
    started = time.monotonic()
    stop = threading.Event()
    # Ctrl-C and SIGTERM both end the serving wait; set explicitly because a process
    # started in the background by a shell inherits SIGINT as ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    completed = False
    try:
        stack.start()
        print("functions up: " + ", ".join(f"{n} {s.url}" for n, s in stack.servers.items())
              + f"; backend {'emulators' if args.emulators else 'embedded'}; logs in {state / 'logs'}", flush=True)
        results = run_scenario(stack, args.backfill, args.tick_window, args.ticks,
                               lambda r: print(progress_line(r), flush=True), stop)
        if stop.is_set():
            print("interrupted", flush=True)
            return 130
        print("\n" + summary_table(results, stack, time.monotonic() - started), flush=True)
        completed = not (stack.client and stack.client.failed)
        if args.once:
            return 0 if completed else 1
        sample = json.dumps(stack.example_observation())
        print(f"\npredict keeps serving on http://127.0.0.1:{args.port} — try:\n"
              f"  curl -X POST http://127.0.0.1:{args.port}/predict -H 'Content-Type: application/json' "
              f"-d '{sample}'\n  curl http://127.0.0.1:{args.port}/health\nCtrl-C stops everything.", flush=True)
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        codes = stack.stop()
        print(f"stopped: {', '.join(f'{n} exit {c}' for n, c in codes.items())}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
