"""The monitor report page: the verdict first, open alerts high first, honest tables, real plots."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pytest

from shared.monitor.report import (
    GREEN,
    RED,
    YELLOW,
    Distribution,
    Timeline,
    VersionAccuracy,
    overall_status,
    render,
)

RUN_AT = "2026-11-23T22:00:05+00:00"
DAY = np.arange(np.datetime64("2017-02-11T00:00"), np.datetime64("2017-02-12T00:00"), np.timedelta64(10, "m"))


def alert(alert_id: str, severity: str, value: float, threshold: float, opened_at: str, detail: str) -> dict:
    metric, subject = alert_id.split(":", 1)
    return {"alert_id": alert_id, "metric": metric, "subject": subject, "severity": severity, "value": value,
            "threshold": threshold, "detail": detail, "opened_at": opened_at, "target": None,
            "model_version": None, "notifications": 1}


OPEN_ALERTS = [
    alert("freshness:accepted_data", "medium", 9.5, 6.0, "2026-11-23T19:40:00+00:00",
          "hours since the last accepted batch (2017-02-11T23:50)"),
    alert("input_skew:Temperature", "high", 0.41, 0.2, "2026-11-23T10:00:02+00:00",
          "PSI 0.41 of served Temperature against the observations of the same timestamps"),
    alert("mape_increase:zone1", "medium", 0.027, 0.02, "2026-11-22T22:00:04+00:00",
          "window MAPE 4.600 % on 144 rows vs holdout 1.900 %"),
]


def check(source: str, feature: str, kind: str, value: float, threshold: float, level: str, n: int) -> dict:
    return {"source": source, "feature": feature, "check": kind, "value": value, "threshold": threshold,
            "level": level, "n": n, "detail": f"{kind} of {feature} ({source})"}


def condition(key: str, value: float, threshold: float, severity: str | None) -> dict:
    metric, subject = key.split(":", 1)
    return {"key": key, "metric": metric, "subject": subject, "value": value, "threshold": threshold,
            "firing": severity is not None, "severity": severity, "detail": f"{metric} of {subject}",
            "target": None, "model_version": None}


def interval_pairs(inside: int, pairs: int) -> dict:
    """An accuracy row's count of this run's actuals inside their logged 80 % interval."""
    return {"interval_level": 0.8, "interval_inside": inside, "interval_pairs": pairs,
            "interval_coverage": inside / pairs if pairs else None}


def pooled(target: str, inside: int, pairs: int, severity: str | None = None) -> dict:
    """A target's interval coverage over the lookback, every version (the run's ``interval_coverage``)."""
    return {"target": target, "level": 0.8, "inside": inside, "pairs": pairs,
            "coverage": inside / pairs if pairs else None, "since": "2026-11-16T22:00:05+00:00",
            "min_pairs": 288, "severity": severity}


def realistic_report(**changes: object) -> dict:
    inputs = [check("requests", "Temperature", "skew", 0.41, 0.2, "alert", 288),
              check("requests", "Temperature", "range", 0.12, 0.05, "warn", 288),
              check("requests", "Humidity", "skew", 0.03, 0.2, "none", 288),
              check("requests", "WindSpeed", "stuck", 0.0, 0.5, "none", 288),
              check("collected", "Temperature", "range", 0.0, 0.05, "none", 0),
              check("collected", "zone1", "skew", 0.02, 0.2, "none", 144),
              check("collected", "Humidity", "stuck", 0.0, 0.5, "none", 0)]
    report = {
        "run_id": "20261123T2200Z-5f3a9c", "at": RUN_AT, "cause": "schedule", "status": RED,
        "window": {"length": "1 day, 0:00:00", "requests_since": "2026-11-22T22:00:05+00:00",
                   "data": {"start": "2017-02-11T00:00", "end": "2017-02-11T23:50"}},
        "operations": {"requests": 1440, "errors": 3, "error_rate": 3 / 1440, "client_errors": 12,
                       "latency_p50_ms": 41.2, "latency_p95_ms": 180.4, "latency_p99_ms": 420.9,
                       "predictions": 2880, "log_dropped": 0, "invocations_per_day": 1440.0,
                       "cost_daily_usd": 0.0123},
        "inputs": inputs,
        "accuracy": [
            {"target": "zone1", "model_version": "zone1-000012-cc33dd44", "rows": 144, "mape": 4.6,
             "rmse": 1510.2, "holdout_mape": 1.9, "production": True, **interval_pairs(116, 144)},
            {"target": "zone1", "model_version": "zone1-000011-aa11bb22", "rows": 20, "mape": 2.4,
             "rmse": 880.0, "holdout_mape": None, "production": False}],
        "interval_coverage": [pooled("zone1", 790, 1008), pooled("zone2", 100, 144)],
        "conditions": [condition("error_rate:predict", 0.002, 0.05, None),
                       condition("input_skew:Temperature", 0.41, 0.2, "high"),
                       condition("freshness:accepted_data", 9.5, 6.0, "medium")],
        "alerts": {"events": [{"event": "opened", "alert_id": "input_skew:Temperature", "severity": "high",
                               "value": 0.41, "threshold": 0.2, "detail": "PSI 0.41"},
                              {"event": "resolved", "alert_id": "latency_spike:predict", "severity": None,
                               "value": 0.18, "threshold": 2.0, "detail": "p95 180.4 ms"}],
                   "notifications": []},
        "models": {"zone1": "zone1-000012-cc33dd44", "zone2": "zone2-000012-ee55ff66"},
        "retrain_request": None,
    }
    return {**report, **changes}


def realistic_distributions() -> list[Distribution]:
    rng = np.random.default_rng(7)
    hours = np.arange(len(DAY)) / 6
    daily = 14 + 5 * np.sin((hours - 9) / 24 * 2 * np.pi)
    observed_t = daily + rng.normal(0, 0.8, len(DAY))
    served_t = np.concatenate([observed_t, observed_t]) + 4 + rng.normal(0, 0.8, 2 * len(DAY))
    humidity = np.clip(72 - 2 * (daily - 14) + rng.normal(0, 6, len(DAY)), 0, 100)
    return [
        Distribution("Temperature", "degC", served_t, observed_t, (3.2, 21.5)),
        Distribution("Humidity", "%", np.concatenate([humidity, humidity + rng.normal(0, 2, len(DAY))]),
                     humidity, (11.3, 94.8)),
        Distribution("WindSpeed", "m/s (assumed)", np.full(300, 4.9), None, (0.05, 6.3)),
        Distribution("GeneralDiffuseFlows", "W/m2 (assumed)", np.zeros(0), None, (0.0, 1100.0)),
    ]


def realistic_timelines() -> list[Timeline]:
    rng = np.random.default_rng(11)
    hours = np.arange(len(DAY)) / 6
    actual = 30000 + 9000 * np.sin((hours - 12) / 24 * 2 * np.pi) + rng.normal(0, 600, len(DAY))
    predicted = actual * (1 + rng.normal(0.03, 0.03, len(DAY)))
    return [Timeline("zone1", "kW (unconfirmed)", DAY, predicted, actual),
            Timeline("zone2", "kW (unconfirmed)", DAY[:0], np.zeros(0), np.zeros(0))]


def realistic_history() -> dict[str, list[VersionAccuracy]]:
    runs = [f"2026-11-{day:02d}T22:00:05+00:00" for day in range(14, 24)]
    old = VersionAccuracy("zone1-000011-aa11bb22", 2.1,
                          [(at, mape) for at, mape in zip(runs[:7], [2.0, 2.3, 2.2, 2.6, 2.4, 2.5, 2.4],
                                                          strict=True)], False)
    new = VersionAccuracy("zone1-000012-cc33dd44", 1.9,
                          [(at, mape) for at, mape in zip(runs[6:], [2.0, 2.8, 3.9, 4.6], strict=True)], True)
    return {"zone1": [old, new], "zone2": [VersionAccuracy("zone2-000012-ee55ff66", 2.4, [], True)]}


def realistic_page(**report_changes: object) -> str:
    return render(realistic_report(**report_changes), OPEN_ALERTS, realistic_distributions(),
                  realistic_timelines(), realistic_history())


class Page(HTMLParser):
    """Text outside SVG, figure ids with their SVG, the status block's attributes."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.text: list[str] = []
        self.svg_text: dict[str, list[str]] = {}
        self.figures: dict[str, int] = {}
        self.sections: dict[str, dict[str, str | None]] = {}
        self.ids: list[str] = []
        self._svg_depth = 0
        self._figure: str | None = None
        self._style = False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if "id" in attributes and not self._svg_depth:
            self.ids.append(attributes["id"])
        if tag == "section":
            self.sections[attributes.get("id") or ""] = attributes
        if tag == "figure":
            self._figure = attributes["id"]
            self.figures[self._figure] = 0
        if tag == "svg":
            self._svg_depth += 1
            if self._figure:
                self.figures[self._figure] += 1
        if tag == "style":
            self._style = True

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg_depth -= 1
        if tag == "figure":
            self._figure = None
        if tag == "style":
            self._style = False

    def handle_data(self, data):
        if self._svg_depth and self._figure:
            self.svg_text.setdefault(self._figure, []).append(data)
        elif not self._svg_depth and not self._style:
            self.text.append(data)

    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def section_text(page: str, section_id: str) -> str:
    found = re.search(rf'<section id="{section_id}"[^>]*>(.*?)</section>', page, re.S)
    assert found, section_id
    return " ".join(Page(found.group(1)).words().split())


