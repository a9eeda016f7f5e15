"""Forecast accuracy as the system runs it, over the whole of 2017, in two protocols.

- **Walk-forward**: every week from 2017-01-29 (48 weeks), retrain on all data so far
  and forecast the next 7 days day-ahead (each day from actuals up to the end of the
  day before). Two models per week: the one retrain serves without a refit (trained
  up to a week before, the last week being its holdout) and the one refit on all data
  including that week; the benchmark says which wins. The 80 % intervals come from
  the served model's holdout errors (as retrain computes them) and their coverage is
  counted on the next week.
- **December holdout**: train January–November, forecast December (day-ahead).

Prints MAPE % per zone per protocol beside seasonal naive (same slot a week earlier).

    .venv/bin/python benchmarks/walk_forward.py [--weeks 48] [--no-twin] [--without calendar,location]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

FIRST_WEEK = np.datetime64("2017-01-29T00:00")
WEEK = np.timedelta64(7, "D")


def _setup(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from shared.core.dataset_spec import load_spec, parse_spec
    from shared.core.frames import read_dataset_csv
    from shared.retrain.training import TrainingConfig

    spec = load_spec("tetouan_power")
    raw = {k: v for k, v in spec.raw.items() if k not in set(args.without)}
    spec = parse_spec(raw)
    frame = read_dataset_csv(spec.read_replay_data(), spec)
    overrides: dict[str, Any] = {"twin": args.twin}
    if args.params:
        overrides["params"] = {**spec.section("training").get("params", {}), **json.loads(args.params)}
    return spec, frame, TrainingConfig.from_spec(spec, overrides)


def _mape(actual: np.ndarray, predicted: np.ndarray) -> tuple[float, int]:
    ok = np.isfinite(actual) & np.isfinite(predicted) & (actual != 0)
    return float(np.sum(np.abs((predicted[ok] - actual[ok]) / actual[ok]))), int(ok.sum())


def one_week(args: argparse.Namespace, start: np.datetime64) -> dict[str, Any]:
    """Both models of one week, every zone: sums of absolute percentage errors and coverage."""
    from shared.core.features import DAY_AHEAD
    from shared.core.intervals import coverage, fit_interval_table
    from shared.retrain.training import fit_members, members_to_train, prepare, rows, served_predictions

    spec, frame, config = _setup(args)
    frame = frame[frame["timestamp"] < (start + WEEK).astype("datetime64[ns]")]
    prepared = prepare(frame, spec, holdout_days=7)
    ts = prepared.timestamps
    members = [m for m in members_to_train(config) if m.startswith(DAY_AHEAD)]
    out: dict[str, Any] = {}
    week = ts >= start
    last_week = (ts >= start - WEEK) & ~week
    hours = (ts - ts.astype("datetime64[D]")).astype(np.int64) // 60
    for target in spec.target_names:
        y = prepared.targets[target]
        known = np.isfinite(y)
        result: dict[str, Any] = {}
        served_week = rows(prepared, target, week & known)
        served_last = rows(prepared, target, last_week & known)
        kept, _, _ = fit_members(prepared, target, config, (ts < start - WEEK) & known, members)
        refit, _, _ = fit_members(prepared, target, config, (ts < start) & known, members)
        table = fit_interval_table(hours[last_week & known], y[last_week & known],
                                   served_predictions(kept, served_last)[0])
        actual = y[week & known]
        for name, ensembles in (("holdout model", kept), ("refit", refit)):
            predicted, _ = served_predictions(ensembles, served_week)
            result[name] = _mape(actual, predicted)
            lo, hi = table.bounds(hours[week & known], predicted) if table else (predicted * np.nan,) * 2
            result[name + " coverage"] = coverage(actual, lo, hi)
        slots = prepared.actuals.slots(ts[week & known])
        result["seasonal naive"] = _mape(actual, prepared.actuals.lag(target, slots, 7 * prepared.slots_per_day))
        out[target] = result
    return out


def december(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from shared.retrain.training import fit_target, prepare

    spec, frame, config = _setup(args)
    prepared = prepare(frame, spec, holdout_days=30)  # 2017-12-01 00:00 .. 12-30 23:50
    result = {}
    for target in spec.target_names:
        fit = fit_target(prepared, target, config)
        result[target] = {"ours": fit.metrics["served"]["mape"], "seasonal naive": fit.naive["mape"],
                          **{f"{v} forced": m["mape"] for v, m in fit.metrics.items() if v != "served"}}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, default=48)
    parser.add_argument("--no-twin", dest="twin", action="store_false")
    parser.add_argument("--without", type=lambda s: [x for x in s.split(",") if x], default=[],
                        help="spec sections to leave out (calendar, location)")
    parser.add_argument("--params", default="", help="JSON merged over the spec's estimator params")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--skip-december", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one fit per worker process
    started = time.perf_counter()
    starts = [FIRST_WEEK + k * WEEK for k in range(args.weeks)]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        weeks = list(pool.map(one_week, [args] * len(starts), starts))
        dec = pool.submit(december, args).result() if not args.skip_december else None
    zones = list(weeks[0])
    print(f"walk-forward: {args.weeks} weeks from {FIRST_WEEK.astype('datetime64[D]')}, "
          f"twin {'on' if args.twin else 'off'}, without {args.without or 'nothing'}")
    print(f"{'MAPE %':28}" + "".join(f"{z:>9}" for z in zones))
    for name in ("seasonal naive", "holdout model", "refit"):
        figures = []
        for z in zones:
            total = sum(w[z][name][0] for w in weeks)
            count = sum(w[z][name][1] for w in weeks)
            figures.append(100 * total / count)
        print(f"  {name:26}" + "".join(f"{f:9.2f}" for f in figures))
    for name in ("holdout model coverage", "refit coverage"):
        cells = [sum(w[z][name][0] for w in weeks) / max(1, sum(w[z][name][1] for w in weeks)) for z in zones]
        print(f"  80 % interval, {name.split(' coverage')[0]:11}" + "".join(f"{100 * c:8.1f}%" for c in cells))
    if dec:
        print("December holdout (train January-November):")
        for name in dec[zones[0]]:
            print(f"  {name:26}" + "".join(f"{dec[z][name]:9.2f}" for z in zones))
    print(f"took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
