"""One settings object, read from the environment.

Every variable is declared once in ``VARIABLES`` with its default and meaning;
the README's configuration table is checked against this list by a test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

PROJECT_ROOT = Path(__file__).resolve().parents[2]

BACKENDS = ("embedded", "gcp")


class ConfigError(ValueError):
    """An environment variable holds a value the project cannot use."""


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, default, parser and meaning."""

    name: str
    default: str
    doc: str
    parse: Callable[[str], object] = str
    secret: bool = False


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _backend(text: str) -> str:
    if text not in BACKENDS:
        raise ValueError(f"must be one of {', '.join(BACKENDS)}")
    return text


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or a positive integer")
    return value


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("must be true or false")
    return lowered in ("true", "1", "yes")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


def _json_of(kind: type, label: str) -> Callable[[str], str]:
    """A parser that checks the text is JSON of ``kind`` and keeps it as text."""

    def parse(text: str) -> str:
        import json

        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        if not isinstance(value, kind):
            raise ValueError(f"must be a JSON {label}")
        return text

    return parse


_json_list = _json_of(list, "list")
_json_object = _json_of(dict, "object")


def float_fields_from_json(cls: type, text: str, what: str) -> object:
    """A dataclass of float fields from a JSON object overriding its defaults."""
    import json
    from dataclasses import fields as dataclass_fields

    values = json.loads(text) if text.strip() else {}
    unknown = sorted(set(values) - {f.name for f in dataclass_fields(cls)})
    if unknown:
        raise ValueError(f"unknown {what}: {unknown}")
    return cls(**{k: float(v) for k, v in values.items()})


def _duration(text: str) -> str:
    from shared.platform.durations import parse_duration

    parse_duration(text)
    return text


def _topic_id(text: str) -> str:
    # Pub/Sub rejects ids shorter than 3 characters or not starting with a letter.
    if len(text) < 3 or not text[0].isalpha():
        raise ValueError("a topic id has at least 3 characters and starts with a letter")
    return text


VARIABLES: tuple[Variable, ...] = (
    Variable("BACKEND", "embedded", "`embedded` (local directory, SQLite, in-process bus) or `gcp` "
             "(Cloud Storage, Firestore, Pub/Sub; honours the `*_EMULATOR_HOST` variables).", _backend),
    Variable("GOOGLE_CLOUD_PROJECT", "local-project", "Project id for every Google Cloud client, "
             "emulators included."),
    Variable("BUCKET", "forecast-data", "Cloud Storage bucket holding raw, processed, models, "
             "predictions and reports (gcp backend)."),
    Variable("FIRESTORE_DATABASE", "(default)", "Firestore database id (gcp backend)."),
    Variable("STATE_DIR", str(PROJECT_ROOT / ".state"), "Where the embedded backend keeps blobs, "
             "documents and the event bus."),
    Variable("DATASET_SPEC", "tetouan_power", "Dataset spec: a name in `shared/core/specs/` or a path "
             "to a spec JSON file."),
    Variable("TOPIC_DATA_READY", "data-ready", "Topic collect_data publishes accepted batches on.",
             _topic_id),
    Variable("TOPIC_MODEL_UPDATED", "model-updated", "Topic retrain publishes promotions on.",
             _topic_id),
    Variable("TOPIC_ALERTS", "alerts", "Topic for alerts and rejected batches.", _topic_id),
    Variable("DEAD_LETTER_SUFFIX", "-dead-letter", "Dead-letter topic of a topic T is T plus this "
             "suffix; its pull subscription adds `-pull`."),
    Variable("EVENT_MAX_DELIVERY_ATTEMPTS", "5", "Deliveries of one message to one subscriber "
             "before it is parked as a dead letter (Pub/Sub allows 5 to 100).", _positive_int),
    Variable("EVENT_MIN_BACKOFF_SECONDS", "1", "First retry delay of a failed delivery; doubles "
             "on each retry.", _positive_float),
    Variable("EVENT_MAX_BACKOFF_SECONDS", "60", "Ceiling of the retry delay.", _positive_float),
    Variable("EVENT_ACK_DEADLINE_SECONDS", "600", "How long one push delivery may take before it "
             "counts as failed.", _positive_float),
    Variable("COLLECT_SOURCES", '[{"name": "replay", "type": "replay"}]', "JSON list of sources "
             "collect_data reads (see docs/collect.md for the keys of `replay` and `http` sources).",
             _json_list),
    Variable("COLLECT_WINDOW", "P1D", "Window one collection takes after the last stored "
             "timestamp (ISO 8601 or `7d`, `6h`).", _duration),
    Variable("QUALITY_THRESHOLD", "0.8", "Lowest quality score at which a batch is accepted.",
             _fraction),
    Variable("TRAINING_PARAMS", "{}", "JSON object merged over the spec's estimator parameters "
             "(e.g. `{\"max_iter\": 100}`).", _json_object),
    Variable("CLAIM_LEASE_SECONDS", "120", "How long a running retrain's claim on an event "
             "lasts before a redelivery may take it over (a retrain is idempotent, so a lease "
             "shorter than the function timeout risks only repeated work).", _positive_float),
    Variable("CODE_VERSION", "dev", "Code version recorded in model metadata and part of model "
             "version ids; `deploy.sh` sets it to the bundle's content hash."),
    Variable("MODEL_REFRESH_SECONDS", "10", "Predict checks the production pointers (and "
             "whether newer actuals were stored) at most this often.", _positive_float),
    Variable("PREDICT_MAX_INSTANCES", "10000", "Largest batch one predict request may carry.",
             _positive_int),
    Variable("PREDICT_API_KEY", "", "Optional key predict requires in `X-API-Key` (compared in "
             "constant time; set it from Secret Manager; never logged).", str, True),
    Variable("PREDICT_THREADS", "0", "Threads that share a large batch (0: up to 4, by CPU count).",
             _non_negative_int),
    Variable("PREDICTION_LOG_FLUSH_RECORDS", "200", "Predict writes its buffered request log "
             "once it holds this many requests...", _positive_int),
    Variable("PREDICTION_LOG_FLUSH_SECONDS", "30", "...or once its oldest entry is this old.",
             _positive_float),
    Variable("MONITOR_WINDOW", "P1D", "Window monitor evaluates: requests by wall-clock time, "
             "collected data and accuracy by data time.", _duration),
    Variable("MONITOR_PREDICTION_LOOKBACK", "P7D", "How far back monitor reads the prediction log "
             "to join predictions with actuals that arrived later.", _duration),
    Variable("ALERT_THRESHOLDS", "{}", "JSON object overriding alert thresholds: mape_increase "
             "0.02, latency_spike 2.0 (s), error_rate 0.05, cost_daily 0.20 (USD), drift_share 0.5, "
             "psi_warn 0.1, psi_alert 0.2, ks_pvalue 0.05, ks_effect 0.1.", _json_object),
    Variable("ALERT_COOLDOWN", "PT6H", "An open alert notifies again only after this long "
             "(at once if its severity rises).", _duration),
    Variable("ALERT_WEBHOOK_URL", "", "Optional Slack-compatible webhook for new and resolved "
             "alerts (a secret: never logged).", str, True),
    Variable("MONITOR_AUTO_RETRAIN", "false", "When true, a new high drift or accuracy alert "
             "publishes a retrain request (off by default: see docs/monitor.md).", _boolean),
    Variable("COST_MODEL", "{}", "JSON object overriding the cost estimate's prices and sizes: "
             "vcpu_second_usd 0.000024, gib_second_usd 0.0000025, invocation_usd 0.0000004, "
             "vcpu 1, memory_gib 0.5.", _json_object),
    Variable("LOG_LEVEL", "INFO", "Lowest severity written to the JSON log "
             "(DEBUG, INFO, WARNING, ERROR)."),
)