@pytest.mark.parametrize("alerts,status,verdict", [
    ([], GREEN, "GREEN — nothing open"),
    ([OPEN_ALERTS[0]], YELLOW, "YELLOW — 1 open alert (1 medium)"),
    (OPEN_ALERTS, RED, "RED — 3 open alerts (1 high, 2 medium)"),
])
def test_the_status_block_comes_first_and_says_the_verdict_in_words(alerts, status, verdict):
    assert overall_status(alerts) == status
    page = render(realistic_report(status=status), alerts, [], [], {})
    parsed = Page(page)
    assert parsed.ids[0] == "status"
    assert parsed.sections["status"]["data-status"] == status and status in parsed.sections["status"]["class"]
    text = section_text(page, "status")
    assert text.startswith(verdict)
    assert "20261123T2200Z-5f3a9c" in text and "schedule" in text and "zone1-000012-cc33dd44" in text
    assert "1 d of requests" in text and "2017-02-11 23:50" in text
    assert ("No open alerts." in section_text(page, "open-alerts")) == (not alerts)


def test_the_page_reads_top_down_verdict_alerts_inputs_accuracy_plots_operations():
    ids = Page(realistic_page()).ids
    order = [ids.index(i) for i in ("status", "open-alerts", "inputs", "accuracy", "plots", "operations")]
    assert order == sorted(order)


