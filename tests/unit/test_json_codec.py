"""The fast JSON encoder answers what the standard library would, and never fails."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.platform.json_codec import dumps

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30)


@settings(max_examples=300, derandomize=True, database=None)
@given(JSON_VALUES)
def test_it_decodes_to_the_same_value_as_the_standard_library_encodes(value):
    # Integers beyond 64 bits included: they go through the standard library.
    assert json.loads(dumps(value)) == json.loads(json.dumps(value))


def test_numpy_scalars_are_numbers_and_unknown_types_strings():
    decoded = json.loads(dumps({"a": np.float64(1.5), "b": np.int64(3), 4: "int key"}))
    assert decoded == {"a": 1.5, "b": 3, "4": "int key"}
    assert json.loads(dumps({"t": object.__new__(type("Odd", (), {"__str__": lambda self: "odd"}))})) == {"t": "odd"}


def test_nan_becomes_null_and_huge_integers_are_kept_exactly():
    assert json.loads(dumps([float("nan"), 1.0])) == [None, 1.0]
    assert json.loads(dumps({"n": 10**40})) == {"n": 10**40}
