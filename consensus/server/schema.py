"""Validate decoded JSON against the small subset of JSON Schema the HTTP API declares.

The same schema objects feed ``/openapi.json`` and the request checks, so the published
contract and the enforced one cannot drift apart. Supported keywords: ``type`` (object, string,
integer, number, boolean, array), ``properties``, ``required``, ``additionalProperties: false``,
``minimum``, ``maximum``, ``minLength``, ``maxLength``, ``pattern``, ``enum``, ``items``,
``maxItems``, ``minProperties``, ``maxProperties``, ``anyOf``. JSON booleans are never integers, and floats are never integers.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Callable

from consensus.errors import InvalidRequest

Schema = dict[str, Any]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def int64(description: str = "") -> Schema:
    """Return the schema of a 64-bit signed integer."""
    schema: Schema = {"type": "integer", "format": "int64", "minimum": INT64_MIN, "maximum": INT64_MAX}
    if description:
        schema["description"] = description
    return schema


def obj(properties: dict[str, Schema], required: tuple[str, ...] = (), description: str = "") -> Schema:
    """Return the schema of a JSON object with exactly these properties (no others allowed)."""
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema


# Say why a string breaks the pattern of a schema with this "format", in words (OpenAPI allows
# formats of one's own; tools that do not know one ignore it).
_EXPLAINERS: dict[str, Callable[[str], str]] = {}


def explain_format(name: str, why_not: Callable[[str], str]) -> None:
    """Register ``why_not(value)``: the reason a value of format ``name`` breaks its pattern."""
    _EXPLAINERS[name] = why_not


def _pattern_error(where: str, value: str, schema: Schema) -> InvalidRequest:
    why_not = _EXPLAINERS.get(schema.get("format", ""))
    if why_not is not None:
        return InvalidRequest(f"{where} {value[:100]!r} is refused: {why_not(value)}")
    return InvalidRequest(f"{where} must match {schema['pattern']}")


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return False


def validate(value: Any, schema: Schema, where: str = "body") -> None:
    """Raise ``InvalidRequest`` naming the first place where ``value`` breaks ``schema``."""
    if "anyOf" in schema:
        errors = []
        for branch in schema["anyOf"]:
            try:
                validate(value, branch, where)
                break
            except InvalidRequest as exc:
                errors.append(exc.message)
        else:
            raise InvalidRequest(" or ".join(errors))
    kind = schema.get("type")
    if kind is not None and not _type_ok(value, kind):
        raise InvalidRequest(f"{where} must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}")
    if "enum" in schema and value not in schema["enum"]:
        raise InvalidRequest(f"{where} must be one of {', '.join(map(str, schema['enum']))}")
    if kind in ("integer", "number"):
        if "minimum" in schema and value < schema["minimum"]:
            raise InvalidRequest(f"{where} must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise InvalidRequest(f"{where} must be at most {schema['maximum']}")
    elif kind == "string":
        if len(value) < schema.get("minLength", 0):
            raise InvalidRequest(f"{where} must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise InvalidRequest(f"{where} must have at most {schema['maxLength']} characters")
        if "pattern" in schema and not _compiled(schema["pattern"]).fullmatch(value):
            raise _pattern_error(where, value, schema)
    elif kind == "array":
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise InvalidRequest(f"{where} must have at most {schema['maxItems']} items")
        for i, item in enumerate(value):
            validate(item, schema.get("items", {}), f"{where}[{i}]")
    elif kind == "object":
        if not schema.get("minProperties", 0) <= len(value) <= schema.get("maxProperties", len(value)):
            raise InvalidRequest(f"{where} must have from {schema.get('minProperties', 0)} to "
                                 f"{schema.get('maxProperties', 'any number of')} fields")
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                raise InvalidRequest(f"{where} is missing the field {name!r}")
        for name, item in value.items():
            if name in properties:
                validate(item, properties[name], f"{where}.{name}")
            elif schema.get("additionalProperties", True) is False:
                raise InvalidRequest(f"{where} has an unknown field {name[:64]!r}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(data: bytes) -> Any:
    """Decode a JSON document strictly (UTF-8, no NaN or Infinity); raise ``InvalidRequest``."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {str(exc)[:200]}") from None
