"""Batch validation against the dataset spec, and the quality score.

Pure: a frame of text cells in, a report out. Every row is checked for a
parseable on-grid timestamp, order, duplicates, numeric values, missing values
and physical ranges; rows at or before the last stored timestamp are dropped and
counted (they are already stored). The score is the share of clean rows times
the completeness of the time grid the batch covers:

    score = clean rows / new rows  x  present slots / expected slots

A batch is accepted when the schema is complete and the score reaches the
threshold; only its clean rows are stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from shared.core.dataset_spec import TIMESTAMP, DatasetSpec, HeaderMatch
from shared.platform.timefmt import parse_iso_local

if TYPE_CHECKING:
    import pandas as pd

# Name prefix of the checks against the accepted history (shared/collect/plausibility.py).
PLAUSIBILITY = "plausibility"


@dataclass(frozen=True)
class Check:
    """One check's outcome: rows that failed it out of the rows it examined."""

    name: str
    failed: int
    examined: int
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.failed == 0

    @property
    def ratio(self) -> float:
        return 1.0 if self.examined == 0 else 1.0 - self.failed / self.examined

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "failed": self.failed,
                "examined": self.examined, "ratio": round(self.ratio, 6), "detail": self.detail}


@dataclass
class QualityReport:
    """The outcome of validating one batch."""

    checks: list[Check]
    score: float
    accepted: bool
    clean: pd.DataFrame | None = None
    dropped: pd.DataFrame | None = None
    overlap_rows: int = 0
    new_rows: int = 0
    reasons: list[str] = field(default_factory=list)
    unknown_columns: list[str] = field(default_factory=list)

    @property
    def implausible(self) -> bool:
        """Whether a plausibility check (against the accepted history) failed."""
        return any(c.name.startswith(PLAUSIBILITY) and not c.passed for c in self.checks)

    def judged(self, plausibility: list[Check]) -> QualityReport:
        """This report with the plausibility checks added; any failure refuses the batch."""
        failed = [c for c in plausibility if not c.passed]
        return replace(self, checks=[*self.checks, *plausibility],
                       accepted=self.accepted and not failed,
                       reasons=[*self.reasons, *(f"{c.name}: {c.detail}" for c in failed)])

    @property
    def nothing_new(self) -> bool:
        return self.new_rows == 0 and all(c.name != "schema" or c.passed for c in self.checks)


def _schema_check(match: HeaderMatch, required: list[str]) -> Check:
    """Every required column present exactly once; names the offending headers."""
    missing = [c for c in required if c not in match.mapping.values() and c not in match.ambiguous]
    problems = []
    if match.ambiguous:
        problems.append("ambiguous columns: " + "; ".join(
            f"{' and '.join(repr(h) for h in headers)} all read as {canonical}"
            for canonical, headers in match.ambiguous.items()))
    if missing:
        problems.append(f"missing required columns: {', '.join(missing)}")
    failed = len(missing) + len(match.ambiguous)
    return Check("schema", failed, len(required),
                 "; ".join(problems) or "all required columns present")


def _unknown_check(match: HeaderMatch) -> Check:
    detail = (f"columns not in the spec, left out: {', '.join(repr(h) for h in match.unknown)}"
              if match.unknown else "no columns beyond the spec")
    return Check("unknown_columns", len(match.unknown), len(match.unknown) or 1, detail)


def _parse_timestamps(values: pd.Series, spec: DatasetSpec) -> pd.Series:
    import pandas as pd

    parsed = pd.to_datetime(values, format=spec.timestamp_format, errors="coerce")
    retry = parsed.isna() & values.notna()
    if retry.any():
        # Sources may send ISO 8601 instead of the file's own format.
        iso = values[retry].map(lambda v: parse_iso_local(v, spec.utc_offset))
        parsed[retry] = pd.to_datetime(iso, errors="coerce")
    return parsed


