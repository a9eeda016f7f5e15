"""Raw bytes to frames and back: parsing what sources send, writing the canonical CSV.

Raw input is parsed as text first, so validation can tell a missing value from
a malformed one. Stored batches use one canonical CSV: ISO timestamps and the
spec's canonical column names, which makes a batch's content hash stable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import TYPE_CHECKING

from shared.core.dataset_spec import TIMESTAMP, DatasetSpec
from shared.platform.errors import InvalidData

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("csv", "json")
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S"


class ParseError(InvalidData):
    """The bytes are not CSV or JSON records at all."""


def parse_records(raw: bytes, fmt: str) -> pd.DataFrame:
    """All cells as text (missing as NaN); ParseError for garbage."""
    import pandas as pd

    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 text: {exc}") from exc
    if fmt == "json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ParseError(f"not JSON: {exc}") from exc
        records = doc.get("records") if isinstance(doc, dict) else doc
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ParseError("JSON must be a list of records or {\"records\": [...]}")
        frame = pd.DataFrame.from_records(records)
        return frame.astype(object).where(frame.notna(), None).map(
            lambda v: None if v is None else str(v)) if len(frame) else frame
    if fmt != "csv":
        raise ValueError(f"unknown format {fmt!r}; use one of {FORMATS}")
    if not text.strip():
        return pd.DataFrame()
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=True, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise ParseError(f"not CSV: {exc}") from exc
    if frame.shape[1] < 2:
        raise ParseError(f"not CSV records: {frame.shape[1]} column(s)")
    header = next(csv.reader(io.StringIO(text)), [])
    if len(header) == frame.shape[1] and len(set(header)) < len(header):
        # pandas renames a repeated header to "X.1"; keep what the source wrote, so
        # validation sees the repetition instead of an unknown column.
        frame.columns = [h.strip() for h in header]
    return frame


def read_dataset_csv(raw: bytes, spec: DatasetSpec) -> pd.DataFrame:
    """A trusted file of the series (the bundled data) with canonical, typed columns."""
    import pandas as pd

    frame = pd.read_csv(io.BytesIO(raw))
    frame = frame.rename(columns=spec.rename_map(frame.columns))
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], format=spec.timestamp_format)
    return frame[[TIMESTAMP, *spec.feature_names, *spec.target_names]]


def to_canonical_csv(frame: pd.DataFrame, spec: DatasetSpec) -> bytes:
    """The stored form of clean rows: ISO timestamps, canonical columns, full precision."""
    out = frame[[TIMESTAMP, *spec.feature_names, *spec.target_names]].copy()
    out[TIMESTAMP] = out[TIMESTAMP].dt.strftime(ISO_FORMAT)
    return out.to_csv(index=False, lineterminator="\n").encode()


def read_canonical_csv(raw: bytes) -> pd.DataFrame:
    """A stored batch back as a typed frame."""
    import pandas as pd

    frame = pd.read_csv(io.BytesIO(raw))
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], format=ISO_FORMAT)
    return frame


def content_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()
