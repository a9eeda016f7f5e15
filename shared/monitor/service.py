"""One monitor run: measure, compare with thresholds, update alerts, write the report.

- **Operations** over the window (wall-clock, from predict's request log): request
  count, 5xx error rate, latency percentiles, an estimated daily cost.
- **Data health**: freshness of accepted data and each collection source's state.
- **Input checks** (``input_checks``) on what is new since the last run
  (``joins``): requests' inputs against the training range and for stuck values
  at once; against the observations of the same timestamps (skew) once their
  actuals are stored; newly collected rows against the training range and for
  stuck values.
- **Accuracy against reality**: predictions whose actuals arrived since the last
  run, MAPE, RMSE and 80 % interval coverage per target and model version; the
  production version's MAPE over the lookback's runs against its holdout MAPE; each
  target's interval coverage over the lookback's runs (every version) against fixed
  floors (``alert_rules.COVERAGE_*``).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np

from shared.core.dataset_spec import DatasetSpec
from shared.core.features import Actuals
from shared.core.intervals import LEVEL, coverage
from shared.core.metrics import regression_metrics
from shared.core.recent_actuals import ActualsSnapshot, RecentActuals
from shared.core.registry import Registry, unpack_arrays
from shared.monitor import input_checks as checks
from shared.monitor.alert_rules import (
    COVERAGE_MIN_PAIRS,
    HIGH,
    MEDIUM,
    Condition,
    accuracy_condition,
    coverage_condition,
    coverage_severity,
    input_conditions,
    operations_conditions,
    threshold_condition,
)
from shared.monitor.alerts import ESCALATED, OPENED, AlertBook, Notifier
from shared.monitor.joins import Joined, Watermark, inputs_in_time_order, join, new_requests
from shared.monitor.report import Distribution, Timeline, VersionAccuracy, overall_status, render
from shared.platform import names
from shared.platform.backends import Backends
from shared.platform.log import get_logger
from shared.platform.ports import AlreadyExists, where
from shared.platform.settings import CostModel, Settings
from shared.platform.timefmt import iso_utc, parse_utc, utc_day, utc_stamp

log = get_logger("monitor")
ACCURACY_MIN_ROWS = 30
TIMELINE_POINTS = 500
# Input faults are not cured by retraining on the same data: only accuracy closes the loop.
RETRAIN_METRICS = ("mape_increase",)
# Fields of the "accuracy measured" log entry; terraform/dashboard.tf's log-based metrics read them.
ACCURACY_LOG_FIELDS = ("target", "model_version", "mape", "rows", "production", "interval_coverage")

# Conditions earlier releases evaluated; an alert still open under one is resolved.
RETIRED_METRICS = ("drift",)
# Requests logged in the last moments may not have been flushed yet: a run judges
# requests up to now - (2 flush periods + this), the next run the rest.
LOG_SETTLE_SECONDS = 1.0
# A source alert is medium while collection runs on the source's cached copy and high
# without one; this many consecutive failed calls make it high even on the cached copy
# (the copy grows stale and the failure is no longer a blip). The count is the source's
# ``consecutive_failures`` (shared/collect/sources.py), reset by its next good response.
SOURCE_FAILURES_HIGH = 3
# Collections read to find each source's newest (one query, no composite index).
RECENT_COLLECTIONS = 50


@dataclass(frozen=True)
class MonitorRequest:
    """What one run is asked for: the window (default MONITOR_WINDOW) and why it runs.

    An explicit window also re-judges the requests and actuals it covers, instead of
    only what arrived since the last run.
    """

    window: timedelta | None = None
    cause: str = "schedule"


def daily_cost(cost: CostModel, invocations_per_day: float, mean_seconds: float) -> float:
    """Estimated USD per day of predict at this rate and mean duration."""
    per_call = cost.invocation_usd + mean_seconds * (cost.vcpu * cost.vcpu_second_usd
                                                     + cost.memory_gib * cost.gib_second_usd)
    return invocations_per_day * per_call


def training_range(reference: Mapping[str, Any], column: str) -> tuple[float, float] | None:
    """Min and max of a column over a model's training rows (its reference quantiles 0 and 1)."""
    quantiles = ((reference.get("columns") or {}).get(column) or {}).get("quantiles") or []
    return (float(quantiles[0]), float(quantiles[-1])) if quantiles else None


