"""Declare HTTP routes once, as data, and run every request through one checked pipeline.

A ``Route`` says what a request must look like (path parameters, query, body: JSON Schema),
whether it changes state (guarded by the bearer token) and whether it must run on the leader.
The router and ``/openapi.json`` are both built from the same list, and the pipeline enforces
exactly what the document promises: anything else is a 4xx JSON error, never a 500.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from consensus.errors import InvalidRequest, PayloadTooLarge, Unauthorized
from consensus.server.members import check_membership_caller
from consensus.server.schema import Schema, parse_json, validate

if TYPE_CHECKING:
    from consensus.node import Node
    from consensus.shards import ShardMap
    from consensus.server.app import Server

Handler = Callable[["Call"], Awaitable[Any]]

IDEMPOTENCY_KEY_SCHEMA: Schema = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": r"[\x21-\x7e]+"}
SESSION_HEADER = "X-Raft-Session"
# CLIENT:SEQ:LOWEST: the client session's id, this request's number, the lowest number it still awaits.
SESSION_SCHEMA: Schema = {"type": "string", "maxLength": 64, "pattern": r"[1-9][0-9]{0,17}:[1-9][0-9]{0,17}:[1-9][0-9]{0,17}"}
TIMEOUT_HEADER = "X-Request-Timeout"
# Below a millisecond no answer can come in time (5e-324 used to be accepted and always timed out).
MIN_TIMEOUT_SECONDS = 0.001
FORWARDED_HEADER = "X-Raft-Forwarded-By"
# Names the Raft group that should answer (a process may host several; see server/groups.py).
GROUP_HEADER = "X-Raft-Group"


@dataclass(frozen=True)
class Route:
    """One HTTP operation: its contract (for validation and OpenAPI) and its handler."""

    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    tag: str = "node"
    path_params: Mapping[str, Schema] = field(default_factory=dict)
    query: Mapping[str, Schema] = field(default_factory=dict)
    body: Schema | None = None
    body_required: bool = True
    response: Schema = field(default_factory=lambda: {"type": "object"})
    response_type: str = "application/json"
    success_status: int = 200  # 201 for routes that create something (a session)
    mutating: bool = False  # needs the bearer token (when one is set); accepts Idempotency-Key
    membership: bool = False  # changes who is a member: never anonymous on a server beyond loopback
    bounded: bool = True  # counts toward the in-flight and connection caps (liveness and metrics do not)
    # Whether this request needs the leader (writes, linearizable reads); None: run here. A
    # follower runs it itself and its engine takes it to the leader over the peer link, unless the
    # route is leader_only (membership, leadership) or the server forwards over HTTP.
    on_leader: Callable[["Call"], bool] | None = None
    leader_only: bool = False
    # When the leader's HTTP address is unknown, a read may still run here (its engine asks the leader).
    local_fallback: bool = False
    errors: tuple[int, ...] = (400,)
    # OpenAPI links from the 200 answer, by name: {"operationId": ..., "parameters": {...}}. Links
    # from a write to the reads of the same resource are added by themselves.
    links: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The Raft group that answers this request, from the raw request and the shard map (the group
    # of a kv key, of a counter name); None: the first group the process hosts (server/groups.py).
    group_of: Callable[[web.Request, "ShardMap"], str | None] | None = None


@dataclass
class Call:
    """A validated request on its way to a handler."""

    request: web.Request
    server: "Server"
    route: Route
    params: dict[str, str]
    query: dict[str, Any]
    body: Any
    raw_body: bytes
    idempotency_key: str | None
    deadline: float  # time.monotonic() by which the answer is due
    read_index: int | None = None  # set by reads: the log index the answer reflects
    session: tuple[int, int, int] | None = None  # from X-Raft-Session on writes

    @property
    def node(self) -> "Node":
        return self.server.node

    @property
    def forwarded(self) -> bool:
        return FORWARDED_HEADER in self.request.headers

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


def _check_token(request: web.Request, token: str | None) -> None:
    if token is None:
        return
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        raise Unauthorized("this route needs the header 'Authorization: Bearer <token>'")


def _parse_query(request: web.Request, route: Route) -> dict[str, Any]:
    query: dict[str, Any] = {}
    for name in request.query:
        if name not in route.query:
            raise InvalidRequest(f"unknown query parameter {name[:64]!r}")
        values = request.query.getall(name)
        if len(values) > 1:
            raise InvalidRequest(f"query parameter {name!r} is given more than once")
        value: Any = values[0]
        schema = route.query[name]
        if schema.get("type") == "integer":
            try:
                value = int(value)
            except ValueError:
                raise InvalidRequest(f"query parameter {name!r} must be an integer") from None
        validate(value, schema, f"query parameter {name!r}")
        query[name] = value
    return query


def _parse_timeout(request: web.Request, default: float, maximum: float) -> float:
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"{TIMEOUT_HEADER} must be a number of seconds") from None
    if not MIN_TIMEOUT_SECONDS <= value <= maximum:  # also rejects NaN
        raise InvalidRequest(f"{TIMEOUT_HEADER} must be from {MIN_TIMEOUT_SECONDS:g} to {maximum:g} seconds")
    return value


async def _read_body(request: web.Request, route: Route, limit: int, timeout: float) -> tuple[Any, bytes]:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is {request.content_length} bytes, over the limit of {limit}")
    try:
        # A body that trickles in holds a slot in flight: bound it too.
        async with asyncio.timeout(timeout):
            raw = await request.read()
    except TimeoutError:
        raise InvalidRequest(f"the body did not arrive within {timeout:g}s") from None
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the body is over the limit of {limit} bytes") from None
    except (OSError, asyncio.IncompleteReadError, HttpProcessingError) as exc:
        raise InvalidRequest(f"could not read the body: {type(exc).__name__}") from None
    if route.body is None:
        if raw.strip():
            raise InvalidRequest(f"{route.method} {route.path} takes no body")
        return None, b""
    if not raw.strip():
        if route.body_required:
            raise InvalidRequest("this route needs a JSON body")
        return {}, b""
    body = parse_json(raw)
    validate(body, route.body, "body")
    return body, raw


async def build_call(request: web.Request, server: "Server", route: Route) -> Call:
    """Check everything about ``request`` that ``route`` declares; raise a 4xx error if wrong."""
    config = server.config
    if route.membership:
        check_membership_caller(public=config.public, token=config.token)
    if route.mutating:
        _check_token(request, config.token)
    params = {}
    for name, schema in route.path_params.items():
        value = request.match_info.get(name, "")
        validate(value, schema, f"path parameter {name!r}")
        params[name] = value
    query = _parse_query(request, route)
    timeout = _parse_timeout(request, config.default_timeout, config.max_timeout)
    key = None
    if route.mutating and "Idempotency-Key" in request.headers:
        key = request.headers["Idempotency-Key"]
        validate(key, IDEMPOTENCY_KEY_SCHEMA, "the Idempotency-Key header")
    session = None
    if route.mutating and SESSION_HEADER in request.headers:
        text = request.headers[SESSION_HEADER]
        validate(text, SESSION_SCHEMA, f"the {SESSION_HEADER} header")
        client_id, seq, lowest = (int(part) for part in text.split(":"))
        if lowest > seq:
            raise InvalidRequest(f"the {SESSION_HEADER} header's lowest unacknowledged number is above its own")
        session = (client_id, seq, lowest)
    deadline = time.monotonic() + timeout
    # The body may take as long as the headers may (a tiny deadline must not refuse a body already sent).
    body, raw = await _read_body(request, route, config.max_body_bytes, max(timeout, config.limits.header_timeout))
    return Call(request, server, route, params, query, body, raw, key, deadline, session=session)


# Route.on_leader predicates every app uses.

def always(call: Call) -> bool:
    """A write (or anything else that must reach the leader)."""
    return True


def linearizable_read(call: Call) -> bool:
    """A read that goes to the leader unless it asks for ``consistency=stale``."""
    return call.query.get("consistency", "linearizable") == "linearizable"
