"""One settings object, read from the environment.

Every variable is declared once in ``VARIABLES`` with its default, meaning, a
parser that returns the typed value (a number, a timedelta, a tuple of frozen
dataclasses...) and a formatter that writes it back as text. Parsing happens once,
in ``Settings.from_env``: services receive typed values and never parse settings
text; an invalid value raises ConfigError naming the variable. The README's
configuration table is checked against this list by a test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.platform.errors import ConfigError
from shared.platform.ports import RetryPolicy
from shared.platform.structs import FrozenJson, from_json_object
from shared.platform.timefmt import format_duration, parse_duration

PROJECT_ROOT = Path(__file__).resolve().parents[2]

BACKENDS = ("embedded", "gcp")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SOURCE_TYPES = ("replay", "http")
# The record formats shared.core.frames parses (a unit test keeps the two equal;
# the platform layer may not import core).
SOURCE_FORMATS = ("csv", "json")
# The retry schedule must span this many claim leases (Settings.check_redelivery_outlasts_lease).
REDELIVERY_MARGIN = 2.0

__all__ = ["BACKENDS", "LOG_LEVELS", "PROJECT_ROOT", "REDELIVERY_MARGIN", "SOURCE_FORMATS", "SOURCE_TYPES",
           "VARIABLES", "ConfigError", "CostModel", "Settings", "SourceConfig", "Thresholds", "Variable",
           "attribute_name"]


# -- typed values of the JSON variables ---------------------------------------------


@dataclass(frozen=True)
class SourceConfig:
    """One configured source (an entry of COLLECT_SOURCES); keys in docs/collect.md."""

    name: str
    type: str
    path: str = ""
    url: str = ""
    format: str = "csv"
    api_key_env: str = ""
    api_key_header: str = "X-API-Key"
    min_interval_seconds: float = 0.0
    cache_ttl_seconds: float = 0.0
    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    retries: int = 3
    backoff_factor: float = 0.5
    max_bytes: int = 32 * 1024 * 1024  # largest response body read; a larger one is a failure

    def __post_init__(self) -> None:
        if self.type not in SOURCE_TYPES:
            raise ValueError(f"type must be one of {SOURCE_TYPES}")
        if self.type == "http" and not urlsplit(self.url).scheme.startswith("http"):
            raise ValueError("an http source needs an http(s) url")
        if self.format not in SOURCE_FORMATS:
            raise ValueError(f"format must be one of {SOURCE_FORMATS}")
        # The name becomes part of object paths and batch ids.
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError("name must be letters, digits, - or _")
        _non_negative(self, "min_interval_seconds", "cache_ttl_seconds", "retries", "backoff_factor")
        _positive(self, "connect_timeout", "read_timeout", "max_bytes")


@dataclass(frozen=True)
class Thresholds:
    """ALERT_THRESHOLDS, with the steel document's defaults."""

    mape_increase: float = 0.02   # fraction: 0.02 = two percentage points of MAPE
    latency_spike: float = 2.0    # seconds, p95 request latency
    error_rate: float = 0.05      # share of requests answered with a 5xx
    cost_daily: float = 0.20      # USD per day
    drift_share: float = 0.5      # share of features drifted
    psi_warn: float = 0.1
    psi_alert: float = 0.2
    ks_pvalue: float = 0.05
    ks_effect: float = 0.1        # minimum KS statistic that counts as drift
    out_of_range_share: float = 0.3  # share of values outside the training range (+-10 % of its span)
    stuck_share: float = 0.6      # share of consecutive values repeating the previous one

    def __post_init__(self) -> None:
        _non_negative(self, *(f for f in asdict(self)))


@dataclass(frozen=True)
class CostModel:
    """COST_MODEL: published per-unit prices (Cloud Run functions, tier 1) and the function's size."""

    vcpu_second_usd: float = 0.000024
    gib_second_usd: float = 0.0000025
    invocation_usd: float = 0.0000004
    vcpu: float = 1.0
    memory_gib: float = 0.5

    def __post_init__(self) -> None:
        _non_negative(self, *(f for f in asdict(self)))


def _non_negative(obj: object, *names: str) -> None:
    bad = [n for n in names if getattr(obj, n) < 0]
    if bad:
        raise ValueError(f"{', '.join(bad)}: must not be negative")


def _positive(obj: object, *names: str) -> None:
    bad = [n for n in names if not getattr(obj, n) > 0]
    if bad:
        raise ValueError(f"{', '.join(bad)}: must be positive")


# -- parsers: text -> typed value (ValueError says what is wrong) ----------------------


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


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or a positive integer")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


def _one_of(choices: tuple[str, ...], upper: bool = False) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().upper() if upper else text
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("must be true or false")
    return lowered in ("true", "1", "yes")


