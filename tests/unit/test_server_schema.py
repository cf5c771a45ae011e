"""The request validator: the JSON Schema subset the HTTP API declares."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.errors import InvalidRequest
from consensus.server.schema import INT64_MAX, INT64_MIN, int64, obj, parse_json, validate

BODY = obj({"by": int64(), "name": {"type": "string", "maxLength": 3, "pattern": "[a-z]+"}}, required=("by",))


@pytest.mark.parametrize(
    "value",
    [{"by": 1}, {"by": INT64_MIN}, {"by": INT64_MAX, "name": "abc"}],
)
def test_valid_values_pass(value):
    validate(value, BODY)


@pytest.mark.parametrize(
    "value",
    [None, [], "x", {}, {"by": True}, {"by": 1.0}, {"by": "1"}, {"by": INT64_MAX + 1}, {"by": INT64_MIN - 1},
     {"by": 1, "name": "abcd"}, {"by": 1, "name": "AB"}, {"by": 1, "name": 3}, {"by": 1, "other": 1}],
)
def test_invalid_values_are_refused(value):
    with pytest.raises(InvalidRequest):
        validate(value, BODY)


@pytest.mark.parametrize("raw", [b"{", b"NaN", b'{"a": Infinity}', b"\xff", b"[" * 50_000])
def test_bad_json_is_an_invalid_request(raw):
    with pytest.raises(InvalidRequest):
        parse_json(raw)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
                    max_leaves=10))
def test_validation_raises_nothing_but_invalid_request(value):
    try:
        validate(value, BODY)
    except InvalidRequest:
        pass