def test_open_alerts_list_high_first_with_value_threshold_and_since():
    text = section_text(realistic_page(), "open-alerts")
    positions = [text.index(a) for a in ("input_skew:Temperature", "mape_increase:zone1", "freshness:accepted_data")]
    assert positions == sorted(positions)  # high, then the medium ones oldest first
    assert "Input skew — Temperature" in text and "Stale data — accepted data" in text
    assert "2.7 pp" in text and "9.5 h" in text and "6 h" in text  # units by metric
    assert "2026-11-23 10:00 UTC" in text and "for 12 h" in text
    assert "opened" in text and "resolved" in text  # this run's changes, after the open ones
    assert text.index("Changes in this run") > positions[-1]
    assert "3 conditions evaluated, 2 firing" in text and "Server error rate (5xx) — predict" in text
    assert "0.2 % 5 %" in text  # the folded conditions table: value and threshold in the metric's unit


def test_an_alert_opened_during_the_run_is_open_under_a_minute_never_a_negative_span():
    # The run is stamped first (with microseconds); the alert it opens a moment later.
    opened = alert("quarantine:feed", "high", 1.0, 0.0, "2026-11-23T22:00:06+00:00", "batch quarantined")
    page = render(realistic_report(at="2026-11-23T22:00:05.700000+00:00"), [opened], realistic_distributions(),
                  realistic_timelines(), realistic_history())
    text = section_text(page, "open-alerts")
    assert "for under a minute" in text and "-1 d" not in text


