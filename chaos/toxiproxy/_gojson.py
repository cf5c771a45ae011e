"""Decode and encode JSON the way Toxiproxy's Go server does.

Toxiproxy decodes request bodies with ``encoding/json``: one value is read and trailing bytes
are ignored, object keys match struct fields case-insensitively (an exact match wins, the last
duplicate wins), ``null`` leaves a field unchanged and a type mismatch is an error whose text
names the Go struct field. Responses are compact JSON with ``<``, ``>`` and ``&`` escaped and
float32 values printed in Go's shortest form. Error texts for syntax errors are close to Go's
but not byte-identical; type-mismatch texts follow Go's pattern.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

__all__ = ["BadJSON", "decode_body", "decode_fields", "dumps", "format_float32", "go_kind"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38


class BadJSON(ValueError):
    """Raised with the text Go's decoder would give for a body it cannot decode."""


class _Number(float):
    """A JSON number with a fraction or exponent, remembering how it was written."""

    text: str

    def __new__(cls, text: str) -> "_Number":
        number = super().__new__(cls, text)
        number.text = text
        return number


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


_DECODER = json.JSONDecoder(parse_float=_Number, parse_constant=_reject_constant)

_SYNTAX_CONTEXT = {
    "Expecting property name enclosed in double quotes": "looking for beginning of object key string",
    "Expecting value": "looking for beginning of value",
    "Expecting ':' delimiter": "after object key",
    "Expecting ',' delimiter": "after object key:value pair",
    "Invalid control character at": "in string literal",
}


def _quote_char(ch: str) -> str:
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    return "'" + json.dumps(ch)[1:-1] + "'"


def decode_body(body: bytes) -> Any:
    """Return the first JSON value in ``body``, ignoring what follows it, as Go's Decoder does."""
    text = body.decode("utf-8", errors="replace")
    start = len(text) - len(text.lstrip(" \t\r\n"))
    if start == len(text):
        raise BadJSON("EOF")
    try:
        value, _ = _DECODER.raw_decode(text, start)
    except ValueError as exc:
        pos = getattr(exc, "pos", None)
        if pos is None:  # NaN or Infinity, which Go rejects where the literal starts
            pos = min((i for i in (text.find("NaN", start), text.find("Infinity", start)) if i >= 0), default=None)
        if pos is None or pos >= len(text) or "Unterminated string" in str(exc):
            raise BadJSON("unexpected EOF") from None
        reason = next((v for k, v in _SYNTAX_CONTEXT.items() if str(exc).startswith(k)), "looking for beginning of value")
        if reason == "after object key:value pair" and _innermost_container(text, pos) == "[":
            reason = "after array element"
        raise BadJSON(f"invalid character {_quote_char(text[pos])} {reason}") from None
    return value


def _innermost_container(text: str, pos: int) -> str:
    """Return '[' or '{' for the innermost container open at ``pos`` (strings skipped)."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text[:pos]:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def go_kind(value: Any) -> str:
    """Name a decoded JSON value the way Go's UnmarshalTypeError does."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _convert(value: Any, kind: str, where: str) -> Any:
    """Return ``value`` as Go type ``kind`` or raise the error Go's decoder gives."""
    got = go_kind(value)
    if kind == "string" and got == "string":
        return value
    if kind == "bool" and got == "bool":
        return value
    if kind in ("int64", "int") and got == "number":
        if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
            return value
        literal = value.text if isinstance(value, _Number) else str(value)
        raise BadJSON(f"json: cannot unmarshal number {literal} into Go struct field {where} of type {kind}")
    if kind == "float32" and got == "number":
        if abs(float(value)) > FLOAT32_MAX:
            literal = value.text if isinstance(value, _Number) else str(value)
            raise BadJSON(f"json: cannot unmarshal number {literal} into Go struct field {where} of type float32")
        return float(value)
    if kind == "any":
        return value
    go_type = {"int": "int", "int64": "int64", "float32": "float32", "string": "string", "bool": "bool"}.get(kind, kind)
    raise BadJSON(f"json: cannot unmarshal {got} into Go struct field {where} of type {go_type}")


def decode_fields(obj: Any, struct_name: str, fields: dict[str, str], go_type: str | None = None) -> dict[str, Any]:
    """Decode a JSON object into the named struct fields (key -> kind), returning those that were set.

    Keys match case-insensitively with exact matches preferred; ``null`` sets nothing; unknown
    keys are ignored. ``go_type`` names the whole struct in the error for a non-object value.
    """
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise BadJSON(f"json: cannot unmarshal {go_kind(obj)} into Go value of type {go_type or struct_name}")
    lowered = {key.lower(): key for key in fields}
    result: dict[str, Any] = {}
    first_error: BadJSON | None = None
    for key, value in obj.items():
        field = key if key in fields else lowered.get(key.lower())
        if field is None or value is None:
            continue
        try:
            result[field] = _convert(value, fields[field], f"{struct_name}.{field}")
        except BadJSON as exc:
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
    return result


def dumps(value: Any) -> str:
    """Encode ``value`` as Go's json.Marshal does: compact, UTF-8, HTML characters escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def to_float32(value: float) -> float:
    """Round ``value`` to the nearest float32, as storing it in a Go float32 does."""
    return struct.unpack("<f", struct.pack("<f", value))[0]


def format_float32(value: float) -> str:
    """Format a float32 as Go's JSON encoder does: shortest round-trip digits, 'e' form outside [1e-6, 1e21)."""
    v = to_float32(value)
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    for precision in range(0, 10):
        text = f"{v:.{precision}e}"
        if to_float32(float(text)) == v:
            break
    mantissa, exp_text = text.split("e")
    exponent = int(exp_text)
    sign = "-" if v < 0 else ""
    digits = mantissa.lstrip("-").replace(".", "").rstrip("0") or "0"
    if abs(v) < 1e-6 or abs(v) >= 1e21:
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{head}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}".replace("e-0", "e-")
    if exponent >= len(digits) - 1:
        return sign + digits + "0" * (exponent - len(digits) + 1)
    if exponent >= 0:
        return f"{sign}{digits[:exponent + 1]}.{digits[exponent + 1:]}"
    return f"{sign}0.{'0' * (-exponent - 1)}{digits}"
