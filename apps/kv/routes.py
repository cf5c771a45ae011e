"""HTTP routes of the config store (DESIGN section 4).

``GET|PUT|DELETE /v1/kv/{key}`` (the key is the rest of the path, percent-decoded, so it may
contain ``/``), ``GET /v1/kv?prefix=&limit=&after=``, ``POST /v1/txn``, ``GET /v1/watch`` (a
long-poll answered as soon as an event applies on this node) and ``GET|PUT /v1/kv-settings``
(the replicated quotas and watch window).
"""

from __future__ import annotations

import time
from typing import Any

from apps.kv import rules
from apps.kv.machine import MACHINE
from apps.kv.coordinator import GroupCaller, read_resolving_intent, run_txn, with_intents_resolved
from consensus.errors import InvalidRequest, KeyNotFound
from consensus.node import Consistency
from consensus.server.routing import Call, Route, always, linearizable_read
from consensus.server.schema import Schema, int64, obj

# The key takes the rest of the path; [\s\S] rather than "." so that a decoded newline reaches
# the key check (a 400 that says why) instead of missing the route (a 404).
KEY_PATH = r"/v1/kv/{key:[\s\S]+}"
KEY_SCHEMA: Schema = {"type": "string", "minLength": 1, "maxLength": rules.MAX_KEY_BYTES, "pattern": rules.KEY_PATTERN,
                      "description": f"1 to {rules.MAX_KEY_BYTES} bytes of UTF-8 without control characters; may contain '/'"}
PREFIX_SCHEMA: Schema = {"type": "string", "maxLength": rules.MAX_KEY_BYTES, "pattern": rules.PREFIX_PATTERN}
VALUE_SCHEMA: Schema = {"type": "string", "maxLength": rules.MAX_VALUE_BYTES,
                        "description": f"any string of at most {rules.MAX_VALUE_BYTES} bytes of UTF-8"}
REVISION_SCHEMA: Schema = {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**63 - 1}
CONSISTENCY_SCHEMA: Schema = {"type": "string", "enum": [c.value for c in Consistency],
                              "description": "linearizable (default: the leader confirms it still leads, ReadIndex) or stale (this node's state)"}
KV_SCHEMA = obj({"key": {"type": "string"}, "value": {"type": "string"}, "create_revision": int64(),
                 "mod_revision": int64(), "version": int64()},
                required=("key", "value", "create_revision", "mod_revision", "version"))
NULLABLE_KV = dict(KV_SCHEMA, nullable=True)
PUT_RESULT = obj({"revision": int64(), "prev": NULLABLE_KV}, required=("revision", "prev"))
DELETE_RESULT = obj({"deleted": {"type": "integer", "enum": [0, 1]}, "revision": int64()}, required=("deleted", "revision"))
PAGE_SCHEMA = obj({"kvs": {"type": "array", "items": KV_SCHEMA}, "more": {"type": "boolean"}, "revision": int64()},
                  required=("kvs", "more", "revision"))
_COMPARE_FIELDS = ("key", "target", "op", "value")
_COMPARE_OP: Schema = {"type": "string", "enum": list(rules.COMPARE_OPS)}
COMPARE_SCHEMA: Schema = {
    "description": "compare a key's value (a string) or its version, create_revision or mod_revision (an integer); "
                   "a missing key has version and revisions 0, and a compare on its value fails",
    "anyOf": [
        obj({"key": KEY_SCHEMA, "target": {"type": "string", "enum": ["value"]}, "op": _COMPARE_OP, "value": VALUE_SCHEMA},
            required=_COMPARE_FIELDS),
        obj({"key": KEY_SCHEMA, "target": {"type": "string", "enum": [t for t in rules.TARGETS if t != "value"]},
             "op": _COMPARE_OP, "value": REVISION_SCHEMA}, required=_COMPARE_FIELDS),
    ],
}
OP_SCHEMA: Schema = {
    "description": 'one of {"put": {key, value}}, {"delete": {key}}, {"get": {key}}',
    "anyOf": [
        obj({"put": obj({"key": KEY_SCHEMA, "value": VALUE_SCHEMA}, required=("key", "value"))}, required=("put",)),
        obj({"delete": obj({"key": KEY_SCHEMA}, required=("key",))}, required=("delete",)),
        obj({"get": obj({"key": KEY_SCHEMA}, required=("key",))}, required=("get",)),
    ],
}
OPS_SCHEMA: Schema = {"type": "array", "items": OP_SCHEMA, "maxItems": rules.MAX_TXN_OPS}
TXN_BODY = obj({"compare": {"type": "array", "items": COMPARE_SCHEMA, "maxItems": rules.MAX_TXN_COMPARES},
                "success": OPS_SCHEMA, "failure": OPS_SCHEMA})
