"""Both sides of the monitor's input checks, on every week of 2017 served with its real weather.

Each week from 2017-01-29 (48 weeks) is served day by day, as the local stack
serves it: callers send the day's real weather, the day's actuals arrive, one
monitor run judges the day. The serving model's training range is the one a
daily retrain has: every row before the day less the holdout week. A week has a
false alert when any condition fires on any of its seven runs, from the
requests' checks (range, stuck, skew) or the collected rows' (range, stuck;
targets too).

Faults are injected into the requests of the fourth and fifth day of each week:
a +5 °C temperature offset, each sensor stuck at its last value, each sensor at
0, humidity as a fraction instead of %, wind in km/h. For each it prints how
often the first run of the fault fires, the runs until detection, whether the
alert stays open on the fault's second day, and whether it resolves on the first
run after the fault stops. "no actuals yet" is the first run's detection from
range and stuck alone, as in production when the callers' requests are judged
before the actuals of their timestamps are collected.

For comparison, "before" is the previous design: PSI/KS of the day's inputs
against a uniform sample of the training rows.

    .venv/bin/python benchmarks/monitor_detectors.py
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shared.core.dataset_spec import TIMESTAMP, load_spec
from shared.core.frames import read_dataset_csv
from shared.monitor import input_checks as checks
from shared.monitor.alert_rules import input_conditions
from shared.monitor.drift import feature_drift
from shared.platform.settings import Thresholds

FIRST_WEEK = np.datetime64("2017-01-29")
WEEKS = 48
HOLDOUT_DAYS = 7
FAULT_DAYS = (3, 4)  # the fault's two days in each week; day 5 is the first after it
Fault = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def _set(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Fault:
    return lambda day: {**day, name: fn(day[name])}


def faults(features: list[str]) -> dict[str, Fault]:
    out: dict[str, Fault] = {"Temperature +5 degC": _set("Temperature", lambda v: v + 5)}
    for f in features:
        out[f"{f} stuck"] = _set(f, lambda v: np.full_like(v, v[0]))
    for f in features:
        out[f"{f} at 0"] = _set(f, np.zeros_like)
    out["all sensors at 0"] = lambda day: {f: np.zeros_like(v) for f, v in day.items()}
    out["Humidity as a fraction"] = _set("Humidity", lambda v: v / 100)
    out["WindSpeed in km/h"] = _set("WindSpeed", lambda v: v * 3.6)
    return out


@dataclass
class Series:
    days: np.ndarray
    columns: dict[str, np.ndarray]

    def day(self, day: np.datetime64, names: list[str]) -> dict[str, np.ndarray]:
        rows = self.days == day
        return {n: self.columns[n][rows] for n in names}

    def training_range(self, day: np.datetime64, name: str) -> tuple[float, float]:
        values = self.columns[name][self.days < day - np.timedelta64(HOLDOUT_DAYS, "D")]
        return float(values.min()), float(values.max())


def request_checks(served: dict[str, np.ndarray], observed: dict[str, np.ndarray] | None, series: Series,
                   day: np.datetime64, t: Thresholds) -> list[checks.InputCheck]:
    """The requests' checks; ``observed`` None: before the actuals arrive (no skew)."""
    found = []
    for f, values in served.items():
        found += [checks.range_check(checks.REQUESTS, f, values, series.training_range(day, f), t),
                  checks.stuck_check(checks.REQUESTS, f, values, t),
                  checks.skew_check(f, values, observed[f], t) if observed is not None else None]
    return [c for c in found if c]


def firing(source: str, found: list[checks.InputCheck], t: Thresholds) -> list[str]:
    return [c.key for c in input_conditions(source, found, t, None) if c.firing]


def request_conditions(served: dict[str, np.ndarray], observed: dict[str, np.ndarray] | None, series: Series,
                       day: np.datetime64, t: Thresholds) -> list[str]:
    return firing(checks.REQUESTS, request_checks(served, observed, series, day, t), t)


def collected_checks(series: Series, day: np.datetime64, names: list[str], t: Thresholds) -> list[checks.InputCheck]:
    rows = series.day(day, names)
    found = []
    for n in names:
        found += [checks.range_check(checks.COLLECTED, n, rows[n], series.training_range(day, n), t),
                  checks.stuck_check(checks.COLLECTED, n, rows[n], t)]
    return [c for c in found if c]


def before_fires(series: Series, day: np.datetime64, features: list[str], t: Thresholds,
                 rng: np.random.Generator) -> bool:
    train = series.days < day - np.timedelta64(HOLDOUT_DAYS, "D")
    pick = rng.choice(int(train.sum()), size=min(4000, int(train.sum())), replace=False)
    served = series.day(day, features)
    for f in features:
        d = feature_drift(f, series.columns[f][train][pick], served[f], t.psi_warn, t.psi_alert, t.ks_pvalue,
                          t.ks_effect)
        if d is not None and d.drifted:
            return True
    return False


