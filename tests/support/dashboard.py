"""What terraform/dashboard.tf's log-based metrics read from the functions' log entries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import hcl2

DASHBOARD = Path(__file__).resolve().parents[2] / "terraform" / "dashboard.tf"


@dataclass(frozen=True)
class LogMetric:
    """One log-based metric: the entries it counts and the fields it extracts from them."""

    name: str
    message: str
    conditions: dict[str, str]  # other jsonPayload comparisons of the filter: field -> "=true", ">=0"
    value: str | None
    labels: tuple[str, ...]


def log_metrics() -> list[LogMetric]:
    options = hcl2.SerializationOptions(strip_string_quotes=True, with_comments=False)
    with open(DASHBOARD, encoding="utf-8") as fh:
        doc = hcl2.load(fh, serialization_options=options)
    declared = next(block["log_metrics"] for block in doc["locals"] if "log_metrics" in block)
    metrics = []
    for name, body in declared.items():
        found = dict(re.findall(r'jsonPayload\.(\w+)\s*(=\\?"[^"\\]*\\?"|=\w+|>=\S+)', body["filter"]))
        message = found.pop("message").strip('=\\"')
        value = body.get("value")
        metrics.append(LogMetric(name, message, found,
                                 re.fullmatch(r"EXTRACT\(jsonPayload\.(\w+)\)", value).group(1) if value else None,
                                 tuple(body["labels"])))
    return metrics