class Monitor:
    """Evaluates one dataset's system and keeps its alerts."""

    def __init__(self, settings: Settings, backends: Backends, spec: DatasetSpec,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.backends = backends
        self.spec = spec
        self.clock = clock
        self.thresholds = settings.alert_thresholds
        self.cost = settings.cost_model
        self.registry = Registry(settings, backends)
        self.book = AlertBook(backends.documents, settings.alert_cooldown, clock)
        self.notifier = Notifier(backends.events, settings.topic_alerts,
                                 settings.deployment_name or settings.project, settings.alert_webhook_url)
        self.units = {c.name: c.unit for c in spec.value_columns}

    # -- inputs ---------------------------------------------------------------------

    def _production(self) -> dict[str, dict[str, Any]]:
        models = {}
        for target in self.spec.target_names:
            pointer = self.registry.production(target)
            if pointer is None:
                continue
            record = self.registry.get(pointer["version"]) or {}
            models[target] = {"version": pointer["version"], "promoted_at": pointer["promoted_at"],
                              "record": record, "reference": record.get("reference") or self._sampled(record)}
        return models

    def _sampled(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The reference of a version recorded before records carried it: its sample's range."""
        sample = unpack_arrays(self.registry.read_verified(record["reference_artifact"], record["reference_sha256"]))
        return {"columns": {name: {"quantiles": [float(np.nanmin(v)), float(np.nanmax(v))]}
                            for name, v in sample.items() if len(v)}}

    def _entries(self, since: float) -> list[dict[str, Any]]:
        """Request records of predict logged since ``since`` (epoch seconds)."""
        entries = []
        # The prediction log is partitioned by UTC day (``date=YYYY-MM-DD/``).
        day, last = date.fromisoformat(utc_day(since)), date.fromisoformat(utc_day(self.clock()))
        while day <= last:
            for obj in self.backends.blobs.list(f"{names.PREDICTIONS}date={day.isoformat()}/"):
                for line in self.backends.blobs.read(obj).decode().splitlines():
                    entry = json.loads(line)
                    if entry.get("time", 0) >= since:
                        entries.append(entry)
            day += timedelta(days=1)
        return entries

    def _previous(self, request: MonitorRequest, cut: float, last: np.datetime64 | None) -> Watermark:
        """What earlier runs judged: the last run's watermark, or the explicit window's start."""
        if request.window is not None:
            minutes = np.timedelta64(int(request.window.total_seconds() // 60), "m")
            return Watermark(cut - request.window.total_seconds(), None if last is None else last - minutes)
        runs = self.backends.documents.query(where(names.MONITOR_RUNS, order_by="at", descending=True, limit=1))
        judged = (runs[0][1].get("judged") or {}) if runs else {}
        if "requests_until" not in judged:  # the first run: the default window
            window = self.settings.monitor_window
            minutes = np.timedelta64(int(window.total_seconds() // 60), "m")
            return Watermark(cut - window.total_seconds(), None if last is None else last - minutes)
        data = judged.get("data_until")
        return Watermark(float(judged["requests_until"]), None if data is None else np.datetime64(data, "m"))

    # -- measurements ---------------------------------------------------------------

    def data_health(self, now: float) -> list[Condition]:
        """Freshness of accepted data and the health of each collection source.

        A failing source is medium while collection runs on its cached copy, high with no
        copy or after ``SOURCE_FAILURES_HIGH`` consecutive failed calls.
        """
        conditions = []
        newest = self.backends.documents.query(where(names.BATCHES, ("status", "==", "accepted"),
                                                     order_by="end", descending=True, limit=1))
        if newest:  # nothing collected yet is a new deployment, not a stale one
            _, batch = newest[0]
            age_hours = (now - parse_utc(batch["collected_at"])) / 3600
            limit = self.settings.freshness_periods * self.settings.collect_window.total_seconds() / 3600
            conditions.append(threshold_condition(
                "freshness", "accepted_data", age_hours, limit,
                detail=f"hours since the last accepted batch ({batch['end']})"))
        for name, state in self.backends.documents.query(where(names.SOURCE_STATE)):
            failed = float(state.get("last_failure_at") or 0)
            failing = failed > float(state.get("last_success_at") or 0)
            failures = int(state.get("consecutive_failures") or 0)
            on_cache = bool(state.get("serving_cache"))
            severity = ((MEDIUM if on_cache and failures < SOURCE_FAILURES_HIGH else HIGH)
                        if failing else None)
            since = failed if failing else now
            calls = (f" ({failures} failed call{'s' if failures > 1 else ''} since the last good answer)"
                     if failures else "")
            conditions.append(Condition(
                "source_health", name, round((now - since) / 3600, 3), 0.0, failing, severity,
                detail=(f"failing{calls}: {state.get('last_failure')}; "
                        + ("collection runs on the cached copy" if on_cache
                           else "no cached copy: nothing is collected")) if failing else ""))
        return conditions + self.quarantine()

    def quarantine(self) -> list[Condition]:
        """Per source: is its newest collection a refused (quarantined) batch? Resolves once one passes.

        Collect quarantines a batch with its reasons and stops the cursor there, so a refusal
        holds collection until the source sends better data or an operator releases it.
        """
        newest: dict[str, Mapping[str, Any]] = {}
        recent = self.backends.documents.query(where(names.COLLECTIONS, order_by="recorded_at",
                                                     descending=True, limit=RECENT_COLLECTIONS))
        for _, found in recent:
            newest.setdefault(str(found.get("source")), found)
        conditions = []
        for source, record in sorted(newest.items()):
            refused = record.get("status") == names.BATCH_REJECTED
            severity = (HIGH if record.get("implausible") else MEDIUM) if refused else None
            reasons = "; ".join(record.get("reasons") or [])
            detail = (f"batch {record.get('batch_id')} quarantined ({reasons[:400]}); the cursor waits "
                      "there. If the data is real: python -m shared.cli release <batch_id> --reason ..."
                      ) if refused else ""
            conditions.append(Condition("quarantine", source, float(refused), 0.0, refused, severity,
                                        detail=detail))
        return conditions

    def operations(self, entries: list[dict[str, Any]], window: timedelta) -> dict[str, Any]:
        if not entries:
            return {"requests": 0}
        statuses = np.array([e["status"] for e in entries])
        latency = np.array([e["latency_ms"] for e in entries], dtype=float)
        per_day = len(entries) * 86400 / window.total_seconds()
        return {
            "requests": len(entries), "errors": int((statuses >= 500).sum()),
            "error_rate": float((statuses >= 500).mean()),
            "client_errors": int(((statuses >= 400) & (statuses < 500)).sum()),
            "latency_p50_ms": float(np.percentile(latency, 50)),
            "latency_p95_ms": float(np.percentile(latency, 95)),
            "latency_p99_ms": float(np.percentile(latency, 99)),
            "predictions": int(sum(e.get("rows", 0) for e in entries if e["status"] == 200)),
            # Requests predict could not log (its buffer was full while storage failed).
            "log_dropped": int(sum(e.get(names.PREDICTION_LOG_DROPPED, 0) for e in entries)),
            "invocations_per_day": per_day,
            "cost_daily_usd": daily_cost(self.cost, per_day, float(latency.mean()) / 1000),
        }

    def request_checks(self, fresh: Sequence[Mapping[str, Any]], joined: Joined,
                       reference: Mapping[str, Any]) -> list[checks.InputCheck]:
        """Served inputs: range and stuck on the new requests, skew on the new pairs."""
        found: list[checks.InputCheck | None] = []
        served = inputs_in_time_order(fresh, self.spec.feature_names)
        for f in self.spec.feature_names:
            span = training_range(reference, f)
            if span is not None:
                found.append(checks.range_check(checks.REQUESTS, f, served[f], span, self.thresholds,
                                                self.units[f]))
            found.append(checks.stuck_check(checks.REQUESTS, f, served[f], self.thresholds))
            found.append(checks.skew_check(f, joined.served.get(f, np.zeros(0)),
                                           joined.observed.get(f, np.zeros(0)), self.thresholds))
        return [c for c in found if c is not None]

    def collected_checks(self, snapshot: ActualsSnapshot, previous: Watermark,
                         models: Mapping[str, Any], newest: Mapping[str, Any]) -> list[checks.InputCheck]:
        """Rows stored since the last run: range against the training rows, stuck values."""
        ts = snapshot.timestamps
        new = ts > previous.data_until if previous.data_until is not None else np.ones(len(ts), bool)
        found: list[checks.InputCheck | None] = []
        for name in [*self.spec.feature_names, *models]:
            reference = models.get(name, newest)["reference"]
            values = snapshot.columns[name][new]
            if not len(values):
                found += [checks.no_new_data(checks.COLLECTED, name, c) for c in (checks.RANGE, checks.STUCK)]
                continue
            span = training_range(reference, name)
            if span is not None:
                found.append(checks.range_check(checks.COLLECTED, name, values, span, self.thresholds,
                                                self.units[name]))
            found.append(checks.stuck_check(checks.COLLECTED, name, values, self.thresholds))
        return [c for c in found if c is not None]

    def _earlier_accuracy(self, since: str) -> list[dict[str, Any]]:
        """Accuracy rows stored by the runs since ``since`` (ISO), newest run first."""
        found: list[dict[str, Any]] = []
        for _, run in self.backends.documents.query(where(names.MONITOR_RUNS, order_by="at",
                                                          descending=True, limit=200)):
            if run["at"] < since:
                break
            found += run.get("accuracy") or []
        return found

    def _accuracy(self, joined: Joined, models: Mapping[str, Any], at: str,
                  earlier: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[Condition], list[Timeline]]:
        """Live accuracy per target and version, its conditions, and the production timelines.

        The condition judges a production version on every pair judged over the lookback
        (this run's and the ``earlier`` runs' rows): one day's error swings too much to
        stand for the version against its holdout week. Each row also counts this run's
        pairs inside the logged interval (``interval_coverage`` pools them per target).
        """
        rows, conditions, timelines = [], [], []
        for (target, version), (ts, predicted, actual) in sorted(joined.accuracy.items()):
            m = regression_metrics(actual, predicted)
            record = self.registry.get(version) or {}
            holdout = ((record.get("metrics") or {}).get("served") or {}).get("mape")
            production = target in models and models[target]["version"] == version
            # Pairs without an interval (a variant without one, a record from before
            # predict logged intervals) are not counted.
            lower, upper = joined.intervals.get((target, version), (np.full(len(actual), np.nan),) * 2)
            inside, pairs = coverage(actual, lower, upper)
            rows.append({"target": target, "model_version": version, "rows": m["n"], "mape": m["mape"],
                         "rmse": m["rmse"], "holdout_mape": holdout, "production": production,
                         "interval_level": LEVEL, "interval_inside": inside, "interval_pairs": pairs,
                         "interval_coverage": inside / pairs if pairs else None, "measured_at": at})
            same = [r for r in earlier if r["target"] == target and r["model_version"] == version]
            n = m["n"] + sum(r["rows"] for r in same)
            mape = (m["mape"] * m["n"] + sum(r["mape"] * r["rows"] for r in same)) / n
            if production and holdout is not None and n >= ACCURACY_MIN_ROWS:
                conditions.append(accuracy_condition(target, version, mape, holdout, int(n), self.thresholds))
            if production:
                stamps, first = np.unique(ts, return_index=True)
                pick = np.linspace(0, len(stamps) - 1, min(len(stamps), TIMELINE_POINTS)).astype(int)
                timelines.append(Timeline(target, self.units[target], stamps[pick],
                                          predicted[first][pick], actual[first][pick]))
        return rows, conditions, timelines

    def interval_coverage(self, rows: Sequence[Mapping[str, Any]], earlier: Sequence[Mapping[str, Any]],
                          models: Mapping[str, Any], since: str) -> tuple[list[dict[str, Any]], list[Condition]]:
        """Per target: the share of actuals inside their served interval over every pair judged
        since ``since`` (this run's ``rows`` and the ``earlier`` runs'), every version pooled,
        and its condition for the targets with new pairs in this run.

        Every version, because the level promised is the same for all (unlike MAPE, judged
        against each version's own holdout) and retrain may promote a new version every day,
        before the pairs of the one it replaces are judged.
        """
        pool = [*rows, *earlier]
        fresh = {r["target"] for r in rows if r.get("interval_pairs")}
        summary, conditions = [], []
        for target in self.spec.target_names:
            mine = [r for r in pool if r["target"] == target]
            if not mine:
                continue
            inside = sum(int(r.get("interval_inside") or 0) for r in mine)
            pairs = sum(int(r.get("interval_pairs") or 0) for r in mine)
            share = inside / pairs if pairs else None
            version = models[target]["version"] if target in models else None
            condition = coverage_condition(target, version, inside, pairs, LEVEL) if target in fresh else None
            if condition is not None:
                conditions.append(condition)
            summary.append({"target": target, "level": LEVEL, "inside": inside, "pairs": pairs, "coverage": share,
                            "since": since, "min_pairs": COVERAGE_MIN_PAIRS,
                            "severity": coverage_severity(share) if share is not None
                            and pairs >= COVERAGE_MIN_PAIRS else None})
        return summary, conditions

    def _last_measured(self) -> list[dict[str, Any]]:
        """Accuracy rows of the latest run that had new actuals, for a run that has none."""
        for _, run in self.backends.documents.query(where(names.MONITOR_RUNS, order_by="at",
                                                          descending=True, limit=20)):
            if run.get("accuracy"):
                return [{**row, "measured_at": row.get("measured_at", run["at"])} for row in run["accuracy"]]
        return []

    def _retired(self) -> list[Condition]:
        """Open alerts of conditions no longer evaluated resolve, instead of staying open forever."""
        return [Condition(a["metric"], a["subject"], 0.0, float(a.get("threshold") or 0), False, None,
                          detail="this check was replaced; see the input checks")
                for a in self.book.open_alerts() if a["metric"] in RETIRED_METRICS]

    def _distributions(self, fresh: Sequence[Mapping[str, Any]], joined: Joined,
                       reference: Mapping[str, Any]) -> list[Distribution]:
        """Per feature: served vs observed at the same timestamps, else the new requests alone."""
        paired = joined.rows > 0
        served = joined.served if paired else inputs_in_time_order(fresh, self.spec.feature_names)
        return [Distribution(f, self.units[f], served[f], joined.observed[f] if paired else None,
                             training_range(reference, f))
                for f in self.spec.feature_names if len(served.get(f, ()))]

    # -- model-updated pushes ---------------------------------------------------------

    def push_claim(self) -> str | None:
        """The claim a model-updated push runs under, or None when an earlier push already ran
        on the same production state (a duplicate delivery, or a push with nothing new).

        The claim is keyed by every target's production version and promotion time, so a
        rollback to an earlier version is new too. Creating it is atomic: of racing pushes
        on any instances, one runs.
        """
        state = {t: [p["version"], p["promoted_at"]] for t, p in sorted(self.registry.production_pointers().items())}
        claim = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:32]
        try:
            self.backends.documents.create(names.MONITOR_PUSHES, claim, {"production": state,
                                                                         "at": iso_utc(self.clock())})
        except AlreadyExists:
            return None
        return claim

    def release_push_claim(self, claim: str) -> None:
        """Forget a claim whose run failed, so the push's redelivery runs again."""
        self.backends.documents.delete(names.MONITOR_PUSHES, claim)

    # -- the run --------------------------------------------------------------------

    def run(self, request: MonitorRequest = MonitorRequest()) -> dict[str, Any]:
        """Measure, update alerts, notify, write the report; returns a summary."""
        window = request.window or self.settings.monitor_window
        now = self.clock()
        at = iso_utc(now, timespec="microseconds")  # runs within one second must still order
        run_id = f"{utc_stamp(now)}-{uuid.uuid4().hex[:6]}"
        models = self._production()
        lookback = self.settings.monitor_prediction_lookback
        snapshot = RecentActuals(self.backends, self.spec, max(window, lookback)).refresh()
        all_entries = self._entries(now - max(window, lookback).total_seconds())
        recent = [e for e in all_entries if e["time"] >= now - window.total_seconds()]
        ops = self.operations(recent, window)
        conditions: list[Condition] = operations_conditions(ops, self.thresholds)
        conditions += self.data_health(now)
        conditions += self._retired()

        cut = now - (2 * self.settings.prediction_log_flush_seconds + LOG_SETTLE_SECONDS)
        previous = self._previous(request, cut, snapshot.last)
        fresh = new_requests(all_entries, previous, cut)
        observed = (Actuals(snapshot.timestamps, snapshot.columns, int(self.spec.interval.total_seconds() // 60))
                    if snapshot.last is not None else None)
        joined = (join(all_entries, previous, cut, observed, self.spec.feature_names)
                  if observed is not None else Joined())
        newest = max(models.values(), key=lambda m: m["promoted_at"]) if models else None
        input_rows: list[dict[str, Any]] = []
        distributions: list[Distribution] = []
        if newest is not None:
            found = self.request_checks(fresh, joined, newest["reference"])
            conditions += input_conditions(checks.REQUESTS, found, self.thresholds, newest["version"])
            distributions = self._distributions(fresh, joined, newest["reference"])
            input_rows += [c.as_dict() for c in found]
            if snapshot.last is not None:
                found = self.collected_checks(snapshot, previous, models, newest)
                conditions += input_conditions(checks.COLLECTED, found, self.thresholds, newest["version"])
                input_rows += [c.as_dict() for c in found]
        since = iso_utc(now - lookback.total_seconds())
        earlier = self._earlier_accuracy(since)
        accuracy, accuracy_conditions, timelines = self._accuracy(joined, models, at, earlier)
        coverage_rows, coverage_conditions = self.interval_coverage(accuracy, earlier, models, since)
        conditions += accuracy_conditions + coverage_conditions

        data = {"start": str(previous.data_until), "end": str(snapshot.last)} if snapshot.last is not None else {}
        window_info = {"length": str(window), "requests_since": iso_utc(now - window.total_seconds()),
                       "data": data}
        events = self.book.apply(conditions, run_id, window_info)
        open_alerts = self.book.open_alerts()
        report_location = self.backends.blobs.location(self._report_folder(run_id) + "report.html")
        outcomes = [self.notifier.notify(e, report_location) for e in events]
        retrain = self._closed_loop(events, snapshot.cursor)
        judged = {"requests_until": max(cut, previous.requests_until),
                  "data_until": str(snapshot.last) if snapshot.last is not None else None,
                  "requests": len(fresh), "pairs": joined.rows}
        report = {"run_id": run_id, "at": at, "cause": request.cause, "status": overall_status(open_alerts),
                  "window": window_info, "judged": judged, "operations": ops, "inputs": input_rows,
                  "accuracy": accuracy or self._last_measured(), "interval_coverage": coverage_rows,
                  "conditions": [c.as_dict() for c in conditions],
                  "alerts": {"events": [{"event": e.event, **e.alert} for e in events],
                             "notifications": outcomes},
                  "models": {t: m["version"] for t, m in models.items()}, "retrain_request": retrain}
        paths = self._write(report, open_alerts, distributions, timelines, models, accuracy)
        summary = {"run_id": run_id, "report": paths, "status": report["status"],
                   "firing": sum(c.firing for c in conditions), "open_alerts": len(open_alerts),
                   "cost_daily_usd": ops.get("cost_daily_usd"),
                   "events": [{"event": e.event, "alert_id": e.alert["alert_id"],
                               "severity": e.alert.get("severity")} for e in events],
                   "retrain_request": retrain}
        self.backends.documents.set(names.MONITOR_RUNS, run_id, {
            "run_id": run_id, "at": at, "cause": request.cause, "accuracy": accuracy,
            "interval_coverage": coverage_rows, "judged": judged,
            "operations": ops, "firing": summary["firing"], "status": report["status"],
            "events": summary["events"], "report": paths["html"]})
        for row in accuracy:  # one entry per target and version: the dashboard's MAPE metric
            log.info("accuracy measured", fields={k: row[k] for k in ACCURACY_LOG_FIELDS})
        log.info("monitor run finished", fields=summary)
        return summary

    def _closed_loop(self, events: list[Any], cursor: str | None) -> str | None:
        """Publish a retrain request for a new high accuracy alert (when enabled)."""
        if not self.settings.monitor_auto_retrain:
            return None
        trigger = next((e for e in events if e.event in (OPENED, ESCALATED) and
                        e.alert.get("severity") == HIGH and e.alert["metric"] in RETRAIN_METRICS), None)
        if trigger is None or cursor is None:
            return None
        head = self.backends.documents.get(names.CURSORS, self.spec.name) or {}
        return self.backends.events.publish(self.settings.topic_data_ready, {
            "batch_id": head.get("batch_id"), "cause": "monitor", "alert_id": trigger.alert["alert_id"]},
            {"cause": "monitor"})

    def _history(self, models: Mapping[str, Any], accuracy: list[dict[str, Any]],
                 at: str) -> dict[str, list[VersionAccuracy]]:
        """Per target: its newest versions (oldest first), holdout MAPE and live MAPE run by run.

        Live points come from the stored ``monitor_runs`` (the newest 50) and this run's
        ``accuracy`` (at ``at``, not stored yet); ``models`` maps target -> the serving
        model (its ``version``, or the version itself).
        """
        points: dict[tuple[str, str], dict[str, float]] = {}
        runs = [doc for _, doc in self.backends.documents.query(
            where(names.MONITOR_RUNS, order_by="at", descending=True, limit=50))]
        for run in [{"at": at, "accuracy": accuracy}, *runs]:
            for row in run.get("accuracy") or []:
                mape = row.get("mape")
                if run.get("at") and mape is not None and np.isfinite(mape):
                    points.setdefault((row["target"], row["model_version"]), {}).setdefault(run["at"], float(mape))
        serving = {t: m["version"] if isinstance(m, Mapping) else str(m) for t, m in models.items()}
        measured = {target for target, _ in points}
        history: dict[str, list[VersionAccuracy]] = {}
        for target in [t for t in self.spec.target_names if t in serving or t in measured]:
            records = list(reversed(self.registry.versions(target, 8)))
            if target in serving and serving[target] not in {r["version"] for r in records}:
                records.append(self.registry.get(serving[target]) or {"version": serving[target]})
            history[target] = [VersionAccuracy(
                version=r["version"],
                holdout_mape=((r.get("metrics") or {}).get("served") or {}).get("mape"),
                live=sorted(points.get((target, r["version"]), {}).items()),
                production=serving.get(target) == r["version"]) for r in records]
        return history

    @staticmethod
    def _report_folder(run_id: str) -> str:
        return f"{names.REPORTS}{run_id}/"

    def _write(self, report: dict[str, Any], open_alerts: Sequence[Mapping[str, Any]],
               distributions: Sequence[Distribution], timelines: Sequence[Timeline],
               models: Mapping[str, Any], accuracy: list[dict[str, Any]]) -> dict[str, str]:
        """report.json and report.html under the run's folder, and the fixed ``latest`` copies."""
        body = json.dumps(report, indent=1, default=str).encode()
        page = render(report, open_alerts, distributions, timelines,
                      self._history(models, accuracy, report["at"])).encode()
        folder = self._report_folder(report["run_id"])
        self.backends.blobs.create(folder + "report.json", body, "application/json")
        self.backends.blobs.create(folder + "report.html", page, "text/html")
        # Fixed names for "the latest report", overwritten by every run.
        self.backends.blobs.write(f"{names.REPORTS}latest.json", body, "application/json")
        self.backends.blobs.write(f"{names.REPORTS}latest.html", page, "text/html")
        return {"json": folder + "report.json", "html": folder + "report.html",
                "latest_html": f"{names.REPORTS}latest.html"}
