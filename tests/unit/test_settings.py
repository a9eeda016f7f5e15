"""Settings: defaults, parsing errors that name the variable, README coverage."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from shared.platform.backends import retry_policy
from shared.platform.errors import ForecastError
from shared.platform.ports import RetryPolicy
from shared.platform.settings import (
    PROJECT_ROOT,
    REDELIVERY_MARGIN,
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
    assert s.event_max_delivery_attempts == 10


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


# -- the retry schedule outlasts the claim lease (docs/retrain.md) ---------------------


def test_the_default_retries_span_twice_the_claim_lease():
    s = Settings.from_env({})
    policy = retry_policy(s)
    assert policy == RetryPolicy()  # the embedded bus's own defaults are the same schedule
    assert policy.schedule() == [10, 20, 40, 80, 160, 320, 600, 600, 600]
    assert policy.reach() == 2430 >= REDELIVERY_MARGIN * s.claim_lease_seconds == 240
    # a crash on any delivery but the last is redone too: the retries left after it span 240 s
    assert all(sum(policy.schedule()[k:]) >= 240 for k in range(len(policy.schedule())))


def test_the_schedule_doubles_from_the_floor_up_to_the_ceiling():
    assert RetryPolicy(5, 1, 60).schedule() == [1, 2, 4, 8]
    assert RetryPolicy(6, 0.5, 3).schedule() == [0.5, 1, 2, 3, 3]
    assert RetryPolicy(1, 10, 600).schedule() == [] and RetryPolicy(1, 10, 600).reach() == 0


OLD_DEFAULTS = {"EVENT_MAX_DELIVERY_ATTEMPTS": "5", "EVENT_MIN_BACKOFF_SECONDS": "1",
                "EVENT_MAX_BACKOFF_SECONDS": "60", "CLAIM_LEASE_SECONDS": "120"}


def test_retries_that_end_inside_the_lease_are_refused_naming_the_variables_and_the_numbers():
    """The former defaults: five attempts from a 1 s backoff are spent long before 120 s."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(OLD_DEFAULTS)
    message = str(caught.value)
    for name, value in OLD_DEFAULTS.items():
        assert f"{name}={value}" in message
    assert "1 + 2 + 4 + 8 = 15 s" in message and "240 s" in message


@pytest.mark.parametrize("changes", [
    {"EVENT_MAX_DELIVERY_ATTEMPTS": "10"},                                  # 1 + 2 + ... + 32 + 3 x 60 = 243 s
    {"EVENT_MIN_BACKOFF_SECONDS": "16", "EVENT_MAX_BACKOFF_SECONDS": "600"},  # 16 + 32 + 64 + 128 = 240 s
    {"CLAIM_LEASE_SECONDS": "7.5"},                                           # 15 s = twice 7.5 s
])
def test_more_attempts_longer_backoffs_or_a_shorter_lease_pass(changes):
    Settings.from_env({**OLD_DEFAULTS, **changes})


def test_the_check_is_exact_at_its_bound_and_lists_a_long_schedule_briefly():
    with pytest.raises(ConfigError, match=r"= 15 s .* = 15\.2 s"):
        Settings.from_env({**OLD_DEFAULTS, "CLAIM_LEASE_SECONDS": "7.6"})
    with pytest.raises(ConfigError, match=r"0\.01 \+ 0\.02 \+ 0\.02 \+ 0\.02 \+ \.\.\. \+ 0\.02 = 0\.37 s"):
        Settings.from_env({"EVENT_MAX_DELIVERY_ATTEMPTS": "20", "EVENT_MIN_BACKOFF_SECONDS": "0.01",
                           "EVENT_MAX_BACKOFF_SECONDS": "0.02", "CLAIM_LEASE_SECONDS": "1"})
    with pytest.raises(ConfigError, match=r"0 s \(no redelivery\)"):
        Settings.from_env({"EVENT_MAX_DELIVERY_ATTEMPTS": "1"})


def test_the_backoff_order_is_checked_before_the_schedule():
    with pytest.raises(ConfigError, match=r"^EVENT_MAX_BACKOFF_SECONDS must not be below"):
        Settings.from_env({**OLD_DEFAULTS, "EVENT_MIN_BACKOFF_SECONDS": "100"})


def test_terraform_gives_retrain_its_subscriptions_retry_policy_and_the_defaults_pass():
    """What Pub/Sub does in production is Terraform's; retrain's start-up check must judge that."""
    import hcl2

    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)

    def load(name: str) -> dict:
        with open(PROJECT_ROOT / "terraform" / name, encoding="utf-8") as fh:
            return hcl2.load(fh, serialization_options=options)

    variables = {k: v for block in load("variables.tf")["variable"] for k, v in block.items()}
    local = load("locals.tf")["locals"][0]
    attempts = variables["event_max_delivery_attempts"]["default"]
    backoff = variables["event_retry_backoff"]["default"]
    ack_deadline = local["push_subscriptions"]["retrain-data-ready"]["ack_deadline"]
    env = local["function_env"]["retrain"]
    assert env["EVENT_MAX_DELIVERY_ATTEMPTS"] == "${tostring(var.event_max_delivery_attempts)}"
    assert env["EVENT_MIN_BACKOFF_SECONDS"] == "${tostring(var.event_retry_backoff.min)}"
    assert env["EVENT_MAX_BACKOFF_SECONDS"] == "${tostring(var.event_retry_backoff.max)}"
    assert "retrain-data-ready" in env["EVENT_ACK_DEADLINE_SECONDS"]
    deployed = Settings.from_env({"EVENT_MAX_DELIVERY_ATTEMPTS": str(attempts),
                                  "EVENT_MIN_BACKOFF_SECONDS": str(backoff["min"]),
                                  "EVENT_MAX_BACKOFF_SECONDS": str(backoff["max"]),
                                  "EVENT_ACK_DEADLINE_SECONDS": str(ack_deadline),
                                  "CLAIM_LEASE_SECONDS": env["CLAIM_LEASE_SECONDS"]})
    assert retry_policy(deployed) == retry_policy(Settings.from_env({}))  # the code's defaults are Terraform's
    assert deployed.claim_lease_seconds == Settings.from_env({}).claim_lease_seconds


def test_readme_documents_every_variable_with_its_default():
    readme = (Path(PROJECT_ROOT) / "README.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([A-Z0-9_]+)` \| `([^`]*)` \|",
                                                       readme, re.M)}
    for var in VARIABLES:
        assert var.name in rows, f"README's configuration table lacks {var.name}"
        default = "<repo>/.state/local" if var.name == "STATE_DIR" else var.default
        assert rows[var.name] == default, f"README default of {var.name}"
