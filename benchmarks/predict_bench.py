"""Benchmark: predict under functions-framework on 127.0.0.1 (embedded backend).

Prints: artifact sizes; cold start (process start to first prediction); the
10,000-row batch (in-process core, and end-to-end HTTP in both response
formats); load runs of single observations over 8 keep-alive connections (wrk
when installed, ``apt-get install wrk``; else Python clients, which take CPU from
the server) at one worker per core and at one worker with THREADS=1 and with the
framework's default threads (requests/s, p50/p90/p99, failures), beside the bare
framework's ceiling (a trivial handler at one worker); and the server's RSS after
the load and at its peak under legal maximum batches sent concurrently. Bounded in
time; stops everything it starts.

    .venv/bin/python benchmarks/predict_bench.py [--clients 8] [--seconds 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

OBS = {"Temperature": 12.5, "Humidity": 65.3, "WindSpeed": 0.08, "GeneralDiffuseFlows": 180.5,
       "DiffuseFlows": 95.1, "Timestamp": "2017-02-04T14:30:00"}


def prepare_state(state: str) -> dict[str, int | None]:
    """Collect five weeks and train, so predict has models and actuals."""
    os.environ.update({"STATE_DIR": state, "LOG_LEVEL": "WARNING"})
    from shared.collect.service import Collector
    from shared.collect.sources import ReplaySource, SourceConfig
    from shared.core.dataset_spec import load_spec
    from shared.core.registry import Registry
    from shared.platform import runtime
    from shared.retrain.service import Retrainer

    settings, backends = runtime.start()
    spec = load_spec(settings.dataset_spec)
    batch = Collector(settings, backends, spec, {"replay": ReplaySource(
        SourceConfig("replay", "replay"), spec)}).collect_source("replay", timedelta(days=35), None)
    Retrainer(settings, backends, spec).retrain({"batch_id": batch["batch_id"]})
    registry = Registry(settings, backends)
    sizes = {}
    for target in spec.target_names:
        pointer = registry.production(target)
        version = registry.get(pointer["version"]) if pointer else None
        sizes[target] = version["size_bytes"] if version else None
    return sizes


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


def server_env(workers: int | None = None, threads: int | None = None) -> dict[str, str]:
    """One gunicorn worker per core and 4 threads each unless told (functions-framework reads
    WORKERS and THREADS); ``threads=0`` leaves THREADS unset: the framework's own default,
    4 per core."""
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "WORKERS": str(workers) if workers else os.environ.get("WORKERS", str(os.cpu_count() or 1)),
           "THREADS": str(threads) if threads else os.environ.get("THREADS", "4")}
    if threads == 0:
        env.pop("THREADS")
    return env


def start_server(port: int, workers: int | None = None, source: Path = ROOT / "functions/predict/main.py",
                 target: str = "predict", threads: int | None = None) -> tuple[subprocess.Popen, float]:
    """Start a function; returns the process and the seconds until its first 200 to OBS."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "functions-framework"), "--target", target, "--source",
         str(source), "--host", "127.0.0.1", "--port", str(port)],
        env=server_env(workers, threads), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL)
    body = json.dumps(OBS).encode()
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            status, _ = post(conn, "/predict", body)
            conn.close()
            if status == 200:
                return process, time.perf_counter() - started
        except OSError:
            pass
        if process.poll() is not None or time.perf_counter() - started > 60:
            raise RuntimeError(f"{target} did not start")
        time.sleep(0.01)


# The framework's own ceiling: a handler that parses the body and answers a small JSON object.
BARE_HANDLER = """import functions_framework

@functions_framework.http
def bare(request):
    request.get_json()
    return {"predictions": [{"zone1": 1.0}]}
"""


