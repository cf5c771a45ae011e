"""The config store's input rules, shared by the machine, the routes and the client.

Pure functions that raise ``InvalidRequest`` (400, nothing submitted) naming what is wrong:

- a key is 1 to ``MAX_KEY_BYTES`` bytes of UTF-8 with no control character (Unicode Cc: C0,
  DEL, C1) and may contain ``/`` (``app/db/host``), as in etcd;
- a value is a string of at most ``MAX_VALUE_BYTES`` bytes of UTF-8 (any characters);
- a prefix or an ``after`` continuation key is a string of at most ``MAX_KEY_BYTES`` characters
  with no control character (it need not be a key: it is only compared with keys);
- a transaction has at most ``MAX_TXN_COMPARES`` compares and ``MAX_TXN_OPS`` ops per branch,
  and writes (puts or deletes) a key at most once per branch (etcd refuses that too).

Replicated settings (``settings``): ``max_keys``, ``max_bytes`` (keys plus values, UTF-8),
``watch_window`` (how many recent events a watch can start from) and ``txn_retention_s`` (how
long a finished cross-group transaction is remembered).
"""

from __future__ import annotations

import re
from typing import Any

from consensus.errors import InvalidRequest

MAX_KEY_BYTES = 512
MAX_VALUE_BYTES = 32 * 1024  # the HTTP body limit is 64 KiB; a put carries one value
MAX_TXN_COMPARES = 128
MAX_TXN_OPS = 128
MAX_PAGE = 1000  # keys per list page (also the default)
MAX_PAGE_BYTES = 1 << 20  # a page stops growing past this many bytes of keys and values
MAX_WATCH_EVENTS = 1000  # events per watch answer (whole revisions: a transaction's events stay together)

# A control character: C0, DEL or C1 (Unicode category Cc). The same class is the schemas' pattern.
CONTROL_CLASS = r"\x00-\x1f\x7f-\x9f"
KEY_PATTERN = rf"[^{CONTROL_CLASS}]+"
PREFIX_PATTERN = rf"[^{CONTROL_CLASS}]*"
_CONTROL = re.compile(f"[{CONTROL_CLASS}]")

TARGETS = ("value", "version", "create_revision", "mod_revision")
COMPARE_OPS = ("==", "!=", "<", ">")
OP_KINDS = ("put", "delete", "get")

# txn_retention_s: how long (leader time) a finished cross-group transaction is remembered; the
# default is the idempotency window, so a retry under the same key finds it (apps.kv.twophase).
DEFAULT_SETTINGS: dict[str, int] = {"max_keys": 1_000_000, "max_bytes": 256 << 20, "watch_window": 10_000,
                                    "txn_retention_s": 600}
SETTING_BOUNDS: dict[str, tuple[int, int]] = {
    "max_keys": (0, 100_000_000),
    "max_bytes": (0, 1 << 40),
    "watch_window": (1, 1_000_000),
    "txn_retention_s": (1, 7 * 86400),
}


def utf8_size(text: str, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRequest(f"{what} is not valid UTF-8 (it has a lone surrogate)") from None


def check_key(key: Any, what: str = "key") -> str:
    """Return ``key`` if it is a valid key, else raise ``InvalidRequest``."""
    if not isinstance(key, str):
        raise InvalidRequest(f"{what} must be a string")
    size = utf8_size(key, what)
    if not 1 <= size <= MAX_KEY_BYTES:
        raise InvalidRequest(f"{what} must be 1 to {MAX_KEY_BYTES} bytes of UTF-8, not {size}")
    if _CONTROL.search(key):
        raise InvalidRequest(f"{what} {key[:100]!r} has a control character")
    return key


def check_value(value: Any, what: str = "value") -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} must be a string")
    size = utf8_size(value, what)
    if size > MAX_VALUE_BYTES:
        raise InvalidRequest(f"{what} is {size} bytes of UTF-8, over the limit of {MAX_VALUE_BYTES}")
    return value


