"""Does a JSON record fit a BigQuery table schema (terraform/bigquery/*.json)?"""

from __future__ import annotations

import math
from typing import Any

# What BigQuery's JSON reader accepts for each type; FLOAT64 also takes "NaN" and "Infinity".
_NON_FINITE = {"NaN", "Infinity", "-Infinity"}


def _scalar_fits(kind: str, value: Any) -> bool:
    if kind == "STRING":
        return isinstance(value, str)
    if kind == "INT64":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "FLOAT64":
        return (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)) \
            or value in _NON_FINITE
    if kind == "BOOL":
        return isinstance(value, bool)
    raise ValueError(f"type {kind} is not handled here")


def violations(record: dict[str, Any], fields: list[dict[str, Any]], strict: bool = True,
               path: str = "") -> list[str]:
    """Where ``record`` does not fit ``fields``; with ``strict``, keys the schema lacks count too
    (the tables ignore unknown values, so an undeclared key would be silently lost)."""
    found = []
    declared = {f["name"]: f for f in fields}
    if strict:
        found += [f"{path}{key}: not declared" for key in record if key not in declared]
    for name, field in declared.items():
        value, where = record.get(name), f"{path}{name}"
        if value is None:
            if field["mode"] == "REQUIRED":
                found.append(f"{where}: required")
            continue
        items = value if field["mode"] == "REPEATED" else [value]
        if field["mode"] == "REPEATED" and not isinstance(value, list):
            found.append(f"{where}: not an array")
            continue
        for i, item in enumerate(items):
            at = f"{where}[{i}]" if field["mode"] == "REPEATED" else where
            if item is None:
                found.append(f"{at}: null inside an array")
            elif field["type"] == "RECORD":
                found += violations(item, field["fields"], strict, f"{at}.") if isinstance(item, dict) \
                    else [f"{at}: not an object"]
            elif not _scalar_fits(field["type"], item):
                found.append(f"{at}: {item!r} is not {field['type']}")
    return found
