"""Settings: defaults, parsing errors that name the variable, README coverage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.platform.settings import PROJECT_ROOT, VARIABLES, ConfigError, Settings, attribute_name


def test_defaults_select_the_embedded_backend_and_the_design_card_topics():
    s = Settings.from_env({})
    assert s.backend == "embedded"
    assert s.topics == ("data-ready", "model-updated", "alerts")
    assert s.state_dir == (PROJECT_ROOT / ".state").resolve()
    assert s.event_max_delivery_attempts == 5


def test_every_variable_maps_to_a_settings_attribute():
    s = Settings.from_env({})
    for var in VARIABLES:
        assert hasattr(s, attribute_name(var.name)), var.name


@pytest.mark.parametrize("name,value", [
    ("BACKEND", "aws"), ("TOPIC_DATA_READY", "dr"), ("TOPIC_ALERTS", "1alerts"),
    ("EVENT_MAX_DELIVERY_ATTEMPTS", "0"), ("EVENT_MIN_BACKOFF_SECONDS", "soon"),
])
def test_a_bad_value_is_a_config_error_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_backoff_ceiling_below_floor_is_refused():
    with pytest.raises(ConfigError, match="EVENT_MAX_BACKOFF_SECONDS"):
        Settings.from_env({"EVENT_MIN_BACKOFF_SECONDS": "10", "EVENT_MAX_BACKOFF_SECONDS": "1"})


def test_dead_letter_names_derive_from_the_topic():
    s = Settings.from_env({})
    assert s.dead_letter_topic("data-ready") == "data-ready-dead-letter"
    assert s.dead_letter_subscription("data-ready") == "data-ready-dead-letter-pull"


def test_readme_documents_every_variable_with_its_default():
    readme = (Path(PROJECT_ROOT) / "README.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([A-Z0-9_]+)` \| `([^`]*)` \|",
                                                       readme, re.M)}
    for var in VARIABLES:
        assert var.name in rows, f"README's configuration table lacks {var.name}"
        default = "<repo>/.state" if var.name == "STATE_DIR" else var.default
        assert rows[var.name] == default, f"README default of {var.name}"
