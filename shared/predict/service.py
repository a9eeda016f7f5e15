"""The predict function's behaviour: hot-loaded models, freshness checks, predictions, the request log.

``functions/predict/main.py`` builds one ``PredictService`` per instance at
import (loading the models before the first request); ``shared.predict.api``
turns each HTTP request into calls on it.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.core.calendar_store import operator_calendar
from shared.core.dataset_spec import DatasetSpec
from shared.core.features import FeatureContext
from shared.core.recent_actuals import RecentActuals
from shared.core.registry import Registry
from shared.platform.backends import Backends
from shared.platform.errors import Unavailable
from shared.platform.log import get_logger
from shared.platform.settings import Settings
from shared.predict.api import PredictRequest
from shared.predict.generation import GenerationMarker, marker_path
from shared.predict.prediction_log import PredictionLog
from shared.predict.serving import InputCache, ModelCache, Predictions, default_threads, predict

log = get_logger("predict")


@dataclass(frozen=True)
class Served:
    """One request's predictions and the model version that served each target."""

    result: Predictions
    versions: dict[str, str]


class PredictService:
    """Everything one predict instance holds: models, actuals, the request log."""

    def __init__(self, settings: Settings, backends: Backends, spec: DatasetSpec,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.spec = spec
        self.clock = clock
        self.max_instances = settings.predict_max_instances
        self.backends = backends
        self.context = FeatureContext.from_spec(spec)
        self._calendar: dict[str, Any] = {}
        self.models = ModelCache(Registry(settings, backends), self.context, clock)
        self.actuals = RecentActuals(backends, spec)
        self.log = PredictionLog(backends.blobs, settings.prediction_log_flush_records,
                                 settings.prediction_log_flush_seconds, settings.prediction_log_max_rows)
        self.threads = settings.predict_threads or default_threads()
        self.inputs = InputCache()
        self._check_lock = threading.Lock()
        self._push_lock = threading.Lock()
        self._last_push_check: float | None = None
        self._check_due: float | None = None  # a coalesced push's check, brought forward
        self.marker = GenerationMarker(marker_path(settings.backend, settings.project, settings.bucket,
                                                   str(settings.state_dir), settings.dataset_spec))

    # -- freshness ------------------------------------------------------------------

    def check_now(self) -> None:
        """Look at the production pointers and the dataset cursor, load what changed."""
        self.models.refresh()
        try:
            self.actuals.refresh()
        except Exception as exc:  # keep serving on the actuals we have
            log.error("actuals refresh failed", fields={"error": f"{type(exc).__name__}: {exc}"})
        try:
            self._refresh_calendar()
        except Exception as exc:  # keep serving with the calendar we have
            log.error("calendar refresh failed", fields={"error": f"{type(exc).__name__}: {exc}"})

    def _refresh_calendar(self) -> None:
        """Pick up special days an operator added (one document read per check)."""
        extra = operator_calendar(self.backends.documents, self.spec)
        if extra != self._calendar:
            self.context = FeatureContext.from_spec(self.spec, extra)
            self._calendar = extra

    def maybe_check(self) -> None:
        """``check_now`` at most every MODEL_REFRESH_SECONDS, or at once when another worker of
        this instance announced a reload; one thread checks, the rest serve."""
        last, now = self.models.last_check, self.clock()
        due = self._check_due is not None and now >= self._check_due
        announced = self.marker.poll()  # another worker of this instance reloaded
        if last is not None and now - last < self.settings.model_refresh_seconds and not due and not announced:
            return
        if self._check_lock.acquire(blocking=False):
            try:
                self._check_due = None
                self.check_now()
                if announced:
                    self.marker.handled(announced)
                if due:  # the coalesced pushes' reload: the other workers follow
                    self.marker.announce()
            finally:
                self._check_lock.release()

    def available_targets(self) -> list[str]:
        """The targets a request may default to: those of the current snapshot (checked first)."""
        self.maybe_check()
        return list(self.models.snapshot.order)

    # -- operations -----------------------------------------------------------------

    def model_updated(self) -> dict[str, Any]:
        """A model-updated push: reload at once, unless a push already did within the refresh
        period; then the check is only brought forward to that period's end, so a burst of
        pushes costs at most one registry read per period (the push is acknowledged either way)."""
        now = self.clock()
        period = self.settings.model_refresh_seconds
        with self._push_lock:
            last = self._last_push_check
            coalesced = last is not None and now - last < period
            if last is not None and coalesced:
                self._check_due = last + period
            else:
                self._last_push_check = now
        if not coalesced:
            self.check_now()
            self.marker.announce()
        return {"reloaded": {t: m.version for t, m in self.models.snapshot.models.items()},
                "errors": dict(self.models.errors), "coalesced": coalesced}

    def health(self) -> dict[str, Any]:
        """The loaded models and actuals; ``status`` is ``unavailable`` while a target has no model."""
        snapshot = self.models.snapshot
        targets = {}
        for target in self.spec.target_names:
            loaded = snapshot.models.get(target)
            entry: dict[str, Any] = {"version": loaded.version if loaded else None,
                                     "loaded_at": loaded.loaded_at if loaded else None,
                                     "sha256": loaded.sha256 if loaded else None}
            if target in self.models.errors:
                entry["error"] = self.models.errors[target]
            targets[target] = entry
        missing = [t for t, e in targets.items() if e["version"] is None]
        actuals = self.actuals.snapshot
        body: dict[str, Any] = {
            "status": "unavailable" if missing else "ok", "targets": targets,
            "seconds_since_pointer_check": self.models.seconds_since_check(),
            "actuals": {"last_timestamp": str(actuals.last) if actuals.last is not None else None,
                        "rows": actuals.rows},
            "errors": dict(self.models.errors), "prediction_log": self.log.status()}
        if missing:
            body["reason"] = f"no production model loaded for {', '.join(missing)}"
        return body

    def predict(self, request: PredictRequest) -> Served:
        """Predict every requested target from one snapshot; Unavailable when a target has no model."""
        snapshot = self.models.snapshot
        missing = [t for t in request.targets if t not in snapshot.models]
        if missing:
            raise Unavailable(f"no production model loaded for {', '.join(missing)}")
        result = predict(snapshot, self.actuals.snapshot.actuals, self.context,
                         request.timestamps, request.weather, request.targets, self.threads, self.inputs)
        return Served(result, {t: snapshot.models[t].version for t in request.targets})

    # -- the request log ------------------------------------------------------------

    @staticmethod
    def logged(request: PredictRequest, served: Served) -> dict[str, Any]:
        """What the request log keeps of a served request (monitor joins it with actuals)."""
        result = served.result
        return {"rows": len(request.timestamps), "versions": served.versions,
                "inputs": {"Timestamp": request.timestamps.astype(str).tolist(),
                           **{f: v.tolist() for f, v in request.weather.items()}},
                "predictions": dict(zip(result.targets, result.values.T.tolist(), strict=True)),
                "variants": dict(zip(result.targets, result.variant_names().T.tolist(), strict=True)),
                "intervals": {t: {"lower": _bounds(lo), "upper": _bounds(up)}
                              for t, lo, up in zip(result.targets, result.lower.T, result.upper.T, strict=True)}}

    def record_request(self, status: int, latency_ms: float, details: Mapping[str, Any]) -> None:
        """Append one request's outcome to the buffered request log monitor reads."""
        # Python's generator, reseeded in every forked worker: uuid4 reads the OS's random
        # source, a system call that hands the GIL to another request thread.
        self.log.record({"request_id": f"{random.getrandbits(128):032x}", **details, "time": time.time(),
                         "status": status, "latency_ms": round(latency_ms, 3)})


def _bounds(values: np.ndarray) -> list[float | str]:
    """Interval bounds as the log keeps them: a missing bound (NaN: the serving member has no
    interval) as the string "NaN". Bare NaN is not JSON and BigQuery's FLOAT64 arrays cannot
    hold null; BigQuery reads "NaN" as NaN, as numpy does (terraform/bigquery.tf)."""
    listed = values.tolist()
    return listed if np.isfinite(values).all() else [v if math.isfinite(v) else "NaN" for v in listed]
