"""The predict function's behaviour: routes, freshness checks, auth, logging of requests.

``functions/predict/main.py`` builds one ``PredictService`` per instance at
import (loading the models before the first request) and hands it each request.
"""

from __future__ import annotations

import hmac
import threading
import time
import uuid
from typing import Any, Callable

from shared.platform.backends import Backends
from shared.core.dataset_spec import DatasetSpec
from shared.core.features import HistoryConfig
from shared.platform.http import ApiError, read_json_object
from shared.platform.log import get_logger
from shared.predict.openapi import docs_page, document
from shared.predict.api import PredictRequest, parse_request, response
from shared.predict.prediction_log import PredictionLog
from shared.core.recent_actuals import RecentActuals
from shared.core.registry import Registry
from shared.predict.serving import ModelCache, Predictions, default_threads, predict
from shared.platform.settings import Settings

log = get_logger("predict")
PREDICT_PATHS = ("/", "/predict")
GET_PATHS = ("/health", "/openapi.json", "/docs")


class PredictService:
    """Everything one predict instance holds: models, actuals, the request log."""

    def __init__(self, settings: Settings, backends: Backends, spec: DatasetSpec,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.spec = spec
        self.clock = clock
        self.models = ModelCache(Registry(settings, backends), spec, clock)
        self.actuals = RecentActuals(backends, spec)
        self.history = HistoryConfig.from_spec(spec)
        self.log = PredictionLog(backends.blobs, settings.prediction_log_flush_records,
                                 settings.prediction_log_flush_seconds)
        self.threads = settings.predict_threads or default_threads()
        self.openapi = document(spec, settings.predict_max_instances)
        self.docs = docs_page(self.openapi)
        self._check_lock = threading.Lock()

    # -- freshness ------------------------------------------------------------------

    def check_now(self) -> None:
        """Look at the production pointers and the dataset cursor, load what changed."""
        self.models.refresh()
        try:
            self.actuals.refresh()
        except Exception as exc:  # keep serving on the actuals we have
            log.error("actuals refresh failed", fields={"error": f"{type(exc).__name__}: {exc}"})

    def maybe_check(self) -> None:
        """``check_now`` at most every MODEL_REFRESH_SECONDS; one thread checks, the rest serve."""
        last = self.models.last_check
        if last is not None and self.clock() - last < self.settings.model_refresh_seconds:
            return
        if self._check_lock.acquire(blocking=False):
            try:
                self.check_now()
            finally:
                self._check_lock.release()

    # -- routes ---------------------------------------------------------------------

    def route(self, request: Any) -> tuple[Any, int, dict[str, str]]:
        """Dispatch one HTTP request: (body, status, extra headers)."""
        path = request.path.rstrip("/") or "/"
        if path.startswith("/projects/") and "/topics/" in path:
            return self.model_updated(request), 200, {}
        if path in PREDICT_PATHS:
            if request.method != "POST":
                return {"error": f"method {request.method} not allowed"}, 405, {"Allow": "POST"}
            self._authorize(request)
            return self.predict(request)
        if path in GET_PATHS:
            if request.method != "GET":
                return {"error": f"method {request.method} not allowed"}, 405, {"Allow": "GET"}
            if path == "/health":
                return self.health()
            if path == "/openapi.json":
                return self.openapi, 200, {}
            return self.docs, 200, {"Content-Type": "text/html; charset=utf-8"}
        raise ApiError(404, f"no route {path}")

    def _authorize(self, request: Any) -> None:
        expected = self.settings.predict_api_key
        if expected:
            given = request.headers.get("X-API-Key", "")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise ApiError(401, "missing or wrong API key")

    def model_updated(self, request: Any) -> dict[str, Any]:
        """A model-updated push: reload at once (the push is acknowledged either way)."""
        self.check_now()
        return {"reloaded": {t: m.version for t, m in self.models.snapshot.models.items()},
                "errors": dict(self.models.errors)}

    def health(self) -> tuple[dict[str, Any], int, dict[str, str]]:
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
            "errors": dict(self.models.errors)}
        if missing:
            body["reason"] = f"no production model loaded for {', '.join(missing)}"
        return body, 503 if missing else 200, {}

    def predict(self, request: Any) -> tuple[dict[str, Any], int, dict[str, str]]:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        status, entry = 500, {"request_id": request_id}
        try:
            self.maybe_check()
            snapshot = self.models.snapshot
            parsed = parse_request(read_json_object(request, allow_empty=False), self.spec,
                                   self.settings.predict_max_instances, list(snapshot.order))
            missing = [t for t in parsed.targets if t not in snapshot.models]
            if missing:
                raise ApiError(503, f"no production model loaded for {', '.join(missing)}")
            result = predict(snapshot, self.actuals.snapshot.actuals, self.spec, self.history,
                             parsed.timestamps, parsed.weather, parsed.targets, self.threads)
            versions = {t: snapshot.models[t].version for t in parsed.targets}
            body = response(parsed, result, versions, self.spec)
            status = 200
            entry.update(self._logged(parsed, result, versions))
            return body, 200, {}
        except ApiError as exc:
            status = exc.status
            entry["error"] = exc.message
            entry["error_fields"] = [e.get("field") for e in exc.errors][:20]
            raise
        finally:
            latency = (time.perf_counter() - started) * 1000
            self.log.record({**entry, "time": time.time(), "status": status,
                             "latency_ms": round(latency, 3)})

    @staticmethod
    def _logged(parsed: PredictRequest, result: Predictions, versions: dict[str, str]) -> dict[str, Any]:
        return {"rows": len(parsed.timestamps), "versions": versions,
                "inputs": {"Timestamp": parsed.timestamps.astype(str).tolist(),
                           **{f: v.tolist() for f, v in parsed.weather.items()}},
                "predictions": {t: v.tolist() for t, v in result.values.items()},
                "history_used": {t: v.tolist() for t, v in result.history_used.items()}}