def test_input_checks_put_flagged_first_and_say_no_new_data_instead_of_numbers():
    page = realistic_page()
    text = section_text(page, "inputs")
    assert "7 checks: 1 alert, 1 warn, 5 ok." in text
    assert text.index("● alert") < text.index("▲ warn") < text.index("✓ ok")
    rows = re.findall(r"<tr>(.*?)</tr>", re.search(r'<section id="inputs".*?</section>', page, re.S).group(0))
    collected_empty = [r for r in rows if ">collected<" in r and "no new data" in r]
    assert len(collected_empty) == 2
    assert all("0.05" not in r for r in collected_empty)  # no value / threshold numbers on those rows


def test_no_python_literals_leak_into_the_page_text():
    words = Page(realistic_page()).words()
    assert not re.search(r"\b(True|False|None|nan)\b", words), words
    assert "—" in section_text(realistic_page(), "accuracy")  # the old version has no holdout MAPE


def test_accuracy_marks_the_serving_version_and_says_when_there_is_nothing():
    page = realistic_page()
    text = section_text(page, "accuracy")
    assert "zone1-000012-cc33dd44 serving 144 4.60 % 1.90 % +2.70 pp" in text
    assert "zone1-000011-aa11bb22 20" in text and "serving" not in text.split("zone1-000011-aa11bb22")[1]
    assert "No predictions with actuals yet." in section_text(realistic_page(accuracy=[]), "accuracy")


def test_interval_coverage_reads_verdict_first_with_its_count():
    text = section_text(realistic_page(), "accuracy")
    # Per target, the verdict on the lookback's pairs comes before the table...
    assert ("Prediction intervals ✓ ok zone1: 78.4 % of 1,008 actuals inside the 80 % interval, every version "
            "since 2026-11-16 22:00 UTC too few to judge (144 of 288) zone2: 69.4 % of 144 actuals inside the "
            "80 % interval, every version since 2026-11-16 22:00 UTC") in text
    assert "A warning below 50 %, an alert below 25 %, from 288 pairs on" in text
    assert text.index("Prediction intervals") < text.index("Model version")
    # ...and the table counts each run's new pairs per version, in a column of its own.
    assert "RMSE 80 % interval coverage" in text
    assert "+2.70 pp 1510 kW (unconfirmed) 80.6 % of 144 actuals inside the 80 % interval" in text
    # A row from records logged before predict served intervals says so, never 0 % or nan.
    assert "zone1-000011-aa11bb22 20 2.40 % — — 880 kW (unconfirmed) no interval logged" in text


@pytest.mark.parametrize("summary,reads", [
    (pooled("zone1", 160, 432, "medium"), "▲ warn zone1: 37.0 % of 432 actuals inside the 80 % interval"),
    (pooled("zone1", 20, 432, "high"), "● alert zone1: 4.6 % of 432 actuals inside the 80 % interval"),
    (pooled("zone1", 0, 0), "not judged zone1: no interval logged"),
])
def test_interval_coverage_verdicts_say_the_alert_level_in_words(summary, reads):
    text = section_text(realistic_page(interval_coverage=[summary]), "accuracy")
    assert f"Prediction intervals {reads}" in text, text
    assert ("every version since" in text) == (summary["pairs"] > 0)


def test_no_interval_section_without_coverage_and_none_without_rows_before_it():
    assert "Prediction intervals" not in section_text(realistic_page(interval_coverage=[]), "accuracy")
    text = section_text(realistic_page(accuracy=[]), "accuracy")
    assert text.startswith("Accuracy against actuals No predictions with actuals yet. Prediction intervals ✓ ok")


