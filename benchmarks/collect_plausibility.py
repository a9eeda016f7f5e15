"""Both sides of collect's plausibility checks, on every real day of 2017.

Real days: every day D of the bundled year is judged as collect judges a
one-day batch, against the accepted rows of the ``history_days`` days before it.
A day that fails any check is quarantined and, as in the running system, never
joins the history of later days. Every quarantine of a real day is a false one;
the list names the day, what is special about it (holidays, Ramadan, the DST
changes of Morocco's wall clock) and the checks that failed.

Injected faults: on every real day from ``--faults-from`` (step ``--every``),
the day's batch is replaced by a faulty copy and judged against the same
accepted history: a target at 0 all day, a target in MW instead of kW, a target
at half its value (for information: only the level check can see it), a sensor
stuck all day or from an hour on (a feature and a target, the column and hour
rotating with the day), Temperature with its sign flipped, the clock an hour
off both ways (the day's values taken from an hour later / earlier), and the
day copied from a week earlier. For each it prints how many were caught, the
checks that caught them and how far past its bound the strongest check went
(median of value / bound).

It also prints the closest call on real days of every check (value / bound),
the largest real value of each check the spec turns off, whether the data's
clock follows Morocco's DST (profile alignment across each change), and the
time judge() takes per one-day batch.

    .venv/bin/python benchmarks/collect_plausibility.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd

from shared.collect.plausibility import Finding, PlausibilityConfig, findings, judge
from shared.core.dataset_spec import TIMESTAMP, DatasetSpec, load_spec
from shared.core.frames import read_dataset_csv

# Days of 2017 that are special in Tetouan, to explain what fires on them.
CALENDAR = {
    "2017-01-01": "New Year", "2017-01-11": "Independence Manifesto day", "2017-03-26": "DST starts",
    "2017-05-01": "Labour day", "2017-05-21": "DST suspended for Ramadan", "2017-05-27": "Ramadan starts",
    "2017-06-25": "last day of Ramadan", "2017-06-26": "Eid al-Fitr", "2017-06-27": "Eid al-Fitr (2nd day)",
    "2017-07-02": "DST resumes", "2017-07-30": "Throne day", "2017-08-14": "Oued Ed-Dahab day",
    "2017-08-20": "Revolution day", "2017-08-21": "Youth day", "2017-09-01": "Eid al-Adha",
    "2017-09-02": "Eid al-Adha (2nd day)", "2017-09-21": "Islamic new year", "2017-09-22": "Islamic new year",
    "2017-10-29": "DST ends", "2017-11-06": "Green March day", "2017-11-18": "Independence day",
    "2017-12-01": "Mawlid", "2017-12-02": "Mawlid (2nd day)",
}
RAMADAN = (pd.Timestamp("2017-05-27"), pd.Timestamp("2017-06-25"))


def label(day: pd.Timestamp) -> str:
    name = CALENDAR.get(str(day.date()), "")
    if not name and RAMADAN[0] <= day <= RAMADAN[1]:
        name = "Ramadan"
    return name


class Year:
    """The bundled series, indexed by day, with an accepted set that grows as days pass."""

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self.frame = read_dataset_csv(spec.read_replay_data(), spec)
        origin = self.frame[TIMESTAMP].iloc[0].normalize()
        self.day_of_row = ((self.frame[TIMESTAMP] - origin) // pd.Timedelta(days=1)).to_numpy()
        self.days = [origin + pd.Timedelta(days=int(d)) for d in range(int(self.day_of_row.max()) + 1)]
        self.accepted = np.zeros(len(self.days), dtype=bool)
        self.columns = [*spec.feature_names, *spec.target_names]

    def day(self, d: int) -> pd.DataFrame:
        return self.frame[self.day_of_row == d].reset_index(drop=True)

    def history(self, d: int, days: int) -> pd.DataFrame:
        keep = (self.day_of_row >= d - days) & (self.day_of_row < d) & self.accepted[self.day_of_row]
        return self.frame[keep].reset_index(drop=True)

    def shifted(self, d: int, slots: int) -> pd.DataFrame:
        """Day d with every value taken ``slots`` slots later (earlier when negative); rows without one dropped."""
        rows = np.flatnonzero(self.day_of_row == d)
        source = rows + slots
        ok = (source >= 0) & (source < len(self.frame))
        out = self.frame.iloc[rows[ok]].reset_index(drop=True).copy()
        out[self.columns] = self.frame[self.columns].to_numpy()[source[ok]]
        return out


Fault = Callable[[pd.DataFrame, int, Year], tuple[pd.DataFrame, str]]


def _set(batch: pd.DataFrame, column: str, values: np.ndarray) -> pd.DataFrame:
    out = batch.copy()
    out[column] = values
    return out


def _stuck(columns: list[str], from_hour: bool) -> Fault:
    def fault(batch: pd.DataFrame, d: int, year: Year) -> tuple[pd.DataFrame, str]:
        column = columns[d % len(columns)]
        start = 6 * (6 + d % 15) if from_hour else 0  # 06:00 .. 20:00
        values = batch[column].to_numpy(float).copy()
        values[start:] = values[start]
        return _set(batch, column, values), column if not from_hour else f"{column} from {start // 6:02d}:00"
    return fault


def faults(spec: DatasetSpec, lag_slots: int) -> dict[str, Fault]:
    targets, features = list(spec.target_names), list(spec.feature_names)

    def rotate(d: int, names: list[str]) -> str:
        return names[d % len(names)]

    return {
        "target at 0 all day": lambda b, d, y: (_set(b, (c := rotate(d, targets)), np.zeros(len(b))), c),
        "target in MW (/1000)": lambda b, d, y: (_set(b, (c := rotate(d, targets)), b[c].to_numpy() / 1000), c),
        "target at half (x0.5)": lambda b, d, y: (_set(b, (c := rotate(d, targets)), b[c].to_numpy() / 2), c),
        "feature stuck all day": _stuck(features, False),
        "target stuck all day": _stuck(targets, False),
        "feature stuck from an hour on": _stuck(features, True),
        "target stuck from an hour on": _stuck(targets, True),
        "Temperature sign flipped": lambda b, d, y: (_set(b, "Temperature", -b["Temperature"].to_numpy()),
                                                     "Temperature"),
        "clock +1 h (values from 1 h later)": lambda b, d, y: (y.shifted(d, lag_slots), "all columns"),
        "clock -1 h (values from 1 h earlier)": lambda b, d, y: (y.shifted(d, -lag_slots), "all columns"),
        "copied from 7 days earlier": lambda b, d, y: (y.day(d - 7).assign(**{TIMESTAMP: b[TIMESTAMP]}),
                                                       "all columns"),
    }


def failing(found: list[Finding]) -> list[Finding]:
    return sorted((f for f in found if f.failed), key=lambda f: -f.severity)


def everything_on(config: PlausibilityConfig) -> PlausibilityConfig:
    """The config with each check the spec turns off on, at a bound of 1: its findings' severity is its value."""
    return replace(config, columns={c: replace(r, level_z=r.level_z or 1.0, spread_log=r.spread_log or 1.0,
                                               scale_decades=r.scale_decades or 1.0)
                                    for c, r in config.columns.items()})


