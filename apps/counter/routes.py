"""HTTP routes of the counter app.

``GET /v1/counters/{name}?consistency=linearizable|stale``, ``POST /v1/counters/{name}/incr``
with ``{"by": n}`` and ``PUT /v1/counters/{name}`` with ``{"value": v, "expect": e?}``; each
answers ``{"name": name, "value": n}``. A failed compare-and-set is a 409 whose
``error.detail`` holds the current ``{"name", "value"}``.
"""

from __future__ import annotations

from typing import Any

from apps.counter.machine import NAME_PATTERN
from consensus.node import Consistency
from consensus.server.routing import Call, Route, always, linearizable_read
from consensus.server.schema import int64, obj

MACHINE = "counter"
NAME_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": NAME_PATTERN,
               "description": "1 to 128 characters of A-Z a-z 0-9 . _ ~ -"}
CONSISTENCY_SCHEMA = {"type": "string", "enum": [c.value for c in Consistency],
                      "description": "linearizable (default: the leader confirms it still leads, ReadIndex) or stale (this node's state)"}
COUNTER_SCHEMA = obj({"name": {"type": "string"}, "value": int64()}, required=("name", "value"))


async def _get(call: Call) -> Any:
    consistency = Consistency(call.query.get("consistency", Consistency.LINEARIZABLE.value))
    return await call.server.read(call, MACHINE, {"op": "get", "key": call.params["name"]}, consistency)


async def _incr(call: Call) -> Any:
    return await call.server.propose(call, MACHINE, {"op": "incr", "key": call.params["name"], "by": call.body["by"]})


async def _put(call: Call) -> Any:
    command = {"op": "set", "key": call.params["name"], "value": call.body["value"]}
    if "expect" in call.body:
        command["expect"] = call.body["expect"]
    return await call.server.propose(call, MACHINE, command)


def _counter_group(request: Any, shards: Any) -> str | None:
    """Counters are sharded by name over the Raft groups (see consensus.shards)."""
    name = request.match_info.get("name")
    return shards.group_of(name) if name else None


def routes() -> list[Route]:
    """Return the counter app's routes."""
    path_params = {"name": NAME_SCHEMA}
    return [
        Route("GET", "/v1/counters/{name}", _get, "getCounter", "read a counter (0 if never written)", tag="counter",
              path_params=path_params, query={"consistency": CONSISTENCY_SCHEMA}, response=COUNTER_SCHEMA,
              on_leader=linearizable_read, local_fallback=True, errors=(400,), group_of=_counter_group),
        Route("POST", "/v1/counters/{name}/incr", _incr, "incrCounter", "add `by` (may be negative) to a counter",
              tag="counter", path_params=path_params, body=obj({"by": int64("the amount to add")}, required=("by",)),
              response=COUNTER_SCHEMA, mutating=True, on_leader=always, errors=(400, 409), group_of=_counter_group),
        Route("PUT", "/v1/counters/{name}", _put, "setCounter",
              "set a counter; with `expect`, only if its value is `expect` (compare-and-set)", tag="counter",
              path_params=path_params,
              body=obj({"value": int64("the new value"), "expect": int64("the value it must have now")}, required=("value",)),
              response=COUNTER_SCHEMA, mutating=True, on_leader=always, errors=(400, 409), group_of=_counter_group),
    ]