@dataclass(frozen=True)
class Settings:
    """The project's configuration, one attribute per variable in ``VARIABLES``."""

    backend: str
    project: str
    bucket: str
    firestore_database: str
    state_dir: Path
    dataset_spec: str
    topic_data_ready: str
    topic_model_updated: str
    topic_alerts: str
    dead_letter_suffix: str
    event_max_delivery_attempts: int
    event_min_backoff_seconds: float
    event_max_backoff_seconds: float
    event_ack_deadline_seconds: float
    collect_sources: str
    collect_window: str
    quality_threshold: float
    training_params: str
    claim_lease_seconds: float
    code_version: str
    model_refresh_seconds: float
    predict_max_instances: int
    predict_api_key: str = field(repr=False)  # a secret: never in a repr or log
    predict_threads: int
    prediction_log_flush_records: int
    prediction_log_flush_seconds: float
    monitor_window: str
    monitor_prediction_lookback: str
    alert_thresholds: str
    alert_cooldown: str
    alert_webhook_url: str = field(repr=False)  # a secret: never in a repr or log
    monitor_auto_retrain: bool
    cost_model: str
    log_level: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        """Read every variable from ``environ`` (default ``os.environ``).

        Raises ConfigError naming the variable when a value does not parse.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for var in VARIABLES:
            text = env.get(var.name, "") or var.default
            try:
                values[attribute_name(var.name)] = var.parse(text)
            except ValueError as exc:
                raise ConfigError(f"{var.name}={text!r}: {exc}") from exc
        values["state_dir"] = Path(str(values["state_dir"])).expanduser().resolve()
        values.update(overrides)
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.event_max_backoff_seconds < settings.event_min_backoff_seconds:
            raise ConfigError("EVENT_MAX_BACKOFF_SECONDS must not be below EVENT_MIN_BACKOFF_SECONDS")
        return settings

    @property
    def topics(self) -> tuple[str, str, str]:
        return (self.topic_data_ready, self.topic_model_updated, self.topic_alerts)

    def dead_letter_topic(self, topic: str) -> str:
        return f"{topic}{self.dead_letter_suffix}"

    def dead_letter_subscription(self, topic: str) -> str:
        return f"{self.dead_letter_topic(topic)}-pull"


def attribute_name(variable_name: str) -> str:
    """The Settings attribute that holds an environment variable's value."""
    return {"GOOGLE_CLOUD_PROJECT": "project"}.get(variable_name, variable_name.lower())