def is_off(config: PlausibilityConfig, kind: str, column: str) -> bool:
    rules = config.columns.get(column)
    bound = {"level": "level_z", "spread": "spread_log", "scale": "scale_decades"}.get(kind)
    return rules is not None and bound is not None and getattr(rules, bound) is None


def replay_real(year: Year, config: PlausibilityConfig) -> tuple[list[tuple[int, list[Finding]]], list[float],
                                                                   dict[tuple[str, str], Finding],
                                                                   dict[tuple[str, str], Finding], int]:
    """Every day in turn: the quarantined days, judge()'s time per day, the closest call per check, the
    largest value of each check the spec turns off, and the number of days judged."""
    quarantined: list[tuple[int, list[Finding]]] = []
    times: list[float] = []
    closest: dict[tuple[str, str], Finding] = {}
    off: dict[tuple[str, str], Finding] = {}
    probe = everything_on(config)
    judged = 0
    for d in range(len(year.days)):
        batch, history = year.day(d), year.history(d, config.history_days)
        started = time.perf_counter()
        checks = judge(history, batch, year.spec, config)
        elapsed = time.perf_counter() - started
        found, skipped = findings(history, batch, year.spec, config)
        if skipped:
            year.accepted[d] = all(c.passed for c in checks)
            continue
        judged += 1
        times.append(elapsed)
        for f in found:
            key = (f.kind, f.column)
            if key not in closest or f.severity > closest[key].severity:
                closest[key] = f
        for f in findings(history, batch, year.spec, probe)[0]:
            key = (f.kind, f.column)
            if is_off(config, *key) and (key not in off or f.severity > off[key].severity):
                off[key] = f
        bad = failing(found)
        year.accepted[d] = not bad
        if bad:
            quarantined.append((d, bad))
    return quarantined, times, closest, off, judged


def _shape(profile: np.ndarray) -> np.ndarray:
    return (profile - profile.mean()) / profile.std()


