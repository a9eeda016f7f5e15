"""Settings: defaults, parsing errors that name the variable, README coverage."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from shared.platform.errors import ForecastError
from shared.platform.settings import (
    PROJECT_ROOT,
    VARIABLES,
    ConfigError,
    CostModel,
    Settings,
    SourceConfig,
    Thresholds,
    attribute_name,
)


def test_defaults_select_the_embedded_backend_and_the_design_card_topics():
    s = Settings.from_env({})
    assert s.backend == "embedded"
    assert s.topics == ("data-ready", "model-updated", "alerts")
    assert s.state_dir == (PROJECT_ROOT / ".state" / "local").resolve()
    assert s.event_max_delivery_attempts == 5


def test_the_default_state_dir_is_the_local_stacks():
    """The CLI and the functions read, by default, the state ``./deploy.sh local`` keeps."""
    from tools.localstack import DEFAULT_STATE

    assert Settings.from_env({}).state_dir == DEFAULT_STATE.resolve()


def test_every_variable_maps_to_a_settings_attribute():
    s = Settings.from_env({})
    for var in VARIABLES:
        assert hasattr(s, attribute_name(var.name)), var.name


@pytest.mark.parametrize("name,value", [
    ("BACKEND", "aws"), ("TOPIC_DATA_READY", "dr"), ("TOPIC_ALERTS", "1alerts"),
    ("EVENT_MAX_DELIVERY_ATTEMPTS", "0"), ("EVENT_MIN_BACKOFF_SECONDS", "soon"),
    ("COLLECT_WINDOW", "tomorrow"), ("MONITOR_WINDOW", "0d"), ("MONITOR_PREDICTION_LOOKBACK", "P"),
    ("ALERT_COOLDOWN", "-1h"), ("TRAINING_PARAMS", "[1]"), ("TRAINING_PARAMS", "{"),
    ("ALERT_THRESHOLDS", '{"psi": 0.3}'), ("ALERT_THRESHOLDS", '{"psi_warn": "high"}'),
    ("ALERT_THRESHOLDS", '{"psi_warn": -1}'), ("COST_MODEL", '{"vcpu": true}'), ("COST_MODEL", "[]"),
    ("COLLECT_SOURCES", "[]"), ("MONITOR_AUTO_RETRAIN", "maybe"), ("LOG_LEVEL", "VERBOSE"),
])
def test_a_bad_value_is_a_config_error_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=f"^{name}: "):
        Settings.from_env({name: value})


def test_an_invalid_log_level_names_the_variable_and_the_choices():
    with pytest.raises(ConfigError, match=r"^LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR"):
        Settings.from_env({"LOG_LEVEL": "verbose"})
    assert Settings.from_env({"LOG_LEVEL": "debug"}).log_level == "DEBUG"


def test_unknown_json_keys_are_named():
    with pytest.raises(ConfigError, match=r"ALERT_THRESHOLDS: unknown keys \['psi', 'spike'\]"):
        Settings.from_env({"ALERT_THRESHOLDS": '{"psi": 1, "spike": 2, "psi_warn": 0.2}'})


def test_values_arrive_typed():
    s = Settings.from_env({"COLLECT_WINDOW": "6h", "ALERT_THRESHOLDS": '{"psi_warn": 0.15}',
                           "COST_MODEL": '{"vcpu": 2}', "TRAINING_PARAMS": '{"max_iter": 100}',
                           "MONITOR_AUTO_RETRAIN": "yes"})
    assert s.collect_window == timedelta(hours=6) and s.monitor_window == timedelta(days=1)
    assert s.monitor_prediction_lookback == timedelta(days=7) and s.alert_cooldown == timedelta(hours=6)
    assert s.alert_thresholds == Thresholds(psi_warn=0.15)
    assert s.cost_model == CostModel(vcpu=2.0) and isinstance(s.cost_model.vcpu, float)
    assert dict(s.training_params) == {"max_iter": 100}
    assert s.collect_sources == (SourceConfig("replay", "replay"),)
    assert s.monitor_auto_retrain is True
    hash(s)  # backends are cached per settings object


def test_settings_round_trip_through_their_environment():
    s = Settings.from_env({"COLLECT_WINDOW": "90m", "ALERT_COOLDOWN": "PT45S", "TRAINING_PARAMS": '{"a": [1]}',
                           "COLLECT_SOURCES": '[{"name": "api", "type": "http", "url": "https://x.org/"}]',
                           "PREDICT_API_KEY": "k", "MONITOR_AUTO_RETRAIN": "true"})
    assert Settings.from_env(s.to_environ()) == s


def test_config_errors_belong_to_the_project_hierarchy():
    assert issubclass(ConfigError, ForecastError) and issubclass(ConfigError, ValueError)


def test_backoff_ceiling_below_floor_is_refused():
    with pytest.raises(ConfigError, match="EVENT_MAX_BACKOFF_SECONDS"):
        Settings.from_env({"EVENT_MIN_BACKOFF_SECONDS": "10", "EVENT_MAX_BACKOFF_SECONDS": "1"})


def test_readme_documents_every_variable_with_its_default():
    readme = (Path(PROJECT_ROOT) / "README.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([A-Z0-9_]+)` \| `([^`]*)` \|",
                                                       readme, re.M)}
    for var in VARIABLES:
        assert var.name in rows, f"README's configuration table lacks {var.name}"
        default = "<repo>/.state/local" if var.name == "STATE_DIR" else var.default
        assert rows[var.name] == default, f"README default of {var.name}"
