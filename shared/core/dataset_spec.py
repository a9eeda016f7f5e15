"""The dataset spec: what a series looks like, held as data (``shared/core/specs/*.json``).

A new series plugs in by writing a new spec file; no code names a column.
Column names are normalised once, here, so that raw headers with stray or
doubled whitespace (``Zone 2  Power Consumption``) match their spec entry.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.platform.errors import ConfigError
from shared.platform.settings import PROJECT_ROOT

SPECS_DIR = Path(__file__).resolve().parent / "specs"
TIMESTAMP = "timestamp"


class SpecError(ConfigError):
    """The spec file is missing or does not describe a usable series."""


def normalize_header(header: str) -> str:
    """Fold whitespace and case so raw headers match their spec entry."""
    return " ".join(str(header).split()).casefold()


@dataclass(frozen=True)
class ValueColumn:
    """A feature or target: canonical name, raw column, unit and physical range."""

    name: str
    column: str
    unit: str
    min: float
    max: float
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HeaderMatch:
    """Raw headers sorted out: mapped to a canonical name, ambiguous, or unknown to the spec."""

    mapping: dict[str, str]
    ambiguous: dict[str, tuple[str, ...]]
    unknown: tuple[str, ...]


@dataclass(frozen=True)
class DatasetSpec:
    """A series' columns, timestamp format, sampling interval and ranges."""

    name: str
    description: str
    timestamp_column: str
    timestamp_format: str
    interval: timedelta
    utc_offset: timedelta
    features: tuple[ValueColumn, ...]
    targets: tuple[ValueColumn, ...]
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.features]

    @property
    def target_names(self) -> list[str]:
        return [c.name for c in self.targets]

    @functools.cached_property
    def feature_range(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Every feature's physical minimum and maximum, in ``features`` order."""
        return tuple(c.min for c in self.features), tuple(c.max for c in self.features)

    @property
    def value_columns(self) -> tuple[ValueColumn, ...]:
        return self.features + self.targets

    def column(self, name: str) -> ValueColumn:
        """The feature or target called ``name``."""
        for col in self.value_columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def _aliases(self) -> dict[str, str]:
        aliases = {normalize_header(self.timestamp_column): TIMESTAMP,
                   normalize_header(TIMESTAMP): TIMESTAMP}
        for col in self.value_columns:
            aliases[normalize_header(col.column)] = col.name
            aliases[normalize_header(col.name)] = col.name
        return aliases

    def match_headers(self, headers: Iterable[str]) -> HeaderMatch:
        """How raw headers map to canonical names, with the ambiguous and unknown ones.

        A header matches a spec entry by its raw column name or by its canonical
        name, after whitespace and case folding. Two headers that match the same
        entry (``WindSpeed`` beside ``Wind Speed``, or a repeated header) are
        ambiguous: neither is mapped, since nothing says which one is right.
        """
        aliases = self._aliases()
        claims: dict[str, list[str]] = {}
        unknown: list[str] = []
        for header in headers:
            canonical = aliases.get(normalize_header(header))
            if canonical is None:
                unknown.append(str(header))
            else:
                claims.setdefault(canonical, []).append(str(header))
        return HeaderMatch(
            mapping={hs[0]: c for c, hs in claims.items() if len(hs) == 1},
            ambiguous={c: tuple(hs) for c, hs in claims.items() if len(hs) > 1},
            unknown=tuple(unknown))

    def rename_map(self, headers: Iterable[str]) -> dict[str, str]:
        """Map each recognised raw header to its canonical name (first match wins).

        For trusted files (the bundled series, stored batches); collected batches
        go through ``match_headers``, which refuses ambiguity instead.
        """
        aliases = self._aliases()
        mapping: dict[str, str] = {}
        for header in headers:
            canonical = aliases.get(normalize_header(header))
            if canonical is not None and canonical not in mapping.values():
                mapping[header] = canonical
        return mapping

    @property
    def replay_data(self) -> Path | None:
        """The bundled file the replay source serves, if the spec names one."""
        file = self.section("replay").get("file")
        return PROJECT_ROOT / str(file) if file else None

    def read_replay_data(self) -> bytes:
        """The bytes of the bundled replay file; SpecError when the spec names none."""
        if self.replay_data is None:
            raise SpecError(f"spec {self.name} names no replay file (its replay.file)")
        return self.replay_data.read_bytes()

    def section(self, key: str) -> Mapping[str, Any]:
        """An optional top-level section of the spec file (empty when absent)."""
        value = self.raw.get(key, {})
        return value if isinstance(value, Mapping) else {}


def _value_column(entry: Mapping[str, Any], where: str) -> ValueColumn:
    try:
        lo, hi = float(entry["min"]), float(entry["max"])
        col = ValueColumn(name=str(entry["name"]), column=str(entry.get("column", entry["name"])),
                          unit=str(entry.get("unit", "")), min=lo, max=hi,
                          options={k: v for k, v in entry.items()
                                   if k not in {"name", "column", "unit", "min", "max"}})
    except (KeyError, TypeError, ValueError) as exc:
        raise SpecError(f"{where}: needs name, min and max ({exc})") from exc
    if not lo < hi:
        raise SpecError(f"{where}: min {lo} must be below max {hi}")
    return col


def parse_spec(raw: Mapping[str, Any]) -> DatasetSpec:
    """Build a spec from its JSON document, checking what the code relies on."""
    try:
        ts = raw["timestamp"]
        interval = timedelta(minutes=float(ts["interval_minutes"]))
        spec = DatasetSpec(
            name=str(raw["name"]),
            description=str(raw.get("description", "")),
            timestamp_column=str(ts["column"]),
            timestamp_format=str(ts["format"]),
            interval=interval,
            utc_offset=timedelta(minutes=float(ts.get("utc_offset_minutes", 0))),
            features=tuple(_value_column(e, f"features[{i}]") for i, e in enumerate(raw.get("features", []))),
            targets=tuple(_value_column(e, f"targets[{i}]") for i, e in enumerate(raw["targets"])),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"spec is missing or has a bad {exc}") from exc
    if interval <= timedelta(0):
        raise SpecError("timestamp.interval_minutes must be positive")
    if not spec.targets:
        raise SpecError("a spec needs at least one target")
    names = [c.name for c in spec.value_columns]
    if len(set(names)) != len(names) or TIMESTAMP in names:
        raise SpecError(f"feature and target names must be unique and not '{TIMESTAMP}': {names}")
    return spec


@functools.lru_cache(maxsize=8)
def load_spec(name_or_path: str) -> DatasetSpec:
    """Load a spec by name (a file in ``shared/core/specs/``) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SPECS_DIR / f"{name_or_path}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        known = sorted(p.stem for p in SPECS_DIR.glob("*.json"))
        raise SpecError(f"no dataset spec {name_or_path!r} (known: {known})") from exc
    except json.JSONDecodeError as exc:
        raise SpecError(f"dataset spec {path} is not valid JSON: {exc}") from exc
    return parse_spec(raw)