def profile_lag(series: np.ndarray, day: int, per_day: int, max_lag: int) -> int:
    """The lag (slots) that best aligns the median profile of the 7 days after ``day`` with the 7 days before;
    positive: the later profile happens earlier in the data's clock."""
    days = series[: len(series) // per_day * per_day].reshape(-1, per_day)
    before_, after = _shape(np.median(days[day - 7:day], axis=0)), _shape(np.median(days[day + 1:day + 8], axis=0))
    ring = np.tile(before_, 3)
    errors = {lag: float(np.mean(np.abs(after - ring[per_day + lag:2 * per_day + lag])))
              for lag in range(-max_lag, max_lag + 1)}
    return min(errors, key=lambda lag: errors[lag])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default="tetouan_power")
    parser.add_argument("--faults-from", default="2017-02-01", help="first day to inject faults on")
    parser.add_argument("--every", type=int, default=1, help="inject on every n-th day from --faults-from")
    args = parser.parse_args()

    spec = load_spec(args.spec)
    config = PlausibilityConfig.from_spec(spec)
    year = Year(spec)
    quarantined, times, closest, off, judged = replay_real(year, config)

    print(f"Real days: {len(year.days)} ({year.days[0].date()} .. {year.days[-1].date()}), judged "
          f"{judged} (from day {config.min_history_days + 1}), history {config.history_days} days of accepted rows\n")
    print(f"false quarantines: {len(quarantined)}")
    for d, bad in quarantined:
        day = year.days[d]
        print(f"  {day.date()} {day.day_name():9} {label(day) or '(no holiday)'}")
        for f in bad:
            print(f"      {f.kind}: {f.text}")
    special = [d for d in range(len(year.days)) if label(year.days[d])]
    passed = [d for d in special if year.accepted[d]]
    print(f"special days (holidays, Ramadan, DST changes) accepted: {len(passed)} of {len(special)}")

    print("\nClosest call on real days per check (value / bound; above 1 fails)\n")
    print(f"{'check':8} {'column':46} {'value/bound':>11}  day")
    clock_columns = "+".join(c for c, r in config.columns.items() if r.clock_weight > 0)
    for (kind, column), f in sorted(closest.items()):
        shown = clock_columns if kind == "clock" else column
        print(f"{kind:8} {shown:46} {f.severity:>11.2f}  {f.day} {label(pd.Timestamp(f.day))}")

    print("\nChecks the spec turns off: their largest value on real days (a bound would have to exceed it)\n")
    for (kind, column), f in sorted(off.items()):
        print(f"{kind:8} {column:22} {f.value:>+9.2f}  {f.day} {label(pd.Timestamp(f.day))}")

    per_day = int(pd.Timedelta(days=1) / spec.interval)
    print("\nDoes the data's clock follow Morocco's DST? Best alignment (min) of the 7 days after each change "
          "with the 7 days before\n")
    solar = next((c for c, r in config.columns.items() if r.clock_log), None)
    for change in ("2017-03-26", "2017-05-21", "2017-07-02", "2017-10-29"):
        d = int((pd.Timestamp(change) - year.days[0]) / pd.Timedelta(days=1))
        lags = {c: profile_lag(year.frame[c].to_numpy(float), d, per_day, per_day // 12)
                for c in ([solar] if solar else []) + list(spec.target_names)}
        minutes = ", ".join(f"{c} {lag * spec.interval.total_seconds() / 60:+.0f}" for c, lag in lags.items())
        print(f"  {change} {CALENDAR[change]:26} {minutes}")

    ms = sorted(1000 * t for t in times)
    print(f"\njudge() per one-day batch: median {statistics.median(ms):.1f} ms, p95 {ms[int(0.95 * len(ms))]:.1f} ms, "
          f"max {ms[-1]:.1f} ms ({len(ms)} days, including building the grid from the frames)")

    first = int((pd.Timestamp(args.faults_from) - year.days[0]) / pd.Timedelta(days=1))
    fault_days = list(range(max(first, config.min_history_days), len(year.days), args.every))
    lag = int(config.clock_lag_minutes * 60 // spec.interval.total_seconds())
    print(f"\nInjected faults on {len(fault_days)} real days from {year.days[fault_days[0]].date()} "
          f"(every {args.every}), judged against the accepted history\n")
    print(f"{'fault':38} {'caught':>11} {'median value/bound':>19}  caught by (days)")
    missed_all: dict[str, list[str]] = {}
    for name, fault in faults(spec, lag).items():
        caught, margins, by = 0, [], Counter[str]()
        missed: list[str] = []
        total = 0
        for d in fault_days:
            batch, what = fault(year.day(d), d, year)
            if not len(batch):
                continue
            total += 1
            found, _ = findings(year.history(d, config.history_days), batch, spec, config)
            bad = failing(found)
            if bad:
                caught += 1
                margins.append(bad[0].severity)
                by.update({f"{f.kind}:{f.column}" if f.kind != "clock" else "clock" for f in bad})
            else:
                missed.append(f"{year.days[d].date()} ({what})")
        top = ", ".join(f"{k} {n}" for k, n in sorted(by.items(), key=lambda kv: (-kv[1], kv[0]))[:4])
        median = f"{statistics.median(margins):.1f}" if margins else "-"
        print(f"{name:38} {caught:>5}/{total:<5} {median:>19}  {top}")
        if missed:
            missed_all[name] = missed
    for name, missed in missed_all.items():
        print(f"  missed {name}: {', '.join(missed[:8])}{' ...' if len(missed) > 8 else ''}")


if __name__ == "__main__":
    main()