def test_an_interval_coverage_alert_reads_in_percent():
    low = alert("interval_coverage:zone1", "high", 0.046, 0.5, "2026-11-23T16:00:03+00:00",
                "4.6 % of 432 actuals inside the 80 % interval (medium below 50 %, high below 25 %)")
    text = section_text(render(realistic_report(), [low], [], [], {}), "open-alerts")
    assert "Prediction interval coverage too low — zone1" in text
    assert "4.6 % 50 %" in text and "4.6 % of 432 actuals inside the 80 % interval" in text


def test_every_plot_with_data_is_an_svg_with_labelled_axes_and_units():
    page = realistic_page()
    parsed = Page(page)
    assert parsed.figures == {"plot-distribution-Temperature": 1, "plot-distribution-Humidity": 1,
                              "plot-distribution-WindSpeed": 1, "plot-timeline-zone1": 1,
                              "plot-accuracy-zone1": 1}
    labels = {plot_id: " ".join(parsed.svg_text[plot_id]) for plot_id in parsed.figures}
    assert "Temperature [degC]" in labels["plot-distribution-Temperature"]
    assert "Humidity [%]" in labels["plot-distribution-Humidity"]
    assert "training range" in labels["plot-distribution-Temperature"]
    assert "served (n=288)" in labels["plot-distribution-Temperature"]
    assert "observed (n=144)" in labels["plot-distribution-Temperature"]
    assert "observed" not in labels["plot-distribution-WindSpeed"]  # no actuals yet: served only
    assert "zone1 [kW (unconfirmed)]" in labels["plot-timeline-zone1"]
    assert "predicted" in labels["plot-timeline-zone1"] and "actual" in labels["plot-timeline-zone1"]
    assert "MAPE [%]" in labels["plot-accuracy-zone1"] and "000012-cc33dd44 (serving)" in labels["plot-accuracy-zone1"]
    assert "holdout MAPE" in labels["plot-accuracy-zone1"]
    assert "Feb" in labels["plot-timeline-zone1"] or "2017" in labels["plot-timeline-zone1"]  # a date axis


def test_a_plot_without_data_is_left_out_with_a_note():
    page = realistic_page()
    assert 'id="plot-distribution-GeneralDiffuseFlows"' not in page
    assert 'id="plot-timeline-zone2"' not in page and 'id="plot-accuracy-zone2"' not in page
    text = section_text(page, "plots")
    assert "GeneralDiffuseFlows: no values this run, not plotted." in text
    assert "zone2: no live accuracy yet, not plotted." in text
    empty = render(realistic_report(), [], [], [], {})
    assert "<svg" not in empty and "<figure" not in empty


def test_a_hostile_feature_name_is_escaped_everywhere():
    hostile = "<script>alert(1)</script>"
    report = realistic_report(inputs=[check("requests", hostile, "skew", 0.5, 0.2, "alert", 100)])
    bad_alert = {**OPEN_ALERTS[1], "alert_id": f"input_skew:{hostile}", "subject": hostile, "detail": hostile}
    distributions = [replace(realistic_distributions()[0], feature=hostile)]
    page = render(report, [bad_alert], distributions, [], {})
    assert "<script" not in page.lower()
    assert "&lt;script&gt;" in page
    assert f'id="plot-distribution-{hostile}"'.replace("<", "&lt;").replace(">", "&gt;") in page


def test_the_page_is_self_contained():
    page = realistic_page()
    assert "<script" not in page and "<link" not in page and "@import" not in page and " src=" not in page
    assert not re.search(r'href="(https?:)?//', page) and "url(http" not in page
    assert not re.search(r"https?://(?!www\.w3\.org/)", page)  # only XML namespace names
    ids = Page(page).ids
    assert len(ids) == len(set(ids))
    # clip-path ids inside the SVGs differ between figures, so the inline SVGs do not collide
    clip_ids = re.findall(r'<clipPath id="([^"]+)"', page)
    assert len(clip_ids) == len(set(clip_ids))


def test_operations_read_with_units_and_no_requests_is_said():
    text = section_text(realistic_page(), "operations")
    assert "1,440" in text and "3 (0.21%)" in text and "41 / 180 / 421 ms" in text
    assert "0.0123 USD/day" in text
    assert "No requests in the window." in section_text(realistic_page(operations={"requests": 0}), "operations")