def validate(raw: pd.DataFrame, spec: DatasetSpec, last_stored: pd.Timestamp | None,
             threshold: float = 0.8) -> QualityReport:
    """Check a batch of text cells against ``spec``; see the module docstring for the score.

    The collector passes QUALITY_THRESHOLD; the default (that setting's) serves tests and tools.
    """
    import numpy as np
    import pandas as pd

    required = [TIMESTAMP, *spec.feature_names, *spec.target_names]
    match = spec.match_headers(raw.columns)
    schema, unknown = _schema_check(match, required), _unknown_check(match)
    if not schema.passed:
        return QualityReport(checks=[schema, unknown], score=0.0, accepted=False, new_rows=len(raw),
                             reasons=[f"schema: {schema.detail}"], unknown_columns=list(match.unknown))
    frame = raw[list(match.mapping)].rename(columns=match.mapping)[required].reset_index(drop=True)

    ts = _parse_timestamps(frame[TIMESTAMP], spec)
    overlap = (ts <= last_stored) if last_stored is not None else pd.Series(False, index=frame.index)
    overlap &= ts.notna()
    fresh = ~overlap
    n_new = int(fresh.sum())
    if n_new == 0:
        return QualityReport(checks=[schema, unknown, Check("overlap", 0, len(frame),
                                                            f"{int(overlap.sum())} rows already stored")],
                             score=1.0, accepted=False, overlap_rows=int(overlap.sum()),
                             unknown_columns=list(match.unknown))

    bad_ts = ts.isna() & fresh
    step = pd.Timedelta(spec.interval)
    off_grid = fresh & ts.notna() & ((ts - pd.Timestamp(0)) % step != pd.Timedelta(0))
    duplicate = fresh & ts.notna() & ts.duplicated(keep="first")
    running_max = ts.where(fresh).cummax().shift(1)
    out_of_order = fresh & ts.notna() & ~duplicate & (ts <= running_max)

    values = pd.DataFrame({c: pd.to_numeric(frame[c], errors="coerce") for c in required[1:]})
    text = frame[required[1:]]
    blank = text.isna() | text.apply(lambda s: s.astype(str).str.strip().eq(""))
    non_numeric = values.isna() & ~blank
    below = pd.DataFrame({c: values[c] < spec.column(c).min for c in values.columns})
    above = pd.DataFrame({c: values[c] > spec.column(c).max for c in values.columns})
    out_of_range = below | above

    row_missing = blank.any(axis=1) & fresh
    row_types = non_numeric.any(axis=1) & fresh
    row_range = out_of_range.any(axis=1) & fresh
    clean = fresh & ~(bad_ts | off_grid | duplicate | out_of_order | row_missing | row_types | row_range)

    clean_ts = ts[clean]
    start = (last_stored + step) if last_stored is not None else (clean_ts.min() if len(clean_ts) else None)
    end = clean_ts.max() if len(clean_ts) else None
    expected = int((end - start) / step) + 1 if start is not None and end is not None and end >= start else 0
    present = int(clean_ts.nunique())
    missing_slots = max(0, expected - present)

    def columns_detail(mask: pd.DataFrame) -> str:
        counts = {c: int(n) for c, n in mask[fresh].sum().items() if n}
        return ", ".join(f"{c}: {n}" for c, n in counts.items())

    checks = [
        schema,
        unknown,
        Check("timestamps", int(bad_ts.sum()), n_new, "unparseable timestamps"),
        Check("interval", int(off_grid.sum()), n_new, f"not on the {step} grid"),
        Check("order", int(out_of_order.sum()), n_new, "not strictly increasing"),
        Check("duplicates", int(duplicate.sum()), n_new, "repeated timestamps in the batch"),
        Check("types", int(row_types.sum()), n_new, columns_detail(non_numeric) or "non-numeric values"),
        Check("missing", int(row_missing.sum()), n_new, columns_detail(blank) or "missing values"),
        Check("ranges", int(row_range.sum()), n_new,
              columns_detail(out_of_range) or "values outside physical ranges"),
        Check("gaps", missing_slots, max(expected, 1),
              f"{missing_slots} of {expected} expected {step} slots missing"),
        Check("overlap", 0, len(frame), f"{int(overlap.sum())} rows already stored, dropped"),
    ]
    completeness = present / expected if expected else 0.0
    score = float(np.clip(int(clean.sum()) / n_new * completeness, 0.0, 1.0))
    accepted = score >= threshold
    reasons = [f"{c.name}: {c.failed} of {c.examined} ({c.detail})"
               for c in sorted((c for c in checks if not c.passed), key=lambda c: c.ratio)]

    typed = values.assign(**{TIMESTAMP: ts})[required]
    return QualityReport(checks=checks, score=round(score, 6), accepted=accepted,
                         clean=typed[clean].sort_values(TIMESTAMP).reset_index(drop=True),
                         dropped=frame[fresh & ~clean], overlap_rows=int(overlap.sum()),
                         new_rows=n_new, reasons=reasons, unknown_columns=list(match.unknown))