def check_prefix(prefix: Any, what: str = "prefix") -> str:
    if not isinstance(prefix, str):
        raise InvalidRequest(f"{what} must be a string")
    if len(prefix) > MAX_KEY_BYTES:
        raise InvalidRequest(f"{what} must have at most {MAX_KEY_BYTES} characters")
    utf8_size(prefix, what)
    if _CONTROL.search(prefix):
        raise InvalidRequest(f"{what} {prefix[:100]!r} has a control character")
    return prefix


def is_count(value: Any, low: int = 0, high: int = 2**63 - 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_revision(value: Any, what: str) -> int:
    if not is_count(value):
        raise InvalidRequest(f"{what} must be an integer from 0 to 2^63-1")
    return int(value)


def check_fields(message: Any, what: str, required: set[str], allowed: set[str]) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise InvalidRequest(f"{what} must be an object")
    keys = set(message)
    if not required <= keys or not keys <= allowed:
        raise InvalidRequest(f"{what} takes the fields {sorted(allowed)}, got {sorted(map(str, keys))[:8]}")
    return message


def check_compare(compare: Any, where: str) -> None:
    check_fields(compare, where, {"key", "target", "op", "value"}, {"key", "target", "op", "value"})
    check_key(compare["key"], f"{where}.key")
    if compare["target"] not in TARGETS:
        raise InvalidRequest(f"{where}.target must be one of {', '.join(TARGETS)}")
    if compare["op"] not in COMPARE_OPS:
        raise InvalidRequest(f"{where}.op must be one of {' '.join(COMPARE_OPS)}")
    if compare["target"] == "value":
        check_value(compare["value"], f"{where}.value")
    else:
        check_revision(compare["value"], f"{where}.value")


def check_op(op: Any, where: str) -> tuple[str, dict[str, Any]]:
    """Check one transaction op ``{"put": {...}}``, ``{"delete": {...}}`` or ``{"get": {...}}``."""
    if not isinstance(op, dict) or len(op) != 1 or next(iter(op)) not in OP_KINDS:
        raise InvalidRequest(f"{where} must be one of {{\"put\": {{key, value}}}}, {{\"delete\": {{key}}}}, {{\"get\": {{key}}}}")
    kind, args = next(iter(op.items()))
    fields = {"key", "value"} if kind == "put" else {"key"}
    check_fields(args, f"{where}.{kind}", fields, fields)
    check_key(args["key"], f"{where}.{kind}.key")
    if kind == "put":
        check_value(args["value"], f"{where}.{kind}.value")
    return kind, args


def check_ops(ops: Any, where: str) -> None:
    if not isinstance(ops, list):
        raise InvalidRequest(f"{where} must be a list of ops")
    if len(ops) > MAX_TXN_OPS:
        raise InvalidRequest(f"{where} has {len(ops)} ops, over the limit of {MAX_TXN_OPS}")
    written: set[str] = set()
    for i, op in enumerate(ops):
        kind, args = check_op(op, f"{where}[{i}]")
        if kind != "get":
            if args["key"] in written:
                raise InvalidRequest(f"{where} writes the key {args['key'][:100]!r} more than once")
            written.add(args["key"])


def check_txn(command: dict[str, Any]) -> None:
    compares = command.get("compare", [])
    if not isinstance(compares, list):
        raise InvalidRequest("compare must be a list")
    if len(compares) > MAX_TXN_COMPARES:
        raise InvalidRequest(f"compare has {len(compares)} entries, over the limit of {MAX_TXN_COMPARES}")
    for i, compare in enumerate(compares):
        check_compare(compare, f"compare[{i}]")
    check_ops(command.get("success", []), "success")
    check_ops(command.get("failure", []), "failure")


def check_settings(changes: Any) -> dict[str, int]:
    if not isinstance(changes, dict) or not changes:
        raise InvalidRequest(f"settings must be an object with some of {sorted(DEFAULT_SETTINGS)}")
    for name, value in changes.items():
        if name not in SETTING_BOUNDS:
            raise InvalidRequest(f"unknown setting {str(name)[:40]!r}; the settings are {', '.join(sorted(DEFAULT_SETTINGS))}")
        low, high = SETTING_BOUNDS[name]
        if not is_count(value, low, high):
            raise InvalidRequest(f"{name} must be an integer from {low} to {high}")
    return changes
