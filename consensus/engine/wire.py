"""The peer messages raftwork accepts, and their shapes: anything else is dropped with a log line.

pysyncobj indexes its messages without checking them (``message['term']``), so a malformed one
from a peer raised inside the engine tick. ``check(message)`` returns None for a message of a
known type whose fields have the types pysyncobj and the adapter rely on, else a short reason.
"""

from __future__ import annotations

from typing import Any, Callable

Check = Callable[[Any], bool]


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _opt_int(value: Any) -> bool:
    return value is None or _int(value)


def _bool(value: Any) -> bool:
    return isinstance(value, bool)


def _bytes(value: Any) -> bool:
    return isinstance(value, (bytes, bytearray))


def _entries(value: Any) -> bool:
    if not isinstance(value, (list, tuple)):
        return False
    for entry in value:
        if not (isinstance(entry, (list, tuple)) and len(entry) == 3 and _bytes(entry[0]) and _int(entry[1])
                and _int(entry[2])):
            return False
    return True


def _serialized(value: Any) -> bool:
    return value is None or (isinstance(value, (list, tuple)) and len(value) == 3 and _bytes(value[0])
                             and _bool(value[1]) and _bool(value[2]))


def _transmission(value: Any) -> bool:
    return value in ("start", "process", "finish")


# type -> {field: (required, check)}
_SHAPES: dict[str, dict[str, tuple[bool, Check]]] = {
    "request_vote": {"term": (True, _int), "last_log_index": (True, _int), "last_log_term": (True, _int),
                     "rw_transfer": (False, _bool)},
    "response_vote": {"term": (True, _int)},
    "append_entries": {"term": (True, _int), "commit_index": (True, _int), "entries": (False, _entries),
                       "prevLogIdx": (False, _opt_int), "prevLogTerm": (False, _opt_int),
                       "transmission": (False, _transmission), "data": (False, _bytes),
                       "serialized": (False, _serialized), "rw_seq": (False, _int), "rw_probe": (False, _int)},
    "next_node_idx": {"next_node_idx": (True, _int), "reset": (True, _bool), "success": (True, _bool),
                      "term": (False, _int), "rw_seq": (False, _int), "rw_probe": (False, _int)},
    "apply_command": {"command": (True, _bytes), "request_id": (False, _int)},
    "apply_command_response": {"request_id": (True, _int), "error": (False, _int), "log_idx": (False, _int),
                               "log_term": (False, _int)},
    "timeout_now": {"term": (True, _int)},
    "rw_prevote": {"term": (True, _int), "last_log_index": (True, _int), "last_log_term": (True, _int)},
    "rw_prevote_resp": {"term": (True, _int), "granted": (True, _bool), "voter_term": (True, _int)},
    "rw_ping": {},
    "rw_read_index": {"request_id": (True, _int)},
    "rw_read_index_resp": {"request_id": (True, _int), "index": (False, _int), "error": (False, _int)},
}


def check(message: Any) -> str | None:
    """Return None if ``message`` is a well-formed peer message, else why it is not."""
    if not isinstance(message, dict):
        return f"not a dict but {type(message).__name__}"
    kind = message.get("type")
    shape = _SHAPES.get(kind) if isinstance(kind, str) else None
    if shape is None:
        return f"unknown message type {str(kind)[:40]!r}"
    for name, (required, ok) in shape.items():
        if name not in message:
            if required:
                return f"{kind} without {name}"
            continue
        if not ok(message[name]):
            return f"{kind} with a malformed {name}"
    if kind == "append_entries":
        if "transmission" in message and "data" not in message:
            return "append_entries transmission without data"
        if "prevLogIdx" in message and "prevLogTerm" not in message:
            return "append_entries without prevLogTerm"
    if kind == "rw_read_index_resp" and "index" not in message and "error" not in message:
        return "rw_read_index_resp without an index or an error"
    if kind == "apply_command_response" and "error" not in message and not ("log_idx" in message and "log_term" in message):
        return "apply_command_response without an error or a log position"
    return None
