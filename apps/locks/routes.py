"""HTTP routes of the lock service (DESIGN section 4).

``POST /v1/sessions {"ttl_ms"}`` -> 201 ``{"id", "ttl_ms"}``; ``POST /v1/sessions/{id}/keepalive``;
``DELETE /v1/sessions/{id}``; ``GET /v1/sessions/{id}``; ``POST /v1/locks/{name}/acquire
{"session", "mode", "wait_ms"}`` -> ``{"name", "mode", "session", "token"}``; ``POST
/v1/locks/{name}/release {"session", "token"}``; ``GET /v1/locks/{name}`` -> holders and waiters.

A waiting acquire is woken by the node's apply notifications, never by polling: the acquire
command enqueues the waiter and says at which log index; the answering node (leader or follower:
each applies the same log) waits until it has applied that far, then looks the waiter up in its
own state after each apply, until the machine says it was granted or removed. The machine removes
a waiter whose ``wait_ms`` ran out by a replicated time advance, so the answer comes within
``wait_ms`` plus about one time entry; if even ``WAIT_GRACE_SECONDS`` more pass (no leader moves
time on), the outcome is unknown: 504, and acquiring again with the same session and mode tells
(it returns the grant, or waits on the same waiter).
"""

from __future__ import annotations

import time
from typing import Any

from apps.counter.routes import CONSISTENCY_SCHEMA, NAME_SCHEMA
from apps.locks.machine import MAX_TTL_MS, MAX_WAIT_MS, MIN_TTL_MS, MODES
from consensus.errors import Indeterminate, LockHeld, SessionNotFound
from consensus.node import Consistency
from consensus.server.routing import Call, Route, always, linearizable_read
from consensus.server.schema import int64, obj

MACHINE = "locks"
WAIT_GRACE_SECONDS = 3.0
SESSION_ID_SCHEMA = dict(NAME_SCHEMA, description="a session id, as POST /v1/sessions returned it")
MODE_SCHEMA = {"type": "string", "enum": list(MODES), "description": "exclusive (default): one holder; shared: many"}
TOKEN_SCHEMA = dict(int64("the fencing token of the grant"), minimum=0)
SESSION_SCHEMA = obj({"id": {"type": "string"}, "ttl_ms": {"type": "integer"}}, required=("id", "ttl_ms"))
GRANT_SCHEMA = obj({"name": {"type": "string"}, "mode": MODE_SCHEMA, "session": {"type": "string"}, "token": int64()},
                   required=("name", "mode", "session", "token"))
HOLDER_SCHEMA = obj({"session": {"type": "string"}, "mode": MODE_SCHEMA, "token": int64()},
                    required=("session", "mode", "token"))
LOCK_SCHEMA = obj({"name": {"type": "string"}, "holders": {"type": "array", "items": HOLDER_SCHEMA},
                   "waiters": {"type": "array", "items": obj({"session": {"type": "string"}, "mode": MODE_SCHEMA},
                                                             required=("session", "mode"))}},
                  required=("name", "holders", "waiters"))
SESSION_STATE_SCHEMA = obj({"id": {"type": "string"}, "ttl_ms": {"type": "integer"}, "expires_in_ms": {"type": "integer"},
                            "held": {"type": "array", "items": obj({"name": {"type": "string"}, "mode": MODE_SCHEMA,
                                                                     "token": int64()}, required=("name", "mode", "token"))}},
                           required=("id", "ttl_ms", "expires_in_ms", "held"))
CLOSED_SCHEMA = obj({"id": {"type": "string"}, "released": {"type": "array", "items": {"type": "string"}}},
                    required=("id", "released"))
RELEASED_SCHEMA = obj({"name": {"type": "string"}, "session": {"type": "string"}, "token": int64(),
                       "released": {"type": "boolean"}}, required=("name", "session", "token", "released"))


async def _open(call: Call) -> Any:
    return await call.server.propose(call, MACHINE, {"op": "open", "ttl_ms": call.body["ttl_ms"]})


async def _keepalive(call: Call) -> Any:
    return await call.server.propose(call, MACHINE, {"op": "keepalive", "session": call.params["id"]})


async def _close(call: Call) -> Any:
    return await call.server.propose(call, MACHINE, {"op": "close", "session": call.params["id"]})


async def _get_session(call: Call) -> Any:
    return await call.server.read(call, MACHINE, {"op": "session", "session": call.params["id"]}, _consistency(call))


async def _describe(call: Call) -> Any:
    return await call.server.read(call, MACHINE, {"op": "lock", "name": call.params["name"]}, _consistency(call))


async def _release(call: Call) -> Any:
    command = {"op": "release", "name": call.params["name"], "session": call.body["session"], "token": call.body["token"]}
    return await call.server.propose(call, MACHINE, command)


async def _acquire(call: Call) -> Any:
    wait_ms = call.body.get("wait_ms", 0)
    command = {"op": "acquire", "name": call.params["name"], "session": call.body["session"],
               "mode": call.body.get("mode", "exclusive"), "wait_ms": wait_ms}
    started = time.monotonic()
    result = await call.server.propose(call, MACHINE, command)
    if "granted" in result:
        return result["granted"]
    deadline = max(call.deadline, started + wait_ms / 1000 + WAIT_GRACE_SECONDS)
    return await wait_for_waiter(call, result["waiting"], result["index"], deadline)


