"""The monitor's HTML report: the verdict first, then the evidence.

Order of the page: a status block (green / yellow / red, in words), the open
alerts (high first) and this run's alert changes, the input checks (flagged
first), accuracy against actuals, the plots (``plots.py``), operations and cost.
The page is one self-contained file: inline CSS and SVG, no script, nothing
fetched. Every value from the run is escaped; a missing value shows as an em dash
and a flag as a word, never as ``None`` or ``True``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from shared.core.intervals import LEVEL
from shared.monitor import plots
from shared.monitor.alert_rules import (
    COVERAGE_HIGH,
    COVERAGE_MEDIUM,
    COVERAGE_MIN_PAIRS,
    coverage_words,
)

GREEN, YELLOW, RED = "green", "yellow", "red"
DASH = "—"
SEVERITY_RANK = {"high": 0, "medium": 1}
LEVEL_RANK = {"alert": 0, "warn": 1, "none": 2}
LEVEL_LABEL = {"alert": "● alert", "warn": "▲ warn", "none": "✓ ok"}
METRIC_WORDS = {
    "input_skew": "Input skew", "input_range": "Inputs outside the training range",
    "input_stuck": "Stuck input", "drift": "Drift", "drift_share": "Share of columns drifted",
    "mape_increase": "Accuracy drop (MAPE above holdout)", "error_rate": "Server error rate (5xx)",
    "latency_spike": "Latency spike (p95)", "cost_daily": "Daily cost", "freshness": "Stale data",
    "source_health": "Collection source failing",
    "quarantine": "Collected batch quarantined",
    "interval_coverage": "Prediction interval coverage too low",
}
# How a metric's value and threshold read: fractions as %, durations and money with units.
METRIC_FORMAT: dict[str, Callable[[float], str]] = {
    "error_rate": lambda v: f"{v * 100:.3g} %",
    "interval_coverage": lambda v: f"{v * 100:.3g} %",
    "drift_share": lambda v: f"{v * 100:.3g} %",
    "mape_increase": lambda v: f"{v * 100:.3g} pp",
    "latency_spike": lambda v: f"{v:.3g} s",
    "cost_daily": lambda v: f"{v:.3g} USD/day",
    "freshness": lambda v: f"{v:.3g} h",
    "source_health": lambda v: f"{v:.3g} h",
}
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;max-width:1240px;
margin:1.2em auto;padding:0 1em}
h1{font-size:1.3em;margin:0 0 .6em}h2{font-size:1.1em;margin:1.6em 0 .5em;border-bottom:1px solid #ddd}
h3{font-size:.95em;margin:1em 0 .3em;color:#444}
table{border-collapse:collapse;width:100%;margin:.3em 0}
th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #eee;vertical-align:top}
th{font-size:.8em;color:#666;font-weight:600;text-transform:uppercase;letter-spacing:.03em}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}.when{white-space:nowrap}
#status{padding:.8em 1.2em;border-left:10px solid;border-radius:4px}
#status .verdict{font-size:1.5em;font-weight:700;margin:0 0 .2em}
#status dl{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em;margin:.5em 0 0;font-size:.9em}
dt{color:#555}dd{margin:0}
#status.green{background:#e9f6ec;border-color:#2e7d32}.green .verdict{color:#1b5e20}
#status.yellow{background:#fff7e0;border-color:#f2a900}.yellow .verdict{color:#8a5a00}
#status.red{background:#fdecea;border-color:#c62828}.red .verdict{color:#b71c1c}
.sev{font-weight:700;text-transform:uppercase;font-size:.85em}
.sev-high,.lvl-alert{color:#c62828}.sev-medium,.lvl-warn{color:#a86700}.lvl-none{color:#2e7d32}
.lvl{white-space:nowrap;font-weight:600}.nodata{color:#777;font-style:italic}
.id{font:.8em ui-monospace,monospace;color:#777}.serving{background:#e3f0fb;color:#0d47a1;
border-radius:3px;padding:0 .35em;font-size:.8em;font-weight:600;margin-left:.4em}
.note{color:#666;font-size:.9em;margin:.2em 0}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:1em 1.5em}
figure{margin:0}figure svg{width:100%;height:auto}
figcaption{font-size:.85em;color:#555;margin-top:.1em}
details summary{cursor:pointer;color:#555;margin:.4em 0}
#inputs table{table-layout:fixed}#inputs th:nth-child(-n+7){width:9%}#inputs th:nth-child(2){width:13%}
#operations dl{display:grid;grid-template-columns:max-content max-content;gap:.15em 2em}
#operations dd{font-variant-numeric:tabular-nums}
"""