def rss_mb(pid: int) -> float:
    """Resident memory of the server and its workers (gunicorn forks one)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    total = 0
    for p in [pid, *map(int, children)]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def client(args: tuple[int, float]) -> tuple[list[float], int]:
    port, seconds = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps(OBS).encode()
    latencies, failures = [], 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        try:
            status, _ = post(conn, "/predict", body)
        except OSError:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            status = 0
        latencies.append(time.perf_counter() - t0)
        failures += status != 200
    return latencies, failures


def batch_bodies(n: int) -> dict[str, bytes]:
    instances = [{**OBS, "Timestamp": f"2017-02-{1 + i % 4:02d}T{i % 24:02d}:{(i * 10) % 60:02d}:00"}
                 for i in range(n)]
    return {fmt: json.dumps({"instances": instances, "format": fmt}).encode()
            for fmt in ("instances", "columns")}


def core_batch_ms(bodies: dict[str, bytes], repeats: int) -> dict[str, float]:
    """validate + features + model + response, in process, no HTTP."""
    from shared.core.dataset_spec import load_spec
    from shared.platform import runtime
    from shared.predict.api import parse_request, response
    from shared.predict.service import PredictService
    from shared.predict.serving import predict

    settings, backends = runtime.start()
    service = PredictService(settings, backends, load_spec(settings.dataset_spec))
    service.check_now()
    snapshot = service.models.snapshot
    body = json.loads(bodies["columns"])
    out = {}
    for threads in (1, service.threads):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            request = parse_request(body, service.spec, 10000, list(snapshot.order))
            result = predict(snapshot, service.actuals.snapshot.actuals, service.context,
                             request.timestamps, request.weather, request.targets, threads)
            response(request, result, {t: m.version for t, m in snapshot.models.items()}, service.spec)
            times.append((time.perf_counter() - t0) * 1000)
        out[f"core, {threads} thread(s)"] = statistics.median(times)
    service.log.close()
    return out


def main() -> None:
    from tools.emulators import free_port, stop_process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cold-starts", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        sizes = prepare_state(state)
        env = server_env()
        print(f"functions-framework with WORKERS={env['WORKERS']} THREADS={env['THREADS']} "
              f"on {os.cpu_count()} cores; load from {'wrk' if shutil.which('wrk') else 'Python clients'} "
              "on the same machine")
        print("artifact size (model.npz, both variants):",
              ", ".join(f"{t} {b / 1024:.1f} KiB" if b else f"{t} (no production model)"
                        for t, b in sizes.items()))
        colds = []
        for _ in range(args.cold_starts):
            process, seconds = start_server(free_port())
            colds.append(seconds)
            stop_process(process, 15)
        print(f"cold start, process start to first prediction: median {statistics.median(colds):.2f} s "
              f"(runs: {', '.join(f'{c:.2f}' for c in colds)})")

        bodies = batch_bodies(10000)
        for name, ms in core_batch_ms(bodies, 7).items():
            print(f"10,000-row batch, {name}: {ms:.1f} ms")
        port = free_port()
        process, _ = start_server(port)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for fmt, body in bodies.items():
                times = []
                for _ in range(7):
                    t0 = time.perf_counter()
                    status, _ = post(conn, "/predict", body)
                    assert status == 200
                    times.append((time.perf_counter() - t0) * 1000)
                print(f"10,000-row batch, end to end over HTTP, format {fmt}: median "
                      f"{statistics.median(times):.1f} ms ({len(body) / 1e6:.2f} MB request)")
            conn.close()
            print(f"load, {env['WORKERS']} workers: {load(port, args.clients, args.seconds)}")
            print(f"server RSS after load: {rss_mb(process.pid):.0f} MB")
            print(f"server RSS under {args.clients} concurrent 10,000-row batches, 3 each: "
                  f"peak {peak_rss_under_batches(process.pid, port, bodies['instances'], args.clients):.0f} MB")
        finally:
            stop_process(process, 15)
        # Terraform's choice at one vCPU, then functions-framework's own default (4 per core).
        for threads, name in ((1, "THREADS=1"), (0, f"THREADS unset ({4 * (os.cpu_count() or 1)})")):
            port = free_port()
            process, _ = start_server(port, workers=1, threads=threads)
            try:
                print(f"load, 1 worker, {name}: {load(port, args.clients, args.seconds)}")
            finally:
                stop_process(process, 15)
    with tempfile.TemporaryDirectory() as bare:
        source = Path(bare) / "main.py"
        source.write_text(BARE_HANDLER)
        for threads, name in ((1, "THREADS=1"), (0, "THREADS unset")):
            port = free_port()
            process, _ = start_server(port, workers=1, source=source, target="bare", threads=threads)
            try:
                print(f"load, 1 worker, {name}, bare framework (trivial handler): "
                      f"{load(port, args.clients, args.seconds)}")
            finally:
                stop_process(process, 15)


def load(port: int, clients: int, seconds: float) -> str:
    """Single observations from ``clients`` concurrent keep-alive connections for ``seconds``.

    With wrk when it is installed (``apt-get install wrk``): written in C, it leaves this
    2-core machine's CPU to the server. Otherwise with Python client processes, which
    take a good share of it, so their figures are lower.
    """
    if shutil.which("wrk"):
        return _load_wrk(port, clients, seconds)
    with multiprocessing.Pool(clients) as pool:
        client((port, 1.0))  # warm-up
        results = pool.map(client, [(port, seconds)] * clients)
    latencies = sorted(x for lat, _ in results for x in lat)
    failures = sum(f for _, f in results)
    q = statistics.quantiles(latencies, n=100)
    return (f"{clients} concurrent clients (Python), {seconds:.0f} s, single observations: "
            f"{len(latencies) / seconds:.0f} requests/s, p50 {q[49] * 1000:.1f} ms, "
            f"p90 {q[89] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms, failures {failures}")


WRK_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _load_wrk(port: int, clients: int, seconds: float) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                     f"wrk.body = [[{json.dumps(OBS)}]]\n")
        script.flush()
        url = f"http://127.0.0.1:{port}/predict"

        def run(duration: float) -> str:
            return subprocess.run(["wrk", "-t2", f"-c{clients}", f"-d{duration:.0f}s", "--latency", "-s",
                                   script.name, url], capture_output=True, text=True, check=True).stdout

        run(1)  # warm-up
        out = run(seconds)
    latency = {m.group(1): float(m.group(2)) * WRK_UNITS_MS[m.group(3)]
               for m in re.finditer(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s|m)$", out, re.M)}
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    assert rate and len(latency) == 3, out
    failures = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, errors.groups())) if errors else 0)
    return (f"{clients} connections (wrk), {seconds:.0f} s, single observations: "
            f"{float(rate.group(1)):.0f} requests/s, p50 {latency['50']:.1f} ms, "
            f"p90 {latency['90']:.1f} ms, p99 {latency['99']:.1f} ms, failures {failures}")


def _send_batches(args: tuple[int, bytes, int]) -> int:
    port, body, count = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    failures = sum(post(conn, "/predict", body)[0] != 200 for _ in range(count))
    conn.close()
    return failures


def peak_rss_under_batches(pid: int, port: int, body: bytes, clients: int) -> float:
    """The server's peak RSS, sampled every 50 ms, while ``clients`` send 3 maximum batches each."""
    peak = rss_mb(pid)
    with multiprocessing.Pool(clients) as pool:
        pending = pool.map_async(_send_batches, [(port, body, 3)] * clients)
        while not pending.ready():
            peak = max(peak, rss_mb(pid))
            time.sleep(0.05)
        assert sum(pending.get()) == 0, "a maximum batch failed"
    return max(peak, rss_mb(pid))


if __name__ == "__main__":
    main()
