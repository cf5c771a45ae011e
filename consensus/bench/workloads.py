"""The operations the load client sends: one async function per workload, for each system.

An operation is ``await op(http, base_url, state, seq)``; it returns on success and raises
``OpError(kind, definite)`` otherwise. ``setup(http, base_url, worker)`` makes a worker's state
(a lock session, an etcd lease) before the clock starts. Every workload of every system runs
through the same client code (``consensus.bench.load``), so raftwork and etcd are measured alike.

Failures are three-valued, as everywhere in raftwork: a request that never reached the server,
or a definite error from it, is a failure; a timeout, a dropped connection, a 504 or a 500 is
unknown (the write may have happened), and is counted apart.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from consensus.bench.http1 import ConnectFailed, Disconnected, Http1Client


class OpError(Exception):
    """One operation did not succeed: ``kind`` names why, ``definite`` says it surely did not apply."""

    def __init__(self, kind: str, definite: bool) -> None:
        super().__init__(kind)
        self.kind = kind
        self.definite = definite


@dataclass
class OpContext:
    """What a workload needs besides the HTTP session: sizes and names fixed for the whole run."""

    payload: int = 16  # bytes of value per write
    locks: int = 1  # how many lock names the workers share
    key_prefix: str = "bench"


Setup = Callable[[Http1Client, str, int, OpContext], Awaitable[dict[str, Any]]]
Op = Callable[[Http1Client, str, dict[str, Any], int], Awaitable[None]]


@dataclass(frozen=True)
class Workload:
    name: str
    system: str  # raftwork, etcd or null
    op: Op
    setup: Setup
    writes: bool
    description: str


def classify(status: int, body: Any) -> OpError:
    """Turn an HTTP error answer of raftwork or etcd into an ``OpError``."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):  # raftwork: {"error": {"code", "definite"}}
        return OpError(f"{status} {error.get('code', '?')}", bool(error.get("definite", False)))
    if isinstance(body, dict) and "code" in body:  # etcd's gateway: {"error": "...", "code": grpc code}
        return OpError(f"{status} grpc-{body['code']}", status in (400, 404, 409, 412))
    return OpError(f"{status}", status in (400, 404, 409, 503))


