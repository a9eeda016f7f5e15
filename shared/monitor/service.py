"""One monitor run: measure, compare with thresholds, update alerts, write the report.

- **Operations** over the window (wall-clock, from predict's request log): request
  count, 5xx error rate, latency percentiles, an estimated daily cost.
- **Data drift** of recent prediction inputs (the window's requests) against the
  newest production model's training reference, and of newly collected data — rows
  after the serving model's dataset, in the window ending at the last stored
  timestamp — against the same reference (each target against its own model's).
- **Accuracy against reality**: predictions logged during the lookback are joined
  with the actuals that arrived since, for timestamps in the data window; MAPE and
  RMSE per target and model version, compared with the version's holdout MAPE.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np

from shared.core.dataset_spec import DatasetSpec
from shared.core.metrics import regression_metrics
from shared.core.recent_actuals import RecentActuals
from shared.core.registry import Registry, unpack_arrays
from shared.monitor.alert_rules import (
    HIGH,
    MEDIUM,
    Condition,
    accuracy_condition,
    drift_conditions,
    operations_conditions,
    threshold_condition,
)
from shared.monitor.alerts import ESCALATED, OPENED, AlertBook, Notifier
from shared.monitor.drift import FeatureDrift, feature_drift
from shared.monitor.report import render
from shared.platform import names
from shared.platform.backends import Backends
from shared.platform.log import get_logger
from shared.platform.ports import where
from shared.platform.settings import CostModel, Settings
from shared.platform.timefmt import iso_utc, parse_utc, utc_day, utc_stamp

log = get_logger("monitor")
ACCURACY_MIN_ROWS = 30
TIMELINE_POINTS = 500
RETRAIN_METRICS = ("drift", "drift_share", "mape_increase")


@dataclass(frozen=True)
class MonitorRequest:
    """What one run is asked for: the window (default MONITOR_WINDOW) and why it runs."""

    window: timedelta | None = None
    cause: str = "schedule"


def daily_cost(cost: CostModel, invocations_per_day: float, mean_seconds: float) -> float:
    """Estimated USD per day of predict at this rate and mean duration."""
    per_call = cost.invocation_usd + mean_seconds * (cost.vcpu * cost.vcpu_second_usd
                                                     + cost.memory_gib * cost.gib_second_usd)
    return invocations_per_day * per_call


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

    # -- inputs ---------------------------------------------------------------------

    def _production(self) -> dict[str, dict[str, Any]]:
        models = {}
        for target in self.spec.target_names:
            pointer = self.registry.production(target)
            if pointer is None:
                continue
            record = self.registry.get(pointer["version"]) or {}
            reference = unpack_arrays(self.registry.read_verified(record["reference_artifact"],
                                                                  record["reference_sha256"]))
            models[target] = {"version": pointer["version"], "promoted_at": pointer["promoted_at"],
                              "record": record, "reference": reference}
        return models

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

    # -- measurements ---------------------------------------------------------------

    def data_health(self, now: float) -> list[Condition]:
        """Freshness of accepted data and the health of each collection source."""
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
            severity = (MEDIUM if state.get("serving_cache") else HIGH) if failing else None
            since = failed if failing else now
            conditions.append(Condition(
                "source_health", name, round((now - since) / 3600, 3), 0.0, failing, severity,
                detail=(f"failing: {state.get('last_failure')}; "
                        + ("collection runs on the cached copy" if state.get("serving_cache")
                           else "no cached copy: nothing is collected")) if failing else ""))
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

    def _drift(self, recent: Mapping[str, np.ndarray],
               reference: Mapping[str, np.ndarray]) -> list[Any]:
        t = self.thresholds
        found = [feature_drift(name, np.asarray(reference[name], float), np.asarray(values, float),
                               t.psi_warn, t.psi_alert, t.ks_pvalue, t.ks_effect)
                 for name, values in recent.items() if name in reference]
        return [d for d in found if d is not None]

    def _collected_drift(self, models: Mapping[str, Any], snapshot: Any, start: np.datetime64,
                         end: np.datetime64) -> list[Any]:
        """Drift of data collected after each model's dataset ended, inside the data window.

        Data the serving model was trained (or evaluated) on is not "newly collected"
        for it; a retrain that promotes a model on the new data empties this set.
        """
        if not models:
            return []
        newest = max(models.values(), key=lambda m: m["promoted_at"])
        ts = snapshot.timestamps

        def new_rows(model: Mapping[str, Any]) -> np.ndarray:
            seen = np.datetime64(model["record"]["lineage"]["end"], "m")
            return (ts > max(start, seen)) & (ts <= end)

        weather = new_rows(newest)
        recent = {f: snapshot.columns[f][weather] for f in self.spec.feature_names}
        found = self._drift(recent, newest["reference"])
        for target, model in models.items():
            found += self._drift({target: snapshot.columns[target][new_rows(model)]},
                                 model["reference"])
        # Nothing new for a column: the serving model has seen all of it, so a drift
        # alert on it clears (a handful of rows, by contrast, is inconclusive).
        judged = {d.feature for d in found}
        for name in [*self.spec.feature_names, *models]:
            rows = weather if name in self.spec.feature_names else new_rows(models[name])
            if name not in judged and not rows.any():
                found.append(FeatureDrift(name, 0.0, 0.0, 1.0, 0, 0, "none"))
        return found

    @staticmethod
    def _joined(entries: list[dict[str, Any]], snapshot: Any, start: np.datetime64, end: np.datetime64) -> dict:
        """(target, version) -> (timestamps, predicted, actual) for predictions with actuals."""
        actuals = snapshot.actuals
        if actuals is None:
            return {}
        step = np.timedelta64(actuals.step, "m")
        groups: dict[tuple[str, str], list[tuple[np.ndarray, ...]]] = {}
        for entry in entries:
            if entry["status"] != 200:
                continue
            ts = np.array(entry["inputs"]["Timestamp"], dtype="datetime64[m]")
            slots = actuals.slots(ts)
            on_grid = actuals.origin + slots * step == ts
            inside = on_grid & (ts > start) & (ts <= end)
            for target, predicted in entry["predictions"].items():
                actual = actuals.lag(target, slots, 0)
                keep = inside & np.isfinite(actual)
                if keep.any():
                    groups.setdefault((target, entry["versions"][target]), []).append(
                        (ts[keep], np.asarray(predicted, float)[keep], actual[keep]))
        return {key: tuple(np.concatenate(parts) for parts in zip(*chunks, strict=True))
                for key, chunks in groups.items()}

    # -- the run --------------------------------------------------------------------

    def run(self, request: MonitorRequest = MonitorRequest()) -> dict[str, Any]:
        """Measure, update alerts, notify, write the report; returns a summary."""
        window = request.window or self.settings.monitor_window
        cause = request.cause
        now = self.clock()
        run_id = f"{utc_stamp(now)}-{uuid.uuid4().hex[:6]}"
        models = self._production()
        lookback = self.settings.monitor_prediction_lookback
        snapshot = RecentActuals(self.backends, self.spec, max(window, lookback)).refresh()
        all_entries = self._entries(now - max(window, lookback).total_seconds())
        recent = [e for e in all_entries if e["time"] >= now - window.total_seconds()]
        ops = self.operations(recent, window)
        conditions: list[Condition] = operations_conditions(ops, self.thresholds)
        conditions += self.data_health(now)

        newest = max(models.values(), key=lambda m: m["promoted_at"]) if models else None
        drift_rows: list[dict[str, Any]] = []
        distributions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if newest is not None:
            inputs = {f: np.concatenate([np.asarray(e["inputs"][f], float) for e in recent if e["status"] == 200]
                                        or [np.zeros(0)]) for f in self.spec.feature_names}
            found = self._drift(inputs, newest["reference"])
            conditions += drift_conditions("inputs", found, self.thresholds, newest["version"])
            drift_rows += [{"source": "inputs", **d.as_dict()} for d in found]
            distributions = {f: (newest["reference"][f], inputs[f]) for f in self.spec.feature_names
                             if f in newest["reference"]}

        data_window: dict[str, Any] = {}
        accuracy: list[dict[str, Any]] = []
        timelines: dict[str, tuple[list[float], list[float]]] = {}
        if snapshot.actuals is not None and snapshot.last is not None:
            end = snapshot.last
            start = end - np.timedelta64(int(window.total_seconds() // 60), "m")
            data_window = {"start": str(start), "end": str(end)}
            found = self._collected_drift(models, snapshot, start, end)
            conditions += drift_conditions("collected", found, self.thresholds,
                                           newest["version"] if newest else None)
            drift_rows += [{"source": "collected", **d.as_dict()} for d in found]
            joined = self._joined(all_entries, snapshot, start, end)
            for (target, version), (ts, predicted, actual) in sorted(joined.items()):
                m = regression_metrics(actual, predicted)
                record = self.registry.get(version) or {}
                holdout = ((record.get("metrics") or {}).get("served") or {}).get("mape")
                production = target in models and models[target]["version"] == version
                accuracy.append({"target": target, "model_version": version, "rows": m["n"],
                                 "mape": m["mape"], "rmse": m["rmse"], "holdout_mape": holdout,
                                 "production": production})
                if production and holdout is not None and m["n"] >= ACCURACY_MIN_ROWS:
                    conditions.append(accuracy_condition(target, version, m["mape"], holdout, int(m["n"]),
                                                         self.thresholds))
                if production:
                    order = np.argsort(ts)
                    pick = order[np.linspace(0, len(order) - 1, min(len(order), TIMELINE_POINTS)).astype(int)]
                    timelines[target] = (predicted[pick].tolist(), actual[pick].tolist())

        window_info = {"length": str(window), "requests_since": iso_utc(now - window.total_seconds()),
                       "data": data_window}
        events = self.book.apply(conditions, run_id, window_info)
        report_location = self.backends.blobs.location(self._report_folder(run_id) + "report.html")
        outcomes = [self.notifier.notify(e, report_location) for e in events]
        retrain = self._closed_loop(events, snapshot.cursor)
        report = {"run_id": run_id, "at": iso_utc(now), "cause": cause, "window": window_info,
                  "operations": ops, "drift": drift_rows, "accuracy": accuracy,
                  "conditions": [c.as_dict() for c in conditions],
                  "alerts": {"events": [{"event": e.event, **e.alert} for e in events],
                             "notifications": outcomes},
                  "models": {t: m["version"] for t, m in models.items()}, "retrain_request": retrain}
        paths = self._write(report, distributions, timelines, models, accuracy)
        summary = {"run_id": run_id, "report": paths, "firing": sum(c.firing for c in conditions),
                   "events": [{"event": e.event, "alert_id": e.alert["alert_id"],
                               "severity": e.alert.get("severity")} for e in events],
                   "retrain_request": retrain}
        self.backends.documents.set(names.MONITOR_RUNS, run_id, {
            "run_id": run_id, "at": report["at"], "cause": cause, "accuracy": accuracy,
            "operations": ops, "firing": summary["firing"], "events": summary["events"],
            "report": paths["html"]})
        log.info("monitor run finished", fields=summary)
        return summary

    def _closed_loop(self, events: list[Any], cursor: str | None) -> str | None:
        """Publish a retrain request for a new high drift or accuracy alert (when enabled)."""
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

    def _history(self, models: Mapping[str, Any], accuracy: list[dict[str, Any]]) -> dict:
        live = {(a["target"], a["model_version"]): a["mape"] for a in accuracy}
        for _, run in self.backends.documents.query(where(names.MONITOR_RUNS, order_by="at",
                                                          descending=True, limit=20)):
            for a in run.get("accuracy", []):
                live.setdefault((a["target"], a["model_version"]), a["mape"])
        history = {}
        for target in models:
            versions = list(reversed(self.registry.versions(target, 8)))
            history[target] = ([v["version"] for v in versions],
                               [((v.get("metrics") or {}).get("served") or {}).get("mape") for v in versions],
                               [live.get((target, v["version"])) for v in versions])
        return history

    @staticmethod
    def _report_folder(run_id: str) -> str:
        return f"{names.REPORTS}{run_id}/"

    def _write(self, report: dict[str, Any], distributions: Mapping[str, Any],
               timelines: Mapping[str, Any], models: Mapping[str, Any],
               accuracy: list[dict[str, Any]]) -> dict[str, str]:
        body = json.dumps(report, indent=1, default=str).encode()
        page = render(report, distributions, timelines, self._history(models, accuracy)).encode()
        folder = self._report_folder(report["run_id"])
        self.backends.blobs.create(folder + "report.json", body, "application/json")
        self.backends.blobs.create(folder + "report.html", page, "text/html")
        # Fixed names for "the latest report", overwritten by every run.
        self.backends.blobs.write(f"{names.REPORTS}latest.json", body, "application/json")
        self.backends.blobs.write(f"{names.REPORTS}latest.html", page, "text/html")
        return {"json": folder + "report.json", "html": folder + "report.html",
                "latest_html": f"{names.REPORTS}latest.html"}
