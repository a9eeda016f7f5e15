"""The dataset spec: loading, header normalisation, and a second series plugging in."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from shared.core.dataset_spec import SpecError, load_spec, normalize_header, parse_spec

RAW_HEADER = ["DateTime", "Temperature", "Humidity", "Wind Speed", "general diffuse flows",
              "diffuse flows", "Zone 1 Power Consumption", "Zone 2  Power Consumption",
              "Zone 3  Power Consumption"]


def test_tetouan_spec_describes_the_bundled_series():
    spec = load_spec("tetouan_power")
    assert spec.interval == timedelta(minutes=10)
    assert spec.target_names == ["zone1", "zone2", "zone3"]
    assert spec.feature_names == ["Temperature", "Humidity", "WindSpeed", "GeneralDiffuseFlows",
                                  "DiffuseFlows"]
    assert spec.column("Humidity").max == 100.0


def test_raw_headers_with_double_spaces_map_to_canonical_names():
    spec = load_spec("tetouan_power")
    mapping = spec.rename_map(RAW_HEADER)
    assert mapping["Zone 2  Power Consumption"] == "zone2"
    assert mapping["Wind Speed"] == "WindSpeed"
    assert mapping["DateTime"] == "timestamp"
    assert len(mapping) == 9


def test_canonical_and_oddly_spaced_headers_match_too():
    spec = load_spec("tetouan_power")
    mapping = spec.rename_map(["timestamp", " ZONE 1   power consumption ", "WindSpeed", "junk"])
    assert mapping == {"timestamp": "timestamp", " ZONE 1   power consumption ": "zone1",
                       "WindSpeed": "WindSpeed"}


def test_normalize_header_folds_whitespace_and_case():
    assert normalize_header("  Zone 2\t Power  Consumption ") == "zone 2 power consumption"


def test_a_daily_commodity_series_plugs_in_with_only_a_spec(tmp_path):
    path = tmp_path / "steel_rebar.json"
    path.write_text(json.dumps({
        "name": "steel_rebar",
        "timestamp": {"column": "date", "format": "%Y-%m-%d", "interval_minutes": 1440},
        "features": [{"name": "iron_ore", "column": "Iron Ore USD", "min": 0, "max": 1000}],
        "targets": [{"name": "rebar_price", "column": "Rebar Price", "unit": "USD/t",
                     "min": 0, "max": 5000}],
    }))
    spec = load_spec(str(path))
    assert spec.interval == timedelta(days=1)
    assert spec.rename_map(["date", "Iron  Ore USD", "rebar price"]) == {
        "date": "timestamp", "Iron  Ore USD": "iron_ore", "rebar price": "rebar_price"}


@pytest.mark.parametrize("broken,match", [
    ({"name": "x", "timestamp": {"column": "t", "format": "%Y", "interval_minutes": 10}}, "targets"),
    ({"timestamp": {"column": "t", "format": "%Y", "interval_minutes": 10}}, "name"),
    ({"name": "x", "timestamp": {"column": "t", "format": "%Y", "interval_minutes": 0},
      "targets": [{"name": "y", "min": 0, "max": 1}]}, "interval"),
    ({"name": "x", "timestamp": {"column": "t", "format": "%Y", "interval_minutes": 10},
      "targets": [{"name": "y", "min": 5, "max": 1}]}, "min"),
    ({"name": "x", "timestamp": {"column": "t", "format": "%Y", "interval_minutes": 10},
      "targets": [{"name": "y", "min": 0, "max": 1}, {"name": "y", "min": 0, "max": 1}]}, "unique"),
])
def test_broken_specs_are_refused_with_a_reason(broken, match):
    with pytest.raises(SpecError, match=match):
        parse_spec(broken)


def test_unknown_spec_name_lists_the_known_ones():
    with pytest.raises(SpecError, match="tetouan_power"):
        load_spec("no_such_series")