def overall_status(open_alerts: Sequence[Mapping[str, Any]]) -> str:
    """red if any open alert is high, yellow if any is medium, else green."""
    severities = {a.get("severity") for a in open_alerts}
    return RED if "high" in severities else YELLOW if "medium" in severities else GREEN


@dataclass(frozen=True)
class Distribution:
    """One feature's values this run, for the served-vs-observed histogram."""

    feature: str
    unit: str
    served: np.ndarray  # values callers sent in requests judged by this run
    observed: np.ndarray | None  # collected observations of the same timestamps; None when no actuals yet
    training_range: tuple[float, float] | None  # min/max of the serving model's training rows


@dataclass(frozen=True)
class Timeline:
    """The serving model's predictions and the actuals, in time order."""

    target: str
    unit: str
    timestamps: np.ndarray  # datetime64[m], sorted
    predicted: np.ndarray
    actual: np.ndarray


@dataclass(frozen=True)
class VersionAccuracy:
    """A model version's holdout MAPE and its live MAPE run by run."""

    version: str
    holdout_mape: float | None  # % from the registry
    live: list[tuple[str, float]]  # (run time ISO-8601 UTC, live MAPE %) oldest first
    production: bool  # is it the version serving now


# -- formatting ----------------------------------------------------------------------

def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, spec: str = ".3g", suffix: str = "") -> str:
    """A number as text; None, NaN and flags never print as Python literals."""
    if value is None or isinstance(value, bool):
        return DASH if value is None else ("yes" if value else "no")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _e(value)
    return f"{number:{spec}}{suffix}" if np.isfinite(number) else DASH


def _count(value: Any) -> str:
    return DASH if value is None or isinstance(value, bool) else f"{int(value):,}"


def _measure(metric: str, value: Any) -> str:
    if value is None or isinstance(value, bool):
        return _num(value)
    return METRIC_FORMAT.get(metric, lambda v: f"{v:.3g}")(float(value))


def _parse(iso: str) -> datetime | None:
    try:
        return datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return None


def _time(iso: Any) -> str:
    """``2026-11-23 22:00 UTC`` for an aware time; a naive (series-local) one without the zone."""
    moment = _parse(iso) if isinstance(iso, str) else None
    if moment is None:
        return DASH if iso in (None, "") else _e(iso)
    if moment.tzinfo is not None:
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return moment.strftime("%Y-%m-%d %H:%M")


def _span(seconds: float) -> str:
    minutes = int(seconds // 60)
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{mins} min" if mins and not days else ""]
    return " ".join(p for p in parts if p) or "under a minute"


def _ago(iso: Any, now_iso: Any) -> str:
    then = _parse(iso) if isinstance(iso, str) else None
    now = _parse(now_iso) if isinstance(now_iso, str) else None
    if then is None or now is None or (then.tzinfo is None) != (now.tzinfo is None):
        return ""
    # An alert opened during this run is stamped a moment after the run's own time.
    return f"for {_span(max(0.0, (now - then).total_seconds()))}"


def _length(text: Any) -> str:
    """``1 day, 0:00:00`` (a timedelta as text) as ``1 d``."""
    found = re.fullmatch(r"(?:(\d+) days?, )?(\d+):(\d\d):(\d\d)", str(text))
    if not found:
        return _e(text)
    days, hours, mins, secs = (int(g or 0) for g in found.groups())
    return _span(days * 86400 + hours * 3600 + mins * 60 + secs)


def _what(alert: Mapping[str, Any]) -> str:
    """An alert id in words: ``input_skew:Temperature`` -> ``Input skew — Temperature``."""
    alert_id = str(alert.get("alert_id") or "")
    metric = str(alert.get("metric") or alert_id.split(":", 1)[0])
    subject = str(alert.get("subject") or (alert_id.split(":", 1)[1] if ":" in alert_id else ""))
    words = METRIC_WORDS.get(metric, metric.replace("_", " ").capitalize())
    subject = subject.replace("_", " ").replace(":", ": ")
    return f"{words} — {subject}" if subject else words


def _td(content: str, cls: str = "", span: int = 1) -> str:
    """A cell of already escaped HTML."""
    attrs = (f' class="{cls}"' if cls else "") + (f' colspan="{span}"' if span > 1 else "")
    return f"<td{attrs}>{content}</td>"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], table_id: str = "") -> str:
    heads = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    attr = f' id="{_e(table_id)}"' if table_id else ""
    return f"<table{attr}><thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table>"