TXN_RESULT = obj({"succeeded": {"type": "boolean"},
                  "responses": {"type": "array", "items": {"type": "object", "description": 'per op: {"put": {revision, prev}}, '
                                                           '{"delete": {deleted, revision}} or {"get": kv or null}'}},
                  "revision": int64()}, required=("succeeded", "responses", "revision"))
EVENT_SCHEMA = obj({"type": {"type": "string", "enum": ["put", "delete"]}, "key": {"type": "string"},
                    "value": {"type": "string", "nullable": True}, "revision": int64()},
                   required=("type", "key", "value", "revision"))
WATCH_RESULT = obj({"events": {"type": "array", "items": EVENT_SCHEMA}, "next_revision": int64()},
                   required=("events", "next_revision"))
MAX_WATCH_MS = 60_000
SETTINGS_PROPERTIES = {name: {"type": "integer", "minimum": low, "maximum": high}
                       for name, (low, high) in rules.SETTING_BOUNDS.items()}
SETTINGS_SCHEMA = obj(SETTINGS_PROPERTIES, required=tuple(rules.SETTING_BOUNDS))
STATUS_SCHEMA = obj({"settings": SETTINGS_SCHEMA, "keys": int64(), "bytes": int64(), "revision": int64(),
                     "compact_revision": int64(), "events": int64()})


def _consistency(call: Call) -> Consistency:
    return Consistency(call.query.get("consistency", Consistency.LINEARIZABLE.value))


def _key(call: Call) -> str:
    return rules.check_key(call.params["key"])  # the schema cannot count bytes


async def _get(call: Call) -> Any:
    consistency = _consistency(call)
    if call.server.host is not None and consistency is Consistency.LINEARIZABLE:
        # Several groups: a write intent older than the timeout is resolved through its record first.
        kv = await read_resolving_intent(call, _key(call))
    else:
        kv = await call.server.read(call, MACHINE, {"op": "get", "key": _key(call)}, consistency)
    if kv is None:
        raise KeyNotFound(f"no key {call.params['key'][:200]!r}")
    return kv


async def _list(call: Call) -> Any:
    query: dict[str, Any] = {"op": "list", "prefix": call.query.get("prefix", "")}
    for name in ("limit", "after"):
        if name in call.query:
            query[name] = call.query[name]
    return await call.server.read(call, MACHINE, query, _consistency(call))


async def _write(call: Call, command: dict[str, Any]) -> Any:
    """Propose a plain write; if it meets a cross-group transaction's lock, wait, resolving old ones."""
    if call.server.host is None:
        return await call.server.propose(call, MACHINE, command)
    caller = GroupCaller(call.server.host, call.deadline)
    return await with_intents_resolved(caller, call.server.config.group,
                                       lambda: call.server.propose(call, MACHINE, command))


async def _put(call: Call) -> Any:
    command = {"op": "put", "key": _key(call), "value": call.body["value"]}
    if "prev_revision" in call.body:
        command["prev_revision"] = call.body["prev_revision"]
    return await _write(call, command)


async def _delete(call: Call) -> Any:
    command: dict[str, Any] = {"op": "delete", "key": _key(call)}
    if "prev_revision" in call.query:
        command["prev_revision"] = call.query["prev_revision"]
    return await _write(call, command)


async def _txn(call: Call) -> Any:
    return await run_txn(call)


_INTERNAL_OPS = ("txn_begin", "txn_decide", "txn_prepare", "txn_finish", "txn_forget", "txn", "gets", "txn_validate",
                 "txn_record", "txn_active", "get_intent")


async def _internal(call: Call) -> Any:
    """One step of a cross-group transaction sent by a coordinator that hosts no member of this group."""
    body = call.body
    if ("command" in body) == ("query" in body):
        raise InvalidRequest("give exactly one of command and query")
    message = body.get("command", body.get("query"))
    if not isinstance(message, dict) or message.get("op") not in _INTERNAL_OPS:
        raise InvalidRequest(f"a step's op is one of {', '.join(_INTERNAL_OPS)}")
    if "command" in body:
        return {"result": await call.node.propose(MACHINE, message, idempotency_key=body.get("idempotency_key"),
                                                  timeout=call.remaining())}
    return {"result": await call.node.read(MACHINE, message, consistency=Consistency.LINEARIZABLE,
                                           timeout=call.remaining())}


def _key_group(request: Any, shards: Any) -> str | None:
    key = request.match_info.get("key")
    return shards.group_of(key) if key else None


def _prefix_group(request: Any, shards: Any) -> str | None:
    """A prefix whose keys all live in one group is answered there (else: X-Raft-Group names one)."""
    groups = shards.groups_of_prefix(request.query.get("prefix", ""))
    return groups[0] if len(groups) == 1 else None