def _topic_id(text: str) -> str:
    # Pub/Sub rejects ids shorter than 3 characters or not starting with a letter.
    if len(text) < 3 or not text[0].isalpha():
        raise ValueError("a topic id has at least 3 characters and starts with a letter")
    return text


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from exc


def _sources(text: str) -> tuple[SourceConfig, ...]:
    entries = _json(text)
    if not isinstance(entries, list) or not entries:
        raise ValueError("must be a non-empty JSON list of source objects")
    configs = tuple(from_json_object(SourceConfig, entry, f"entry {i}") for i, entry in enumerate(entries))
    if len({c.name for c in configs}) != len(configs):
        raise ValueError("source names must be unique")
    return configs


def _training_params(text: str) -> Mapping[str, Any]:
    value = _json(text)
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return FrozenJson(value)


def _json_dataclass(cls: type) -> Callable[[str], Any]:
    """A parser for a JSON object overriding the defaults of the frozen dataclass ``cls``."""
    return lambda text: from_json_object(cls, _json(text) if text.strip() else {})


# -- formatters: typed value -> text that parses back to it ---------------------------


def _text_of_bool(value: Any) -> str:
    return "true" if value else "false"


def _text_of_sources(value: Any) -> str:
    return json.dumps([asdict(c) for c in value])


def _text_of_dataclass(value: Any) -> str:
    return json.dumps(asdict(value))


def _text_of_mapping(value: Any) -> str:
    return json.dumps(dict(value))