def main() -> None:
    spec = load_spec("tetouan_power")
    frame = read_dataset_csv(spec.read_replay_data(), spec)
    features, targets = list(spec.feature_names), list(spec.target_names)
    series = Series(frame[TIMESTAMP].to_numpy().astype("datetime64[D]"),
                    {n: frame[n].to_numpy(float) for n in [*features, *targets]})
    t = Thresholds()
    rng = np.random.default_rng(0)
    weeks = [FIRST_WEEK + np.timedelta64(7 * w, "D") for w in range(WEEKS)]

    false_weeks: dict[str, list[str]] = {"requests": [], "collected": [], "before": []}
    causes: dict[str, int] = {}
    headroom: dict[str, float] = {}  # the largest value / threshold each check reached on real data
    for week in weeks:
        fired = {"requests": False, "collected": False, "before": False}
        for offset in range(7):
            day = week + np.timedelta64(offset, "D")
            observed = series.day(day, features)
            served_checks = request_checks(observed, observed, series, day, t)
            stored_checks = collected_checks(series, day, [*features, *targets], t)
            for c in served_checks + stored_checks:
                headroom[c.check] = max(headroom.get(c.check, 0.0), c.value / c.threshold)
            keys = firing(checks.REQUESTS, served_checks, t) + firing(checks.COLLECTED, stored_checks, t)
            for key in keys:
                causes[key] = causes.get(key, 0) + 1
            fired["requests"] |= any(k.split(":")[1] == "requests" for k in keys)
            fired["collected"] |= any(k.split(":")[1] == "collected" for k in keys)
            fired["before"] |= before_fires(series, day, features, t, rng)
        for source, hit in fired.items():
            if hit:
                false_weeks[source].append(str(week))

    print(f"Real weeks served: {len(weeks)} (from {weeks[0]}), one monitor run per day\n")
    print(f"{'checks':44} {'weeks with a false alert':>25} {'quiet weeks':>12}")
    for source, label in (("requests", "requests: range, stuck, skew"),
                          ("collected", "collected rows: range, stuck"),
                          ("before", "before: PSI/KS vs a uniform training sample")):
        n = len(false_weeks[source])
        print(f"{label:44} {n:>25} {100 * (1 - n / len(weeks)):>11.1f}%")
    for source in ("requests", "collected"):
        if false_weeks[source]:
            print(f"  {source} false alerts in the weeks of {', '.join(false_weeks[source])}")
    if causes:
        print("  conditions that fired on real data (runs): "
              + ", ".join(f"{k} {n}" for k, n in sorted(causes.items(), key=lambda kv: -kv[1])))

    print("  largest value on real data, as a share of its threshold: "
          + ", ".join(f"{check} {share:.2f}" for check, share in sorted(headroom.items())))

    print(f"\nInjected faults on days {FAULT_DAYS[0] + 1}-{FAULT_DAYS[1] + 1} of each week\n")
    print(f"{'fault':28} {'first run':>9} {'no actuals yet':>15} {'runs to detect':>15} {'open on day 2':>14} "
          f"{'resolves next':>14}  fired")
    for name, fault in faults(features).items():
        first = early = stays = resolves = 0
        runs_to_detect: list[int] = []
        fired_keys: dict[str, int] = {}
        for week in weeks:
            states = []
            for offset in (*FAULT_DAYS, FAULT_DAYS[-1] + 1):
                day = week + np.timedelta64(offset, "D")
                observed = series.day(day, features)
                served = fault(observed) if offset in FAULT_DAYS else observed
                keys = request_conditions(served, observed, series, day, t)
                if offset == FAULT_DAYS[0]:
                    early += bool(request_conditions(served, None, series, day, t))
                if offset in FAULT_DAYS:
                    states.append(bool(keys))
                    for key in keys:
                        fired_keys[key] = fired_keys.get(key, 0) + 1
                else:  # resolved: nothing the fault fired fires any more
                    resolves += not set(keys) & set(fired_keys)
            first += states[0]
            stays += states[1]
            runs_to_detect.append(states.index(True) + 1 if True in states[:2] else 0)
        detected = [r for r in runs_to_detect if r]
        top = ", ".join(k for k, _ in sorted(fired_keys.items(), key=lambda kv: -kv[1])[:3])
        print(f"{name:28} {100 * first / len(weeks):>8.0f}% {100 * early / len(weeks):>14.0f}% "
              f"{(f'{np.mean(detected):.2f}' if detected else 'never'):>15} {100 * stays / len(weeks):>13.0f}% "
              f"{100 * resolves / len(weeks):>13.0f}%  {top}")


if __name__ == "__main__":
    main()