def _severity(severity: Any) -> str:
    return f'<span class="sev sev-{_e(severity)}">{_e(severity or DASH)}</span>'


# -- sections ------------------------------------------------------------------------

def _sorted_alerts(open_alerts: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """High first, then medium; the longest open first within a severity."""
    return sorted(open_alerts, key=lambda a: (SEVERITY_RANK.get(a.get("severity") or "", 2),
                                              str(a.get("opened_at") or ""), str(a.get("alert_id"))))


def _verdict(status: str, open_alerts: Sequence[Mapping[str, Any]]) -> str:
    n = len(open_alerts)
    if not n:
        return f"{status.upper()} — nothing open"
    counts = [f"{c} {s}" for s in ("high", "medium")
              if (c := sum(a.get("severity") == s for a in open_alerts))]
    plural = "s" if n != 1 else ""
    return f"{status.upper()} — {n} open alert{plural}" + (f" ({', '.join(counts)})" if counts else "")


def _window(window: Mapping[str, Any]) -> str:
    text = f"{_length(window.get('length', DASH))} of requests, since {_time(window.get('requests_since'))}"
    data = window.get("data") or {}
    if data.get("start") or data.get("end"):
        text += f"; data {_time(data.get('start'))} to {_time(data.get('end'))}"
    else:
        text += "; no collected data yet"
    return text


def _status(report: Mapping[str, Any], status: str, open_alerts: Sequence[Mapping[str, Any]]) -> str:
    ranked = _sorted_alerts(open_alerts)
    what = "; ".join(_e(_what(a)) for a in ranked[:3]) + (f"; and {len(ranked) - 3} more" if len(ranked) > 3
                                                           else "")
    models = report.get("models") or {}
    serving = ", ".join(f"{_e(t)}: <span class='id'>{_e(v)}</span>" for t, v in sorted(models.items())) \
        or "no model in production"
    meta = [("Run", f"<span class='id'>{_e(report.get('run_id', DASH))}</span>"),
            ("At", _time(report.get("at"))), ("Cause", _e(report.get("cause", DASH))),
            ("Window", _window(report.get("window") or {})), ("Models serving", serving)]
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in meta)
    return (f'<section id="status" class="{status}" data-status="{status}">'
            f'<p class="verdict">{_e(_verdict(status, open_alerts))}</p>'
            + (f"<p>{what}</p>" if what else "") + f"<dl>{rows}</dl></section>")


def _open_alerts(report: Mapping[str, Any], open_alerts: Sequence[Mapping[str, Any]]) -> str:
    if not open_alerts:
        table = '<p class="note">No open alerts.</p>'
    else:
        rows = [[_td(_severity(a.get("severity"))),
                 _td(f"{_e(_what(a))}<br><span class='id'>{_e(a.get('alert_id', ''))}</span>"),
                 _td(_e(_measure(str(a.get("metric") or ""), a.get("value"))), "num"),
                 _td(_e(_measure(str(a.get("metric") or ""), a.get("threshold"))), "num"),
                 _td(f"{_time(a.get('opened_at'))}<br><span class='note'>"
                     f"{_e(_ago(a.get('opened_at'), report.get('at')))}</span>", "when"),
                 _td(_e(a.get("detail") or ""))]
                for a in _sorted_alerts(open_alerts)]
        table = _table(["Severity", "What", "Value", "Threshold", "Open since", "Detail"], rows)
    return (f'<section id="open-alerts"><h2>Open alerts</h2>{table}{_changes(report)}'
            f'{_conditions(report.get("conditions") or [])}</section>')


