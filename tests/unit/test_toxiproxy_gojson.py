"""Go-compatible JSON helpers and the slicer's cut computation."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, strategies as st

from chaos.toxiproxy._gojson import BadJSON, decode_body, decode_fields, dumps, format_float32
from chaos.toxiproxy.toxics import slice_bounds


@pytest.mark.parametrize("value, text", [
    (1.0, "1"), (0.5, "0.5"), (0.25, "0.25"), (2.5, "2.5"), (-1.0, "-1"), (0.1, "0.1"), (0.0, "0"),
    (1e21, "1e+21"), (1e-7, "1e-7"), (123456789.0, "123456790"), (1 / 3, "0.33333334"),
])
def test_format_float32_matches_go(value: float, text: str) -> None:
    assert format_float32(value) == text


@pytest.mark.parametrize("body, message", [
    (b"", "EOF"), (b"   \n", "EOF"), (b"{", "unexpected EOF"), (b'{"a": "x', "unexpected EOF"),
    (b"{nope}", "invalid character 'n' looking for beginning of object key string"),
    (b"[1 2]", "invalid character '2' after array element"),
    (b'{"a": 1 "b"}', "invalid character '\"' after object key:value pair"),
    (b"NaN", "invalid character 'N' looking for beginning of value"),
])
def test_decode_body_errors(body: bytes, message: str) -> None:
    with pytest.raises(BadJSON) as err:
        decode_body(body)
    assert str(err.value) == message


def test_decode_body_reads_one_value_and_ignores_the_rest() -> None:
    assert decode_body(b' {"a": 1} {"b": 2} garbage') == {"a": 1}


def test_decode_fields_matches_go_struct_decoding() -> None:
    fields = {"name": "string", "enabled": "bool", "rate": "int64"}
    assert decode_fields({"NAME": "x", "name": "y", "Rate": 5, "enabled": None, "other": 1}, "S", fields) == {
        "name": "y", "rate": 5}
    with pytest.raises(BadJSON, match="cannot unmarshal number 1.50 into Go struct field S.rate of type int64"):
        decode_fields({"rate": decode_body(b"1.50")}, "S", fields)
    with pytest.raises(BadJSON, match="cannot unmarshal number 9223372036854775808 into"):
        decode_fields({"rate": 2**63}, "S", fields)
    with pytest.raises(BadJSON, match="cannot unmarshal array into Go value of type S"):
        decode_fields([], "S", fields)


def test_dumps_escapes_like_go() -> None:
    assert dumps({"a": "<&>", "é": 1}) == '{"a":"\\u003c\\u0026\\u003e","é":1}'


@given(size=st.integers(0, 5000), average=st.integers(1, 300), variation=st.integers(-50, 400),
       seed=st.integers(0, 1000))
def test_slice_bounds_cover_the_chunk_in_order(size: int, average: int, variation: int, seed: int) -> None:
    bounds = slice_bounds(size, average, variation, random.Random(seed))
    assert bounds[0] == 0 and bounds[-1] == size
    assert all(a < b for a, b in zip(bounds, bounds[1:])) or size == 0
    if variation >= 0:
        assert all(b - a <= max(average + variation, 1) for a, b in zip(bounds, bounds[1:]))
