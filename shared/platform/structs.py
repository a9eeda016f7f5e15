"""Frozen dataclasses from JSON objects: the one parser behind every JSON setting.

``from_json_object`` rejects unknown keys (naming them), reports missing required
keys, and converts each value to its field's declared type, so a typo in
``ALERT_THRESHOLDS`` fails at start-up instead of being ignored. Checks that
involve a field's value beyond its type belong in the dataclass's
``__post_init__`` (raising ValueError).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def _convert(name: str, kind: Any, value: Any) -> Any:
    """``value`` as ``kind`` (str, int, float, bool or Any); ValueError naming ``name`` otherwise."""
    if kind is Any:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name}: must be true or false, not {value!r}")
    if kind is int:
        # JSON has one number type: 3.0 is an integer, 3.5 and true are not.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ValueError(f"{name}: must be an integer, not {value!r}")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}: must be a finite number, not {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{name}: must be a string, not {value!r}")
        return value
    raise TypeError(f"{name}: fields of type {kind!r} are not supported")


def from_json_object(cls: type[T], value: Any, what: str = "") -> T:
    """An instance of the frozen dataclass ``cls`` from a decoded JSON object.

    ValueError (prefixed with ``what`` when given) for a value that is not an
    object, unknown or missing keys, a value of the wrong type, or whatever the
    dataclass's own ``__post_init__`` refuses.
    """
    prefix = f"{what}: " if what else ""
    if not isinstance(value, dict):
        raise ValueError(f"{prefix}must be a JSON object")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ValueError(f"{prefix}unknown keys {unknown} (allowed: {sorted(fields)})")
    required = [n for n, f in fields.items() if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in value]
    if missing:
        raise ValueError(f"{prefix}missing keys {missing}")
    hints = typing.get_type_hints(cls)
    try:
        kwargs = {name: _convert(name, hints[name], item) for name, item in value.items()}
        return cls(**kwargs)
    except ValueError as exc:
        raise ValueError(f"{prefix}{exc}") from exc


class FrozenJson(Mapping[str, Any]):
    """A read-only JSON object that, unlike ``MappingProxyType``, hashes.

    Settings are hashed (backends are cached per settings object), so each of
    their values must be.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)
        self._hash = hash(json.dumps(self._data, sort_keys=True, default=str))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self) == dict(other)

    def __repr__(self) -> str:
        return f"FrozenJson({self._data!r})"
