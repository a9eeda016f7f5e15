"""Validation and the quality score, on slices of the bundled series (pure, no I/O)."""

from __future__ import annotations

import pandas as pd
import pytest

from shared.collect.quality import validate
from shared.core.dataset_spec import load_spec
from shared.core.frames import ParseError, parse_records
from shared.platform.settings import PROJECT_ROOT

SPEC = load_spec("tetouan_power")


@pytest.fixture(scope="module")
def year() -> pd.DataFrame:
    return parse_records((PROJECT_ROOT / "data" / "tetouan_power_2017.csv").read_bytes(), "csv")


@pytest.fixture
def day(year) -> pd.DataFrame:
    return year.iloc[:144].copy()


def primary_reason(report) -> str:
    return report.reasons[0].split(":")[0]


def test_a_clean_day_scores_one_and_keeps_every_row(day):
    report = validate(day, SPEC, None)
    assert report.accepted and report.score == 1.0 and report.reasons == []
    assert len(report.clean) == 144
    assert report.clean["timestamp"].iloc[0] == pd.Timestamp("2017-01-01 00:00")
    assert report.clean["zone2"].iloc[0] == pytest.approx(16128.87538)


def test_rows_already_stored_are_dropped_and_counted(year):
    report = validate(year.iloc[100:288], SPEC, pd.Timestamp("2017-01-01 23:50"))
    assert report.overlap_rows == 44 and report.new_rows == 144
    assert report.accepted and len(report.clean) == 144


def test_only_rows_already_stored_is_nothing_new(day):
    report = validate(day, SPEC, pd.Timestamp("2017-01-02 00:00"))
    assert report.nothing_new and not report.accepted


def test_an_empty_frame_is_nothing_new():
    assert validate(parse_records(b"", "csv"), SPEC, None).checks[0].name == "schema"


@pytest.mark.parametrize("kind,mutate,reason", [
    ("missing column", lambda d: d.drop(columns=["Humidity"]), "schema"),
    ("types", lambda d: d.assign(Temperature=["abc"] * 50 + list(d["Temperature"][50:])), "types"),
    ("ranges", lambda d: d.assign(Humidity=["150"] * 50 + list(d["Humidity"][50:])), "ranges"),
    ("NaNs", lambda d: d.assign(**{"Zone 1 Power Consumption": [None] * 50 + list(
        d["Zone 1 Power Consumption"][50:])}), "missing"),
    ("duplicates", lambda d: pd.concat([d, d]), "duplicates"),
    ("gaps", lambda d: pd.concat([d.iloc[:40], d.iloc[80:]]), "gaps"),
    ("order", lambda d: d.iloc[::-1], "order"),
    ("timestamps", lambda d: d.assign(DateTime=["yesterday"] * 40 + list(d["DateTime"][40:])),
     "timestamps"),
    ("interval", lambda d: d.assign(DateTime=[t.replace(":00", ":03") for t in d["DateTime"]]),
     "interval"),
])
def test_each_kind_of_bad_data_is_rejected_with_its_reason(day, kind, mutate, reason):
    report = validate(mutate(day), SPEC, None)
    assert not report.accepted, kind
    assert report.score < 0.8
    assert primary_reason(report) == reason


def test_a_gap_after_the_last_stored_timestamp_counts(year):
    # Two days missing between the stored data and this batch: 144 of 432 slots present.
    report = validate(year.iloc[432:576], SPEC, pd.Timestamp("2017-01-01 23:50"))
    gaps = next(c for c in report.checks if c.name == "gaps")
    assert gaps.failed == 288 and report.score == pytest.approx(1 / 3, abs=1e-4)
    assert not report.accepted


def test_a_few_bad_rows_are_dropped_from_an_accepted_batch(day):
    day.loc[5, "Humidity"] = "180"
    report = validate(day, SPEC, None)
    assert report.accepted and report.score == pytest.approx(143 / 144 * 143 / 144, abs=1e-6)
    assert len(report.clean) == 143 and len(report.dropped) == 1
    assert "Humidity: 1" in next(c for c in report.checks if c.name == "ranges").detail


def test_iso_timestamps_with_offsets_are_converted_to_the_series_time(day):
    day["DateTime"] = pd.date_range("2017-01-01T01:00:00+01:00", periods=144, freq="10min").map(
        lambda t: t.isoformat())
    report = validate(day, SPEC, None)
    assert report.accepted
    assert report.clean["timestamp"].iloc[0] == pd.Timestamp("2017-01-01 00:00")


def test_the_threshold_decides(day):
    day = pd.concat([day.iloc[:120], day.iloc[132:]])  # 12 slots missing: 132 / 144
    assert validate(day, SPEC, None, threshold=0.9).accepted
    assert not validate(day, SPEC, None, threshold=0.95).accepted


@pytest.mark.parametrize("raw,fmt", [(b"\x89PNG\x00\xff", "csv"), (b"{not json", "json"),
                                     (b'{"rows": 3}', "json"), (b"just one column\nx\n", "csv")])
def test_garbage_does_not_parse(raw, fmt):
    with pytest.raises(ParseError):
        parse_records(raw, fmt)


def test_json_records_parse_like_csv(day):
    records = day.head(3).to_json(orient="records").encode()
    frame = parse_records(records, "json")
    assert validate(frame, SPEC, None).clean["zone1"].tolist() == pytest.approx(
        [34055.6962, 29814.68354, 29128.10127])


@pytest.mark.parametrize("extra,canonical", [("WindSpeed", "WindSpeed"), ("timestamp", "timestamp"),
                                             (" ZONE 1  power consumption", "zone1")])
def test_a_second_column_spelled_like_a_required_one_rejects_naming_both(day, extra, canonical):
    original = next(h for h, c in SPEC.rename_map(day.columns).items() if c == canonical)
    report = validate(day.assign(**{extra: day[original]}), SPEC, None)
    assert not report.accepted and report.clean is None
    schema = report.checks[0]
    assert schema.name == "schema" and not schema.passed
    assert repr(original) in schema.detail and repr(extra) in schema.detail
    assert report.reasons == [f"schema: {schema.detail}"]


def test_a_repeated_csv_header_is_ambiguous_not_renamed(day):
    text = day.to_csv(index=False)
    header, rest = text.split("\n", 1)
    raw = f"{header},Temperature\n" + "".join(f"{line},1\n" for line in rest.splitlines())
    report = validate(parse_records(raw.encode(), "csv"), SPEC, None)
    assert not report.accepted
    assert "'Temperature' and 'Temperature' all read as Temperature" in report.checks[0].detail


def test_unknown_columns_are_left_out_and_reported(day):
    report = validate(day.assign(Pressure="1013", note="x"), SPEC, None)
    assert report.accepted and report.score == 1.0
    assert report.unknown_columns == ["Pressure", "note"]
    assert "Pressure" not in report.clean.columns
    unknown = next(c for c in report.checks if c.name == "unknown_columns")
    assert unknown.failed == 2 and "'Pressure', 'note'" in unknown.detail
    assert report.reasons == [f"unknown_columns: 2 of 2 ({unknown.detail})"]