async def wait_for_waiter(call: Call, waiter: int, index: int, deadline: float) -> Any:
    """Wait on this node's applies until its own state says how ``waiter`` (enqueued at ``index``) ended."""
    node = call.node
    seen = index - 1
    while True:
        await node.wait_for_apply(seen, max(0.0, deadline - time.monotonic()))
        result = await node.read_result(MACHINE, {"op": "waiter", "waiter": waiter}, consistency=Consistency.STALE)
        call.read_index = result.index
        status = result.value["status"]
        if result.index >= index:  # the waiter is visible here: what the state says is the outcome
            if status == "granted":
                return result.value["grant"]
            if status == "timed_out":
                raise LockHeld(f"lock {call.params['name']!r} stayed held for the whole wait", leader=node.status().leader)
            if status == "session_gone":
                raise SessionNotFound(f"session {call.body['session']!r} ended (closed or expired) while waiting")
            if status == "unknown":  # its record was dropped: cannot tell
                raise Indeterminate("the waiter's outcome is no longer known; acquire again with the same session")
        if time.monotonic() >= deadline:
            raise Indeterminate(f"the waiter was not granted or removed within {WAIT_GRACE_SECONDS:g}s after its wait; "
                                "acquire again with the same session and mode to learn the outcome")
        seen = result.index


def _consistency(call: Call) -> Consistency:
    return Consistency(call.query.get("consistency", Consistency.LINEARIZABLE.value))


def routes() -> list[Route]:
    """Return the lock service's routes."""
    session_param = {"id": SESSION_ID_SCHEMA}
    name_param = {"name": NAME_SCHEMA}
    by_id = {"id": "$request.path.id"}
    session_links = {op: {"operationId": op, "parameters": {"id": "$response.body#/id"}}
                     for op in ("getSession", "keepaliveSession", "closeSession")}
    return [
        Route("POST", "/v1/sessions", _open, "openSession", "open a lock-service session (a lease of ttl_ms)",
              tag="locks", body=obj({"ttl_ms": {"type": "integer", "minimum": MIN_TTL_MS, "maximum": MAX_TTL_MS,
                                                "description": "the lease in ms (replicated limits may narrow the range)"}},
                                    required=("ttl_ms",)),
              response=SESSION_SCHEMA, success_status=201, mutating=True, on_leader=always, errors=(400, 409),
              links=session_links),
        Route("POST", "/v1/sessions/{id}/keepalive", _keepalive, "keepaliveSession",
              "renew a session's lease: it runs ttl_ms from now", tag="locks", path_params=session_param,
              response=SESSION_SCHEMA, mutating=True, on_leader=always, errors=(400, 404, 409),
              links={"getSession": {"operationId": "getSession", "parameters": by_id}}),
        Route("DELETE", "/v1/sessions/{id}", _close, "closeSession", "close a session, releasing its locks",
              tag="locks", path_params=session_param, response=CLOSED_SCHEMA, mutating=True, on_leader=always,
              errors=(400, 404, 409)),
        Route("GET", "/v1/sessions/{id}", _get_session, "getSession", "read a session: its lease and the locks it holds",
              tag="locks", path_params=session_param, query={"consistency": CONSISTENCY_SCHEMA},
              response=SESSION_STATE_SCHEMA, on_leader=linearizable_read, local_fallback=True, errors=(400, 404)),
        Route("POST", "/v1/locks/{name}/acquire", _acquire, "acquireLock",
              "acquire a lock for a session; wait_ms > 0 queues first come first served until granted or run out",
              tag="locks", path_params=name_param,
              body=obj({"session": SESSION_ID_SCHEMA, "mode": MODE_SCHEMA,
                        "wait_ms": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_MS,
                                    "description": "how long to wait in the queue (0, the default: try once)"}},
                       required=("session",)),
              response=GRANT_SCHEMA, mutating=True, on_leader=always, errors=(400, 404, 409),
              links={"releaseLock": {"operationId": "releaseLock", "parameters": {"name": "$request.path.name"},
                                     "requestBody": {"session": "$response.body#/session",
                                                     "token": "$response.body#/token"}}}),
        Route("POST", "/v1/locks/{name}/release", _release, "releaseLock",
              "release a lock (the session and the grant's fencing token)", tag="locks", path_params=name_param,
              body=obj({"session": SESSION_ID_SCHEMA, "token": TOKEN_SCHEMA}, required=("session", "token")),
              response=RELEASED_SCHEMA, mutating=True, on_leader=always, errors=(400, 404, 409)),
        Route("GET", "/v1/locks/{name}", _describe, "describeLock", "read a lock's holders and waiters", tag="locks",
              path_params=name_param, query={"consistency": CONSISTENCY_SCHEMA}, response=LOCK_SCHEMA,
              on_leader=linearizable_read, local_fallback=True, errors=(400,)),
    ]