async def call(http: Http1Client, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    """Send one request; return the JSON answer of a 2xx or raise ``OpError``."""
    data = None if body is None else json.dumps(body).encode()
    try:
        status, text = await http.request(method, url, data, {"Content-Type": "application/json", **(headers or {})})
    except ConnectFailed:
        raise OpError("connect", True) from None  # nothing was sent
    except TimeoutError:
        raise OpError("timeout", False) from None
    except (Disconnected, OSError):
        raise OpError("disconnected", False) from None
    try:
        answer = json.loads(text) if text else None
    except ValueError:
        answer = None
    if status >= 300:
        raise classify(status, answer)
    return answer


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


async def _no_setup(http: Http1Client, url: str, worker: int, ctx: OpContext) -> dict[str, Any]:
    return {"key": f"{ctx.key_prefix}-{worker}", "value": "x" * ctx.payload, "ctx": ctx, "worker": worker}


# -- the do-nothing server: the client's own ceiling ------------------------------------------


async def _null(http: Http1Client, url: str, state: dict[str, Any], seq: int) -> None:
    await call(http, "POST", f"{url}/null", {"value": state["value"]})


# -- raftwork ---------------------------------------------------------------------------------


async def _rw_incr(http: Http1Client, url: str, state: dict[str, Any], seq: int) -> None:
    await call(http, "POST", f"{url}/v1/counters/{state['key']}/incr", {"by": 1})


async def _rw_incr_new_key(http: Http1Client, url: str, state: dict[str, Any], seq: int) -> None:
    await call(http, "POST", f"{url}/v1/counters/{state['key']}-{seq}/incr", {"by": 1})


async def _rw_incr_idempotent(http: Http1Client, url: str, state: dict[str, Any], seq: int) -> None:
    key = f"{state['key']}-{seq}"  # a fresh key per request: each leaves one exactly-once record
    await call(http, "POST", f"{url}/v1/counters/{state['key']}/incr", {"by": 1}, headers={"Idempotency-Key": key})


async def _rw_session_open(http: Http1Client, url: str, state: dict[str, Any], seq: int) -> None:
    await call(http, "POST", f"{url}/v1/sessions", {"ttl_ms": 600_000})


def _rw_get(consistency: str) -> Op:
    async def op(http: Http1Client, url: str, state: dict[str, Any], seq: int) -> None:
        await call(http, "GET", f"{url}/v1/counters/{state['key']}?consistency={consistency}")

    return op


async def _rw_kv_put_setup(http: Http1Client, url: str, worker: int, ctx: OpContext) -> dict[str, Any]:
    """Write the worker's key before the clock starts, so every get reads a value.

    The linearizable get after it returns once this node has applied the put, so a stale get
    here finds the key from the first request on.
    """
    state = await _no_setup(http, url, worker, ctx)
    await _rw_kv_put(http, url, state, 0)
    await _rw_kv_get("linearizable")(http, url, state, 0)
    return state


async def _rw_kv_put(http: Http1Client, url: str, state: dict[str, Any], seq: int) -> None:
    await call(http, "PUT", f"{url}/v1/kv/{state['key']}", {"value": state["value"]})


def _rw_kv_get(consistency: str) -> Op:
    async def op(http: Http1Client, url: str, state: dict[str, Any], seq: int) -> None:
        await call(http, "GET", f"{url}/v1/kv/{state['key']}?consistency={consistency}")

    return op


async def _rw_lock_setup(http: Http1Client, url: str, worker: int, ctx: OpContext) -> dict[str, Any]:
    state = await _no_setup(http, url, worker, ctx)
    session = await call(http, "POST", f"{url}/v1/sessions", {"ttl_ms": 60_000})
    state.update(session=session["id"], lock=f"{ctx.key_prefix}-lock-{worker % ctx.locks}")
    return state


async def _rw_lock(http: Http1Client, url: str, state: dict[str, Any], seq: int) -> None:
    base = f"{url}/v1/locks/{state['lock']}"
    grant = await call(http, "POST", f"{base}/acquire", {"session": state["session"], "mode": "exclusive", "wait_ms": 10_000})
    await call(http, "POST", f"{base}/release", {"session": state["session"], "token": grant["token"]})


# -- etcd through its JSON gateway ------------------------------------------------------------


async def _etcd_put(http: Http1Client, url: str, state: dict[str, Any], seq: int) -> None:
    await call(http, "POST", f"{url}/v3/kv/put", {"key": _b64(state["key"]), "value": _b64(state["value"])})


async def _etcd_put_new_key(http: Http1Client, url: str, state: dict[str, Any], seq: int) -> None:
    await call(http, "POST", f"{url}/v3/kv/put", {"key": _b64(f"{state['key']}-{seq}"), "value": _b64(state["value"])})


async def _etcd_lease_grant(http: Http1Client, url: str, state: dict[str, Any], seq: int) -> None:
    await call(http, "POST", f"{url}/v3/lease/grant", {"TTL": 600})


async def _etcd_put_setup(http: Http1Client, url: str, worker: int, ctx: OpContext) -> dict[str, Any]:
    """Write the worker's key before the clock starts, so every range reads a value (as on raftwork)."""
    state = await _no_setup(http, url, worker, ctx)
    await _etcd_put(http, url, state, 0)
    await _etcd_range(False)(http, url, state, 0)  # this member has applied the put: serializable ranges see it
    return state


def _etcd_range(serializable: bool) -> Op:
    async def op(http: Http1Client, url: str, state: dict[str, Any], seq: int) -> None:
        await call(http, "POST", f"{url}/v3/kv/range", {"key": _b64(state["key"]), "serializable": serializable})

    return op


async def _etcd_lock_setup(http: Http1Client, url: str, worker: int, ctx: OpContext) -> dict[str, Any]:
    state = await _no_setup(http, url, worker, ctx)
    lease = await call(http, "POST", f"{url}/v3/lease/grant", {"TTL": 60})
    state.update(lease=lease["ID"], lock=_b64(f"{ctx.key_prefix}-lock-{worker % ctx.locks}"))
    return state


async def _etcd_lock(http: Http1Client, url: str, state: dict[str, Any], seq: int) -> None:
    grant = await call(http, "POST", f"{url}/v3/lock/lock", {"name": state["lock"], "lease": state["lease"]})
    await call(http, "POST", f"{url}/v3/lock/unlock", {"key": grant["key"]})


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload("null", "null", _null, _no_setup, False, "a do-nothing HTTP server (the client's ceiling)"),
        Workload("rw-incr", "raftwork", _rw_incr, _no_setup, True, "POST /v1/counters/K/incr"),
        Workload("rw-incr-new", "raftwork", _rw_incr_new_key, _no_setup, True, "POST /v1/counters/K-SEQ/incr (a new counter each time)"),
        Workload("rw-incr-idem", "raftwork", _rw_incr_idempotent, _no_setup, True, "POST /v1/counters/K/incr with a fresh Idempotency-Key"),
        Workload("rw-session", "raftwork", _rw_session_open, _no_setup, True, "POST /v1/sessions (a lock-service session)"),
        Workload("rw-get", "raftwork", _rw_get("linearizable"), _no_setup, False, "GET /v1/counters/K (linearizable)"),
        Workload("rw-stale", "raftwork", _rw_get("stale"), _no_setup, False, "GET /v1/counters/K?consistency=stale"),
        Workload("rw-kv-put", "raftwork", _rw_kv_put, _no_setup, True, "PUT /v1/kv/K"),
        Workload("rw-kv-get", "raftwork", _rw_kv_get("linearizable"), _rw_kv_put_setup, False, "GET /v1/kv/K (linearizable)"),
        Workload("rw-kv-stale", "raftwork", _rw_kv_get("stale"), _rw_kv_put_setup, False, "GET /v1/kv/K?consistency=stale"),
        Workload("rw-lock", "raftwork", _rw_lock, _rw_lock_setup, True, "acquire + release of a lock, one session per worker"),
        Workload("etcd-put", "etcd", _etcd_put, _no_setup, True, "POST /v3/kv/put"),
        Workload("etcd-put-new", "etcd", _etcd_put_new_key, _no_setup, True, "POST /v3/kv/put of a new key each time"),
        Workload("etcd-lease", "etcd", _etcd_lease_grant, _no_setup, True, "POST /v3/lease/grant (etcd's session)"),
        Workload("etcd-range", "etcd", _etcd_range(False), _etcd_put_setup, False, "POST /v3/kv/range (linearizable)"),
        Workload("etcd-range-serializable", "etcd", _etcd_range(True), _etcd_put_setup, False, "POST /v3/kv/range (serializable)"),
        Workload("etcd-lock", "etcd", _etcd_lock, _etcd_lock_setup, True, "lock + unlock with a lease per worker"),
    ]
}
