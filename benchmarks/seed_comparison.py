"""Benchmark: predict beside a service built the way the seed project built its own.

The seed served one target with FastAPI 0.104.1 under uvicorn and a scikit-learn
RandomForestRegressor (100 trees, random_state 42, 80 % of the rows) on the weather
and seven calendar fields, one DataFrame per request. This rebuilds it (in its own
virtual environment under ``~/.cache/forecast-bench``, pinned, outside the project's),
then runs the same load (``predict_bench.load``: wrk when installed) against it, against
predict at one worker (THREADS=1 and the framework's default), and against it again, one
after the other on 127.0.0.1, and prints the ratios against the seed's better run.
Asserts nothing.

    .venv/bin/python benchmarks/seed_comparison.py [--clients 8] [--seconds 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "forecast-bench"
SEED_PACKAGES = ["fastapi==0.104.1", "uvicorn==0.24.0.post1", "pydantic==2.5.3", "scikit-learn==1.9.1",
                 "pandas==3.1.1", "numpy==2.4.6"]
SEED_FEATURES = ["Temperature", "Humidity", "WindSpeed", "GeneralDiffuseFlows", "DiffuseFlows",
                 "Day", "Month", "Hour", "Minute", "DayWeek", "QuarterYear", "DayYear"]

TRAIN = """
import sys, joblib, pandas as pd
from sklearn.ensemble import RandomForestRegressor
data, out = sys.argv[1], sys.argv[2]
frame = pd.read_csv(data)
ts = pd.to_datetime(frame["DateTime"], format="%m/%d/%Y %H:%M")
frame = frame.rename(columns={"Wind Speed": "WindSpeed", "general diffuse flows": "GeneralDiffuseFlows",
                              "diffuse flows": "DiffuseFlows"})
frame["Day"], frame["Month"], frame["Hour"], frame["Minute"] = ts.dt.day, ts.dt.month, ts.dt.hour, ts.dt.minute
frame["DayWeek"], frame["QuarterYear"], frame["DayYear"] = ts.dt.day_of_week + 1, ts.dt.quarter, ts.dt.day_of_year
train = frame.sample(frac=0.8, random_state=42)
model = RandomForestRegressor(n_estimators=100, random_state=42, n_jobs=-1)
model.fit(train[FEATURES], train["Zone 2  Power Consumption"])
model.n_jobs = None  # served as the seed served it: one thread per prediction
joblib.dump(model, out)
"""

APP = """
import datetime, joblib, pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI(title="seed-style power forecast")
model = joblib.load(MODEL)


class Observation(BaseModel):
    Temperature: float
    Humidity: float
    WindSpeed: float
    GeneralDiffuseFlows: float
    DiffuseFlows: float
    Timestamp: datetime.datetime


@app.post("/predict")
def predict(obs: Observation):
    ts = obs.Timestamp
    features = {"Temperature": obs.Temperature, "Humidity": obs.Humidity, "WindSpeed": obs.WindSpeed,
                "GeneralDiffuseFlows": obs.GeneralDiffuseFlows, "DiffuseFlows": obs.DiffuseFlows,
                "Day": ts.day, "Month": ts.month, "Hour": ts.hour, "Minute": ts.minute,
                "DayWeek": ts.isoweekday(), "QuarterYear": (ts.month - 1) // 3 + 1,
                "DayYear": ts.timetuple().tm_yday}
    value = float(model.predict(pd.DataFrame([features])[FEATURES])[0])
    return {"predicted_power_consumption_zone2": round(value, 2), "model_version": "3.0.0",
            "prediction_timestamp": datetime.datetime.now().isoformat(), "input_features": features}
"""


def seed_environment() -> Path:
    """The seed-style service's own virtual environment and model, built once."""
    venv = CACHE / "seed-venv"
    python = venv / "bin" / "python"
    marker = venv / ".packages"
    if not python.exists() or marker.read_text(encoding="utf-8") != "\n".join(SEED_PACKAGES):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        *SEED_PACKAGES], check=True)
        marker.write_text("\n".join(SEED_PACKAGES), encoding="utf-8")
    model = CACHE / "seed-model.joblib"
    if not model.exists():
        print("training the seed-style random forest (once)...", flush=True)
        script = f"FEATURES = {SEED_FEATURES!r}\n{TRAIN}"
        subprocess.run([str(python), "-c", script, str(ROOT.parent / "shared" / "data" / "tetouan_power_2017.csv"),
                        str(model)], check=True)
    (CACHE / "seed_app.py").write_text(f"MODEL = {str(model)!r}\nFEATURES = {SEED_FEATURES!r}\n{APP}",
                                       encoding="utf-8")
    return python


def start_seed(python: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [str(python), "-m", "uvicorn", "seed_app:app", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--log-level", "warning"],
        cwd=CACHE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    from benchmarks.predict_bench import OBS, post

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            status, _ = post(conn, "/predict", json.dumps(OBS).encode())
            conn.close()
            if status == 200:
                return process
        except OSError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError("the seed-style service did not start")


def figures(line: str) -> tuple[float, float]:
    """(requests/s, p99 ms) from a predict_bench load line."""
    rate = re.search(r"([\d.]+) requests/s", line)
    p99 = re.search(r"p99 ([\d.]+) ms", line)
    assert rate and p99, line
    return float(rate.group(1)), float(p99.group(1))


def main() -> None:
    from benchmarks.predict_bench import load, prepare_state, start_server
    from tools.emulators import free_port, stop_process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    python = seed_environment()

    def seed_run() -> str:
        port = free_port()
        seed = start_seed(python, port)
        try:
            return load(port, args.clients, args.seconds)
        finally:
            stop_process(seed, 15)

    seed_lines = [seed_run()]
    print(f"seed-style (FastAPI 0.104.1, uvicorn, 1 worker, random forest of 100 trees): {seed_lines[0]}", flush=True)
    ours = {}
    with tempfile.TemporaryDirectory() as state:
        prepare_state(state)
        # Terraform's choice at one vCPU, then functions-framework's own default (4 per core).
        for threads, name in ((1, "THREADS=1"), (0, f"THREADS unset ({4 * (os.cpu_count() or 1)})")):
            port = free_port()
            process, _ = start_server(port, workers=1, threads=threads)
            try:
                ours[name] = load(port, args.clients, args.seconds)
            finally:
                stop_process(process, 15)
            print(f"predict (functions-framework, 1 worker, {name}, three targets): {ours[name]}", flush=True)
    seed_lines.append(seed_run())
    print(f"seed-style again: {seed_lines[1]}")
    # Against the seed's better run: the ratios hold whichever way the machine drifted.
    seed_rate, seed_p99 = max(figures(line)[0] for line in seed_lines), min(figures(line)[1] for line in seed_lines)
    for name, line in ours.items():
        rate, p99 = figures(line)
        print(f"ratio, {name}: {rate / seed_rate:.1f}x the throughput, {p99 / seed_p99:.3f}x the p99 "
              f"(target: >= 10x and <= 0.1x)")


if __name__ == "__main__":
    main()
