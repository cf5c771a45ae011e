"""The counter state machine: named 64-bit signed integers with increment, set and compare-and-set.

Commands (plain data, as they travel in the log):

- ``{"op": "incr", "key": name, "by": n}``: add ``n``; refused (``Rejected``) on 64-bit overflow;
- ``{"op": "set", "key": name, "value": v}``: set;
- ``{"op": "set", "key": name, "value": v, "expect": e}``: set only if the value is ``e``; else
  ``Rejected("value mismatch", detail={"name": name, "value": current})``.

Query: ``{"op": "get", "key": name}``. Every answer is ``{"name": name, "value": n}``; a counter
never written reads 0. Pure and deterministic: no clocks, no I/O.
"""

from __future__ import annotations

import re
from typing import Any

import msgpack

from consensus.errors import InvalidRequest, Rejected
from consensus.machine import ApplyContext

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
NAME_PATTERN = r"[A-Za-z0-9._~-]{1,128}"
_NAME = re.compile(NAME_PATTERN)

_FIELDS = {"incr": {"op", "key", "by"}, "set": {"op", "key", "value", "expect"}, "get": {"op", "key"}}
_REQUIRED = {"incr": {"op", "key", "by"}, "set": {"op", "key", "value"}, "get": {"op", "key"}}


def is_int64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def check_name(name: Any) -> str:
    """Return ``name`` if it is a valid counter name, else raise ``InvalidRequest``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(f"a counter name is 1 to 128 characters of A-Z a-z 0-9 . _ ~ -, not {str(name)[:140]!r}")
    return name


def _check(message: Any, ops: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise InvalidRequest("a counter command must be a dict")
    op = message.get("op")
    if op not in ops:
        raise InvalidRequest(f"unknown counter op {str(op)[:40]!r}; expected one of {', '.join(ops)}")
    keys = set(message)
    if not _REQUIRED[op] <= keys or not keys <= _FIELDS[op]:
        raise InvalidRequest(f"counter op {op!r} takes fields {sorted(_FIELDS[op])}, got {sorted(map(str, keys))[:8]}")
    check_name(message["key"])
    for field in ("by", "value", "expect"):
        if field in message and not is_int64(message[field]):
            raise InvalidRequest(f"{field} must be a 64-bit signed integer")
    return message


class CounterMachine:
    """Named counters; see the module docstring for the commands."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def validate(self, command: dict[str, Any]) -> None:
        _check(command, ("incr", "set"))

    def validate_query(self, query: dict[str, Any]) -> None:
        _check(query, ("get",))

    def apply(self, command: dict[str, Any], ctx: ApplyContext) -> dict[str, Any]:
        _check(command, ("incr", "set"))
        name = command["key"]
        current = self.values.get(name, 0)
        if command["op"] == "incr":
            new = current + command["by"]
            if not is_int64(new):
                raise Rejected("counter overflow", detail={"name": name, "value": current})
        else:
            if "expect" in command and command["expect"] != current:
                raise Rejected("value mismatch", detail={"name": name, "value": current})
            new = command["value"]
        if new == 0:
            self.values.pop(name, None)  # 0 is what an unwritten counter reads anyway
        else:
            self.values[name] = new
        return {"name": name, "value": new}

    def query(self, query: dict[str, Any]) -> dict[str, Any]:
        _check(query, ("get",))
        return {"name": query["key"], "value": self.values.get(query["key"], 0)}

    def snapshot(self) -> bytes:
        return msgpack.packb(sorted(self.values.items()), use_bin_type=True)  # type: ignore[no-any-return]

    def restore(self, data: bytes) -> None:
        self.values = {name: value for name, value in msgpack.unpackb(data, raw=False)}