def _text_of_duration(value: Any) -> str:
    return format_duration(value)


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, default, meaning, parser and formatter."""

    name: str
    default: str
    doc: str
    parse: Callable[[str], Any] = str
    secret: bool = False
    format: Callable[[Any], str] = str
    echo: bool = True  # whether a parse error may quote the value (not for secrets or URLs)


def _duration_variable(name: str, default: str, doc: str) -> Variable:
    return Variable(name, default, doc, parse_duration, format=_text_of_duration)


VARIABLES: tuple[Variable, ...] = (
    Variable("BACKEND", "embedded", "`embedded` (local directory, SQLite, in-process bus) or `gcp` "
             "(Cloud Storage, Firestore, Pub/Sub; honours the `*_EMULATOR_HOST` variables).", _one_of(BACKENDS)),
    Variable("GOOGLE_CLOUD_PROJECT", "local-project", "Project id for every Google Cloud client, "
             "emulators included."),
    Variable("BUCKET", "forecast-data", "Cloud Storage bucket holding raw, processed, models, "
             "predictions and reports (gcp backend)."),
    Variable("FIRESTORE_DATABASE", "(default)", "Firestore database id (gcp backend)."),
    Variable("STATE_DIR", str(PROJECT_ROOT / ".state" / "local"), "Where the embedded backend keeps "
             "blobs, documents and the event bus (the local stack's state, which the CLI reads too)."),
    Variable("DATASET_SPEC", "tetouan_power", "Dataset spec: a name in `shared/core/specs/` or a path "
             "to a spec JSON file."),
    Variable("TOPIC_DATA_READY", "data-ready", "Topic collect_data publishes accepted batches on.",
             _topic_id),
    Variable("TOPIC_MODEL_UPDATED", "model-updated", "Topic retrain publishes promotions on.",
             _topic_id),
    Variable("TOPIC_ALERTS", "alerts", "Topic for alerts and rejected batches.", _topic_id),
    Variable("DEAD_LETTER_SUFFIX", "-dead-letter", "Dead-letter topic of a topic T is T plus this "
             "suffix; its pull subscription adds `-pull`."),
    Variable("EVENT_MAX_DELIVERY_ATTEMPTS", "10", "Deliveries of one message to one subscriber "
             "before it is parked as a dead letter (Pub/Sub allows 5 to 100). With the backoffs, "
             "the retries must span twice `CLAIM_LEASE_SECONDS`, or every function refuses to start "
             "(docs/retrain.md).", _positive_int),
    Variable("EVENT_MIN_BACKOFF_SECONDS", "10", "First retry delay of a failed delivery; doubles "
             "on each retry (10, 20, 40... s: the nine retries span 2430 s).", _positive_float),
    Variable("EVENT_MAX_BACKOFF_SECONDS", "600", "Ceiling of the retry delay (Pub/Sub allows up to "
             "600).", _positive_float),
    Variable("EVENT_ACK_DEADLINE_SECONDS", "600", "How long one push delivery may take before it "
             "counts as failed.", _positive_float),
    Variable("COLLECT_SOURCES", '[{"name": "replay", "type": "replay"}]', "JSON list of sources "
             "collect_data reads (see docs/collect.md for the keys of `replay` and `http` sources).",
             _sources, format=_text_of_sources, echo=False),
    _duration_variable("COLLECT_WINDOW", "P1D", "Window one collection takes after the last "
                       "stored timestamp (ISO 8601 or `7d`, `6h`)."),
    Variable("QUALITY_THRESHOLD", "0.8", "Lowest quality score at which a batch is accepted.",
             _fraction),
    Variable("TRAINING_PARAMS", "{}", "JSON object merged over the spec's estimator parameters "
             "(e.g. `{\"max_iter\": 100}`).", _training_params, format=_text_of_mapping),
    Variable("CLAIM_LEASE_SECONDS", "120", "How long a running retrain's claim on an event "
             "lasts before a redelivery may take it over (a retrain is idempotent, so a lease "
             "shorter than the function timeout risks only repeated work; the retry schedule must "
             "reach twice past it, so a crashed retrain is redelivered before it is dead-lettered).",
             _positive_float),
    Variable("CODE_VERSION", "dev", "Code version recorded in model metadata and part of model "
             "version ids; `deploy.sh` sets it to the bundle's content hash."),
    Variable("MODEL_REFRESH_SECONDS", "10", "Predict checks the production pointers (and "
             "whether newer actuals were stored) at most this often.", _positive_float),
    Variable("PREDICT_MAX_INSTANCES", "10000", "Largest batch one predict request may carry.",
             _positive_int),
    Variable("MAX_REQUEST_BYTES", "8388608", "Largest request body an HTTP function reads; a larger "
             "one is refused with 413 before it is read (a 10,000-observation batch is about 1.5 MB).",
             _positive_int),
    Variable("PREDICT_API_KEY", "", "Optional key predict requires in `X-API-Key` (compared in "
             "constant time; set it from Secret Manager; never logged).", str, True),
    Variable("PREDICT_THREADS", "0", "Threads that share a large batch (0: up to 4, by CPU count).",
             _non_negative_int),
    Variable("PREDICTION_LOG_FLUSH_RECORDS", "200", "Predict writes its buffered request log "
             "once it holds this many requests...", _positive_int),
    Variable("PREDICTION_LOG_FLUSH_SECONDS", "30", "...or once its oldest entry is this old.",
             _positive_float),
    Variable("FRESHNESS_PERIODS", "2", "monitor alerts when no batch has been accepted for this many "
             "`COLLECT_WINDOW`s (high above 1.5 times as long).", _positive_int),
    Variable("DEPLOYMENT_NAME", "", "Name alert messages carry, so an operator of several "
             "deployments knows which one speaks (empty: the project id).", str),
    Variable("PREDICTION_LOG_MAX_ROWS", "50000", "Most predicted rows the request log buffers while "
             "storage fails; past it the oldest records are dropped and counted (`/health`, monitor).",
             _positive_int),
    _duration_variable("MONITOR_WINDOW", "P1D", "Window monitor evaluates: requests by wall-clock "
                       "time, collected data and accuracy by data time."),
    _duration_variable("MONITOR_PREDICTION_LOOKBACK", "P7D", "How far back monitor reads the "
                       "prediction log to join predictions with actuals that arrived later."),
    Variable("ALERT_THRESHOLDS", "{}", "JSON object overriding alert thresholds: mape_increase "
             "0.02, latency_spike 2.0 (s), error_rate 0.05, cost_daily 0.20 (USD), drift_share 0.5, "
             "psi_warn 0.1, psi_alert 0.2, ks_pvalue 0.05, ks_effect 0.1.", _json_dataclass(Thresholds),
             format=_text_of_dataclass),
    _duration_variable("ALERT_COOLDOWN", "PT6H", "An open alert notifies again only after this "
                       "long (at once if its severity rises)."),
    Variable("ALERT_WEBHOOK_URL", "", "Optional Slack-compatible webhook for new and resolved "
             "alerts (a secret: never logged).", str, True),
    Variable("MONITOR_AUTO_RETRAIN", "false", "When true, a new high accuracy alert (mape_increase) "
             "publishes a retrain request (off by default: see docs/monitor.md).", _boolean,
             format=_text_of_bool),
    Variable("COST_MODEL", "{}", "JSON object overriding the cost estimate's prices and sizes: "
             "vcpu_second_usd 0.000024, gib_second_usd 0.0000025, invocation_usd 0.0000004, "
             "vcpu 1, memory_gib 0.5.", _json_dataclass(CostModel),
             format=_text_of_dataclass),
    Variable("LOG_LEVEL", "INFO", "Lowest severity written to the JSON log "
             "(DEBUG, INFO, WARNING, ERROR).", _one_of(LOG_LEVELS, upper=True)),
)


@dataclass(frozen=True)
class Settings:
    """The project's configuration, one typed attribute per variable in ``VARIABLES``."""

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
    collect_sources: tuple[SourceConfig, ...]
    collect_window: timedelta
    quality_threshold: float
    training_params: Mapping[str, Any]
    claim_lease_seconds: float
    code_version: str
    model_refresh_seconds: float
    predict_max_instances: int
    max_request_bytes: int
    predict_api_key: str = field(repr=False)  # a secret: never in a repr or log
    predict_threads: int
    prediction_log_flush_records: int
    prediction_log_flush_seconds: float
    prediction_log_max_rows: int
    deployment_name: str
    freshness_periods: int
    monitor_window: timedelta
    monitor_prediction_lookback: timedelta
    alert_thresholds: Thresholds
    alert_cooldown: timedelta
    alert_webhook_url: str = field(repr=False)  # a secret: never in a repr or log
    monitor_auto_retrain: bool
    cost_model: CostModel
    log_level: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read and parse every variable from ``environ`` (default ``os.environ``).

        Raises ConfigError naming the variable when a value does not parse.
        ``overrides`` replace parsed values and must already be typed.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for var in VARIABLES:
            text = env.get(var.name, "") or var.default
            try:
                values[attribute_name(var.name)] = var.parse(text)
            except ValueError as exc:
                shown = f" (got {text!r})" if var.echo and not var.secret else ""
                raise ConfigError(f"{var.name}: {exc}{shown}") from exc
        values["state_dir"] = Path(str(values["state_dir"])).expanduser().resolve()
        values.update(overrides)
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.event_max_backoff_seconds < settings.event_min_backoff_seconds:
            raise ConfigError("EVENT_MAX_BACKOFF_SECONDS must not be below EVENT_MIN_BACKOFF_SECONDS")
        settings.check_redelivery_outlasts_lease()
        return settings

    def check_redelivery_outlasts_lease(self) -> None:
        """ConfigError unless a crashed retrain is redelivered after its claim has expired.

        A delivery that dies mid-retrain (SIGKILL, lost instance) leaves its claim
        ``running`` for ``CLAIM_LEASE_SECONDS``; until then every redelivery is refused
        (409) and spends one of the ``EVENT_MAX_DELIVERY_ATTEMPTS``. The redeliveries come
        after delays that double from ``EVENT_MIN_BACKOFF_SECONDS`` up to
        ``EVENT_MAX_BACKOFF_SECONDS`` (``RetryPolicy.schedule``), counted from the failed
        push, which ends after the claim was taken: a killed instance fails it at once
        (the case checked), a hung one at the ack deadline, which only moves every
        redelivery later. Pub/Sub does not document its factor and calls its backoff
        best effort, so the schedule must reach ``REDELIVERY_MARGIN`` times the lease,
        not just past it.
        """
        policy = RetryPolicy(self.event_max_delivery_attempts, self.event_min_backoff_seconds,
                             self.event_max_backoff_seconds, self.event_ack_deadline_seconds)
        needed = REDELIVERY_MARGIN * self.claim_lease_seconds
        if policy.reach() >= needed:
            return
        delays = [f"{d:g}" for d in policy.schedule()]
        terms = " + ".join(delays if len(delays) <= 6 else [*delays[:4], "...", delays[-1]])
        span = f"{terms} = {policy.reach():g} s" if delays else "0 s (no redelivery)"
        raise ConfigError(
            f"EVENT_MAX_DELIVERY_ATTEMPTS={self.event_max_delivery_attempts}, "
            f"EVENT_MIN_BACKOFF_SECONDS={self.event_min_backoff_seconds:g} and "
            f"EVENT_MAX_BACKOFF_SECONDS={self.event_max_backoff_seconds:g} redeliver an event for "
            f"{span} after its first delivery fails, less than "
            f"{REDELIVERY_MARGIN:g} x CLAIM_LEASE_SECONDS={self.claim_lease_seconds:g} = {needed:g} s: "
            "a retrain that crashes would be dead-lettered while its claim still blocks the "
            "redeliveries. Raise the attempts or the backoffs, or shorten the lease (docs/retrain.md).")

    def to_environ(self) -> dict[str, str]:
        """The environment that reproduces these settings (in a fresh process or module)."""
        return {var.name: var.format(getattr(self, attribute_name(var.name))) for var in VARIABLES}

    @property
    def topics(self) -> tuple[str, str, str]:
        """The three topics the functions publish on."""
        return (self.topic_data_ready, self.topic_model_updated, self.topic_alerts)


def attribute_name(variable_name: str) -> str:
    """The Settings attribute that holds an environment variable's value."""
    return {"GOOGLE_CLOUD_PROJECT": "project"}.get(variable_name, variable_name.lower())