async def _watch(call: Call) -> Any:
    """Answer with the events from ``from_revision`` as soon as one exists here (or empty at the end).

    Runs on this node's applied state and sleeps until the next entry applies here
    (``Node.wait_for_apply``): no polling. Each empty look moves ``from_revision`` to the
    answer's ``next_revision``, so a wake-up only scans events that are new.
    """
    wait = call.query.get("timeout_ms", MAX_WATCH_MS) / 1000
    deadline = min(time.monotonic() + wait, call.deadline - 0.05)  # answer (empty) before the caller gives up
    query: dict[str, Any] = {"op": "watch", "prefix": call.query.get("prefix", "")}
    if "from_revision" in call.query:
        query["from_revision"] = call.query["from_revision"]
    while True:
        result = await call.node.read_result(MACHINE, query, consistency=Consistency.STALE)
        call.read_index = result.index
        remaining = deadline - time.monotonic()
        if result.value["events"] or remaining <= 0:
            return result.value
        query["from_revision"] = result.value["next_revision"]
        await call.node.wait_for_apply(result.index, remaining)


async def _get_settings(call: Call) -> Any:
    return await call.server.read(call, MACHINE, {"op": "status"}, _consistency(call))


async def _put_settings(call: Call) -> Any:
    return await call.server.propose(call, MACHINE, {"op": "configure", "settings": call.body})


def routes() -> list[Route]:
    """Return the config store's routes."""
    key = {"key": KEY_SCHEMA}
    read = {"consistency": CONSISTENCY_SCHEMA}
    return [
        Route("GET", KEY_PATH, _get, "getKey", "read a key (404 key_not_found if it does not exist)", tag="kv",
              path_params=key, query=read, response=KV_SCHEMA, on_leader=linearizable_read, local_fallback=True,
              errors=(400, 404), group_of=_key_group),
        Route("PUT", KEY_PATH, _put, "putKey",
              "write a key; with prev_revision, only if its mod_revision is that (0: only if it does not exist)",
              tag="kv", path_params=key,
              body=obj({"value": VALUE_SCHEMA, "prev_revision": REVISION_SCHEMA}, required=("value",)),
              response=PUT_RESULT, mutating=True, on_leader=always, errors=(400, 409), group_of=_key_group),
        Route("DELETE", KEY_PATH, _delete, "deleteKey",
              "delete a key; with prev_revision, only if its mod_revision is that", tag="kv", path_params=key,
              query={"prev_revision": REVISION_SCHEMA}, response=DELETE_RESULT, mutating=True, on_leader=always,
              errors=(400, 409), group_of=_key_group),
        Route("GET", "/v1/kv", _list, "listKeys", "a page of keys by prefix, in key order, after `after`", tag="kv",
              query={"prefix": PREFIX_SCHEMA, "limit": {"type": "integer", "minimum": 1, "maximum": rules.MAX_PAGE},
                     "after": PREFIX_SCHEMA, **read},
              response=PAGE_SCHEMA, on_leader=linearizable_read, local_fallback=True, errors=(400,), group_of=_prefix_group),
        Route("POST", "/v1/txn", _txn, "txn",
              "compare, then run the success or the failure ops, atomically, at one revision", tag="kv",
              body=TXN_BODY, response=TXN_RESULT, mutating=True, on_leader=always, errors=(400, 409, 504)),
        Route("POST", "/v1/kv-internal", _internal, "kvInternalStep",
              "one step of a cross-group transaction (two-phase commit), for coordinators on other nodes; "
              "X-Raft-Group names the group", tag="kv",
              body=obj({"command": {"type": "object"}, "query": {"type": "object"},
                        "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 256}}),
              response=obj({"result": {"nullable": True}}), mutating=True, on_leader=always, errors=(400, 404, 409)),
        Route("GET", "/v1/watch", _watch, "watch",
              "long-poll: the put and delete events under `prefix` from `from_revision` (default: after now), "
              "answered as soon as one applies on this node; 410 compacted once it left the window", tag="kv",
              query={"prefix": PREFIX_SCHEMA, "from_revision": dict(REVISION_SCHEMA, minimum=1),
                     "timeout_ms": {"type": "integer", "minimum": 0, "maximum": MAX_WATCH_MS,
                                    "description": f"how long to wait for an event (default and most {MAX_WATCH_MS})"}},
              response=WATCH_RESULT, errors=(400, 410), group_of=_prefix_group),
        Route("GET", "/v1/kv-settings", _get_settings, "getKVSettings",
              "the config store's replicated settings, usage and revisions", tag="kv", query=read,
              response=STATUS_SCHEMA, on_leader=linearizable_read, local_fallback=True, errors=(400,)),
        Route("PUT", "/v1/kv-settings", _put_settings, "putKVSettings",
              "change settings: max_keys, max_bytes (keys plus values), watch_window (events kept for watch), "
              "txn_retention_s (how long a finished cross-group transaction is remembered)",
              tag="kv", body=dict(obj(SETTINGS_PROPERTIES), minProperties=1), response=SETTINGS_SCHEMA,
              mutating=True, on_leader=always, errors=(400, 409)),
    ]