def _change(event: Mapping[str, Any]) -> str:
    metric = str(event.get("metric") or str(event.get("alert_id", "")).split(":", 1)[0])
    severity = _severity(event.get("severity")) + " " if event.get("severity") else ""
    return (f"<li><b>{_e(event.get('event', DASH))}</b> {severity}{_e(_what(event))} "
            f"({_e(_measure(metric, event.get('value')))} vs {_e(_measure(metric, event.get('threshold')))})</li>")


def _changes(report: Mapping[str, Any]) -> str:
    events = (report.get("alerts") or {}).get("events") or []
    if not events:
        return '<p class="note" id="alert-changes">No alert changed in this run.</p>'
    return f'<h3>Changes in this run</h3><ul id="alert-changes">{"".join(map(_change, events))}</ul>'


def _conditions(conditions: Sequence[Mapping[str, Any]]) -> str:
    """Every condition this run evaluated, firing first, folded away."""
    if not conditions:
        return ""
    ranked = sorted(conditions, key=lambda c: (not c.get("firing"), SEVERITY_RANK.get(c.get("severity") or "", 2),
                                               str(c.get("key"))))
    rows = [[_td('<span class="lvl lvl-alert">● firing</span>' if c.get("firing")
                 else '<span class="lvl lvl-none">✓ ok</span>'),
             _td(f"{_e(_what({**c, 'alert_id': c.get('key')}))}<br><span class='id'>{_e(c.get('key', ''))}</span>"),
             _td(_e(_measure(str(c.get("metric") or ""), c.get("value"))), "num"),
             _td(_e(_measure(str(c.get("metric") or ""), c.get("threshold"))), "num"),
             _td(_severity(c.get("severity")) if c.get("severity") else DASH), _td(_e(c.get("detail") or ""))]
            for c in ranked]
    firing = sum(bool(c.get("firing")) for c in conditions)
    table = _table(["State", "Condition", "Value", "Threshold", "Severity", "Detail"], rows, "conditions")
    plural = "s" if len(conditions) != 1 else ""
    summary = f"{len(conditions)} condition{plural} evaluated, {firing} firing"
    return f"<details><summary>{summary}</summary>{table}</details>"


def _check_row(row: Mapping[str, Any]) -> list[str]:
    level = str(row.get("level") or "none")
    cells = [_td(f'<span class="lvl lvl-{_e(level)}">{_e(LEVEL_LABEL.get(level, level))}</span>'),
             _td(_e(row.get("feature", DASH))), _td(_e(row.get("check", DASH))), _td(_e(row.get("source", DASH)))]
    if not row.get("n"):
        label = "no new data" if row.get("source") == "collected" else "no requests"
        cells.append(_td(label, "nodata", span=3))
    else:
        cells += [_td(_num(row.get("value")), "num"), _td(_num(row.get("threshold")), "num"),
                  _td(_count(row.get("n")), "num")]
    return [*cells, _td(_e(row.get("detail") or ""))]


