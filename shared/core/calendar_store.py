"""The special days an operator added, kept in the documents store (``calendars/<dataset>``).

The spec's ``calendar`` section holds the known holidays; dates announced later
(Islamic holidays are confirmed about a day ahead) are added here without a code
change or a deployment (``python -m shared.cli calendar add``). Retrain and
predict merge both (``FeatureContext.from_spec``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from shared.core.dataset_spec import DatasetSpec
from shared.core.special_days import HOLIDAY, KINDS, CalendarError, parse_entries
from shared.platform import names
from shared.platform.ports import DocumentStore, Transaction
from shared.platform.timefmt import iso_utc

SPEC, OPERATOR = "spec", "operator"
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
# What makes two entries the same one (who added it and when do not).
_IDENTITY = ("date", "kind", "start", "end", "name")


def operator_calendar(documents: DocumentStore, spec: DatasetSpec) -> dict[str, Any]:
    """The entries an operator added for ``spec``'s series (empty when none)."""
    doc = documents.get(names.CALENDARS, spec.name) or {}
    return {"holidays": list(doc.get("holidays", [])), "periods": list(doc.get("periods", []))}


def parse_day(value: str, what: str = "date") -> date:
    """``value`` written YYYY-MM-DD as a date; CalendarError naming it otherwise."""
    try:
        if _ISO_DAY.fullmatch(value.strip()):
            return date.fromisoformat(value.strip())
    except ValueError:
        pass
    raise CalendarError(f"{what} {value!r} is not a date written YYYY-MM-DD")


def add_entry(documents: DocumentStore, spec: DatasetSpec, kind: str, start: str, end: str | None,
              name: str, actor: str) -> tuple[dict[str, Any], bool]:
    """Add a holiday (one day, or each day of ``start``..``end``) or a period.

    Returns the stored entry and whether it was added: adding the same entry (same
    kind, days and name) twice keeps the first and returns it with ``False``. The
    entry is validated as the spec's entries are; CalendarError names what is wrong.
    """
    if kind not in KINDS:
        raise CalendarError(f"kind must be one of {list(KINDS)}, not {kind!r}")
    first = parse_day(start, "start date")
    last = parse_day(end, "end date (--to)") if end is not None else first
    if last < first:
        raise CalendarError(f"end date {last} is before start date {first}")
    if (last - first).days > 366:
        raise CalendarError(f"{first} to {last} is more than a year: add each holiday or period on its own")
    if first.year < 1970:
        raise CalendarError(f"{first} is before the series could have started")
    if not name.strip():
        raise CalendarError("name must not be empty")
    added = {"name": name.strip(), "added_by": actor, "added_at": iso_utc()}
    if kind == HOLIDAY and last == first:
        entry, key = {"date": first.isoformat(), **added}, "holidays"
    else:
        entry, key = {"kind": kind, "start": first.isoformat(), "end": last.isoformat(), **added}, "periods"
    parse_entries({key: [entry]})  # the spec's checks too

    def same(e: Mapping[str, Any]) -> bool:
        return all(e.get(k) == entry.get(k) for k in _IDENTITY)

    def add(tx: Transaction) -> tuple[dict[str, Any], bool]:
        current = dict(tx.get(names.CALENDARS, spec.name) or {})
        entries = list(current.get(key, []))
        existing = next((dict(e) for e in entries if same(e)), None)
        if existing is not None:
            return existing, False
        tx.set(names.CALENDARS, spec.name, {**current, key: [*entries, entry]})
        return entry, True

    return documents.transaction(add)


def special_day_rows(spec: DatasetSpec, extra: Mapping[str, Any] | None,
                     first: date | None = None, last: date | None = None) -> list[dict[str, str]]:
    """Every special day of the spec's calendar and of ``extra`` (an operator's), one row a
    day as ``{"date", "kind", "name", "source"}`` in date order, ``first``..``last`` included.

    A day listed by both shows once per source; an operator's rows carry who added it.
    """
    rows: dict[tuple[str, ...], dict[str, str]] = {}
    for source, section in ((SPEC, spec.section("calendar")), (OPERATOR, extra or {})):
        try:
            parse_entries(section)
        except CalendarError as exc:
            raise CalendarError(f"the {source} calendar: {exc}") from exc
        for entry_key, entries in (("holidays", section.get("holidays")), ("periods", section.get("periods"))):
            for entry in entries or []:
                for day in parse_entries({entry_key: [entry]}):
                    if (first and day.day < first) or (last and day.day > last):
                        continue
                    row = {"date": day.day.isoformat(), "kind": day.kind, "name": day.name, "source": source}
                    if source == OPERATOR:
                        row |= {"added_by": str(entry.get("added_by", "")),
                                "added_at": str(entry.get("added_at", ""))}
                    rows.setdefault(tuple(row[k] for k in ("date", "kind", "name", "source")), row)
    return sorted(rows.values(), key=lambda r: (r["date"], r["kind"], r["source"] != SPEC, r["name"]))