def _inputs(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return '<section id="inputs"><h2>Input checks</h2><p class="note">No input checks in this run.</p></section>'
    ranked = sorted(rows, key=lambda r: (LEVEL_RANK.get(str(r.get("level")), 3), str(r.get("source")),
                                         str(r.get("feature")), str(r.get("check"))))
    head = ["Level", "Feature", "Check", "Source", "Value", "Threshold", "Rows", "Detail"]
    flagged = [r for r in ranked if r.get("level") in ("alert", "warn")]
    passing = [r for r in ranked if r.get("level") not in ("alert", "warn")]
    alerts = sum(r.get("level") == "alert" for r in rows)
    summary = (f"{len(rows)} checks: {alerts} alert, {len(flagged) - alerts} warn, {len(passing)} ok."
               if flagged else f"All {len(rows)} checks ok.")
    body = _table(head, map(_check_row, flagged), "inputs-flagged") if flagged else ""
    if passing:
        body += (f"<details><summary>{len(passing)} checks ok</summary>"
                 f"{_table(head, map(_check_row, passing), 'inputs-ok')}</details>")
    return f'<section id="inputs"><h2>Input checks</h2><p>{summary}</p>{body}</section>'


def _accuracy(rows: Sequence[Mapping[str, Any]], units: Mapping[str, str],
              coverage: Sequence[Mapping[str, Any]]) -> str:
    verdicts = _coverage_verdicts(coverage)
    if not rows:
        return ('<section id="accuracy"><h2>Accuracy against actuals</h2>'
                f'<p class="note">No predictions with actuals yet.</p>{verdicts}</section>')

    def row(a: Mapping[str, Any]) -> list[str]:
        live, holdout = a.get("mape"), a.get("holdout_mape")
        gap = float(live) - float(holdout) if live is not None and holdout is not None else None
        unit = units.get(str(a.get("target")), "")
        badge = '<span class="serving">serving</span>' if a.get("production") else ""
        return [_td(_e(a.get("target", DASH))), _td(f"<span class='id'>{_e(a.get('model_version', DASH))}</span>"
                                                    + badge),
                _td(_count(a.get("rows")), "num"), _td(_num(live, ".2f", " %"), "num"),
                _td(_num(holdout, ".2f", " %"), "num"), _td(_num(gap, "+.2f", " pp"), "num"),
                _td(_num(a.get("rmse"), ".4g", f" {_e(unit)}" if unit else ""), "num"),
                _td(*_coverage_words(a.get("interval_coverage"), a.get("interval_pairs"), a.get("interval_level")))]

    ranked = sorted(rows, key=lambda a: (str(a.get("target")), not a.get("production"),
                                         str(a.get("model_version"))))
    table = _table(["Target", "Model version", "Rows", "Live MAPE", "Holdout MAPE", "Live − holdout", "RMSE",
                    f"{LEVEL * 100:.0f} % interval coverage"], map(row, ranked))
    return f'<section id="accuracy"><h2>Accuracy against actuals</h2>{verdicts}{table}</section>'


def _coverage_words(share: Any, pairs: Any, level: Any) -> tuple[str, str]:
    """(cell HTML, class): ``78.4 % of 1,008 actuals inside the 80 % interval``, or why there is none."""
    if not pairs or share is None:
        return "no interval logged", "nodata"
    return _e(coverage_words(float(share), int(pairs), float(level or LEVEL))), ""


def _coverage_verdicts(coverage: Sequence[Mapping[str, Any]]) -> str:
    """Per target, the verdict first: is the share of actuals inside the interval far below its level?"""
    if not coverage:
        return ""
    items = []
    for c in coverage:
        pairs, least = int(c.get("pairs") or 0), int(c.get("min_pairs") or COVERAGE_MIN_PAIRS)
        words, cls = _coverage_words(c.get("coverage"), pairs, c.get("level"))
        if cls:
            verdict = f'<span class="{cls}">not judged</span>'
        elif pairs < least:
            verdict = f'<span class="nodata">too few to judge ({pairs:,} of {least:,})</span>'
        else:
            level = {"high": "alert", "medium": "warn"}.get(str(c.get("severity")), "none")
            verdict = f'<span class="lvl lvl-{level}">{_e(LEVEL_LABEL[level])}</span>'
        items.append(f"<li>{verdict} <b>{_e(c.get('target', DASH))}:</b> {words}"
                     f"{'' if cls else ', every version since ' + _time(c.get('since'))}</li>")
    note = (f'<p class="note">A warning below {COVERAGE_MEDIUM * 100:.0f} %, an alert below '
            f"{COVERAGE_HIGH * 100:.0f} %, from {COVERAGE_MIN_PAIRS:,} pairs on (no real week of 2017 fell "
            f"below {COVERAGE_MEDIUM * 100:.0f} %); the table counts each run's new pairs.</p>")
    return f'<h3>Prediction intervals</h3><ul id="interval-coverage">{"".join(items)}</ul>{note}'


def _distribution_caption(d: Distribution) -> str:
    served = np.asarray(d.served, dtype=float)
    served = served[np.isfinite(served)]
    text = f"{d.feature}: {len(served)} values served in requests"
    if d.observed is None:
        text += "; no actuals yet"
    else:
        text += f" vs {int(np.isfinite(np.asarray(d.observed, dtype=float)).sum())} observed for the same timestamps"
    if d.training_range is not None and len(served):
        lo, hi = d.training_range
        outside = float(np.mean((served < lo) | (served > hi)))
        text += f"; shaded: training range, {outside:.0%} of served values outside it"
    return text + "."


def _plot_group(title: str, items: Sequence[tuple[str, str | None, str, str]]) -> str:
    """(plot id, svg or None, caption, note when omitted) -> figures, and a note per omitted plot."""
    figures = "".join(f'<figure id="{_e(plot_id)}">{svg}<figcaption>{_e(caption)}</figcaption></figure>'
                      for plot_id, svg, caption, _ in items if svg is not None)
    notes = "".join(f'<p class="note" data-omitted="{_e(plot_id)}">{_e(missing)}</p>'
                    for plot_id, svg, _, missing in items if svg is None)
    return f"<h3>{_e(title)}</h3>{notes}" + (f'<div class="plots">{figures}</div>' if figures else "")


def _plots(distributions: Sequence[Distribution], timelines: Sequence[Timeline],
           history: Mapping[str, Sequence[VersionAccuracy]]) -> str:
    accuracy: list[tuple[str, str | None, str, str]] = []
    targets = [t.target for t in timelines] + [t for t in history if t not in {t.target for t in timelines}]
    by_target = {t.target: t for t in timelines}
    for target in targets:  # each target's timeline beside its accuracy history
        if target in by_target:
            t = by_target[target]
            accuracy.append((f"plot-timeline-{target}", plots.timeline(t),
                             f"{target}: the serving model's predictions and the actuals, {len(t.timestamps)} "
                             "points.", f"{target}: no predictions with actuals, not plotted."))
        if target in history:
            accuracy.append((f"plot-accuracy-{target}", plots.accuracy(target, history[target]),
                             f"{target}: live MAPE per version at each monitor run; dashed: holdout MAPE; "
                             "thick: the serving version.", f"{target}: no live accuracy yet, not plotted."))
    groups = [
        ("Inputs: served against observed", [
            (f"plot-distribution-{d.feature}", plots.distribution(d), _distribution_caption(d),
             f"{d.feature}: no values this run, not plotted.") for d in distributions]),
        ("Predictions against actuals", accuracy),
    ]
    body = "".join(_plot_group(title, items) for title, items in groups if items)
    return f'<section id="plots"><h2>Plots</h2>{body or "<p class=note>Nothing to plot in this run.</p>"}</section>'


def _operations(ops: Mapping[str, Any]) -> str:
    if not ops.get("requests"):
        body = '<p class="note">No requests in the window.</p>'
    else:
        items = [
            ("Requests", _count(ops.get("requests"))),
            ("Server errors (5xx)", f"{_count(ops.get('errors'))} ({_num(ops.get('error_rate'), '.2%')})"),
            ("Client errors (4xx)", _count(ops.get("client_errors"))),
            ("Latency p50 / p95 / p99", " / ".join(_num(ops.get(f"latency_p{p}_ms"), ".0f")
                                                   for p in (50, 95, 99)) + " ms"),
            ("Predictions (rows)", _count(ops.get("predictions"))),
            ("Log records dropped", _count(ops.get("log_dropped"))),
            ("Invocations per day", _num(ops.get("invocations_per_day"), ",.0f")),
            ("Estimated cost", _num(ops.get("cost_daily_usd"), ".4f", " USD/day")),
        ]
        body = "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"
    return f'<section id="operations"><h2>Operations and cost</h2>{body}</section>'


def render(report: Mapping[str, Any], open_alerts: Sequence[Mapping[str, Any]],
           distributions: Sequence[Distribution], timelines: Sequence[Timeline],
           history: Mapping[str, Sequence[VersionAccuracy]]) -> str:
    """The report page (one self-contained HTML document)."""
    status = overall_status(open_alerts)
    units = {t.target: t.unit for t in timelines}
    return "".join([
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(status.upper())} — monitor report {_e(report.get('run_id', ''))}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Monitor report</h1>",
        _status(report, status, open_alerts),
        _open_alerts(report, open_alerts),
        _inputs(report.get("inputs") or []),
        _accuracy(report.get("accuracy") or [], units, report.get("interval_coverage") or []),
        _plots(distributions, timelines, history),
        _operations(report.get("operations") or {}),
        "</body></html>"])
