"""The HTTP server of one node: routes from the core and from each app, one request pipeline.

Every answer carries ``X-Raft-Node``, ``X-Raft-Leader``, ``X-Raft-Term`` and
``X-Raft-Applied-Index`` (for a read, the log index the answer reflects), plus
``X-Raft-Leader-Url`` when the leader's HTTP address is known. Every error is
``{"error": {"code", "message", "definite", "leader", "leader_url"}}``; nothing a client sends
reaches a 500 (an unexpected exception is logged and answered as ``internal``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from consensus.engine import Role
from consensus.errors import (
    ConsensusError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    NotLeader,
    Overloaded,
    PayloadTooLarge,
    Unavailable,
)
from consensus.node import Consistency, Node
from consensus.server.apps import AppSpec
from consensus.server.forward import Forwarder
from consensus.server.listener import BoundedHandler, ConnectionCount, Limits
from consensus.server.metrics import Metrics
from consensus.server.routing import Call, Route, build_call
from consensus.shards import DEFAULT_GROUP

log = logging.getLogger("consensus.server")

# A leader election takes about a second; a request that finds no leader waits this long for one.
_LEADER_WAIT_SECONDS = 1.0
_ON_LEADER_ATTEMPTS = 3
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


@dataclass
class ServerConfig:
    """How this node's HTTP server behaves. ``peer_http`` maps Raft ids to HTTP base URLs (as
    clients reach them: what ``leader_url`` and ``X-Raft-Leader-Url`` advertise);
    ``forward_routes`` maps Raft ids to the URL this node itself sends forwarded requests to
    instead (a proxy on the node-to-node link), which clients must never be sent to."""

    http_url: str
    peer_http: dict[str, str] = field(default_factory=dict)
    forward_routes: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    public: bool = False  # HTTP listens beyond loopback: membership changes need the token
    max_body_bytes: int = 64 * 1024
    default_timeout: float = 5.0
    max_timeout: float = 60.0
    limits: Limits = field(default_factory=Limits)
    # "engine": a follower proposes and reads itself, its engine forwards to the leader over the
    # peer link (one hop, no second HTTP request). "http": it relays the HTTP request to the
    # leader's HTTP endpoint (the older path; leader-only routes always take it).
    forward: str = "engine"
    group: str = DEFAULT_GROUP  # the Raft group this server's node is a member of


def _json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body, separators=(",", ":")), content_type="application/json")


class Server:
    """Serves one node over HTTP; build the aiohttp application with ``build()``."""

    def __init__(self, node: Node, config: ServerConfig, apps: Sequence[AppSpec] = ()) -> None:
        from consensus.server.core_routes import core_routes

        self.node = node
        self.config = config
        self.apps = list(apps)
        self.connections = ConnectionCount()
        self.in_flight = 0  # requests of bounded routes being answered now
        self.metrics = Metrics(node, lambda: (self.connections.open, self.in_flight))
        self.forwarder = Forwarder(node.id)
        self.host: Any = None  # the GroupHost serving this server beside its sibling groups, if any
        self.routes: list[Route] = core_routes()
        for app in self.apps:
            self.routes.extend(app.routes())

    # -- addresses ---------------------------------------------------------------------------

    def http_of(self, node_id: str | None) -> str | None:
        """Return the HTTP base URL of the node with Raft id ``node_id``, if known."""
        if node_id is None:
            return None
        if node_id == self.node.id:
            return self.config.http_url
        return self.config.peer_http.get(node_id)

    def forward_url_of(self, node_id: str) -> str | None:
        """Return the URL this node forwards requests for ``node_id`` to: its route, else its HTTP URL."""
        return self.config.forward_routes.get(node_id) or self.http_of(node_id)

    # -- helpers for handlers ----------------------------------------------------------------

    async def propose(self, call: Call, machine: str, command: dict[str, Any]) -> Any:
        """Propose ``command`` on this node (the leader) with the call's key and deadline."""
        if call.remaining() <= 0:  # not submitted: say so definitely rather than "unknown"
            raise Unavailable("the request's deadline passed before it could be submitted", leader=self.node.id)
        key, session = call.idempotency_key, call.session
        if session is not None and self.host is not None and self.config.group != self.host.shards.group_names()[0]:
            # The session lives in the first group's log (its table knows nothing of this one): here
            # the request's identity in it, client id and number, is the idempotency key instead,
            # so a retry applies once within this group's idempotency window.
            key, session = f"session:{session[0]}:{session[1]}", None
        try:
            result = await self.node.propose(machine, command, idempotency_key=key,
                                             timeout=call.remaining(), session=session)
        except ConsensusError as exc:
            self.metrics.proposals.labels(machine, exc.code).inc()
            raise
        self.metrics.proposals.labels(machine, "ok").inc()
        return result

    async def read(self, call: Call, machine: str, query: dict[str, Any], consistency: Consistency) -> Any:
        """Run a query here at ``consistency``; remember the index it reflects for the headers."""
        result = await self.node.read_result(machine, query, consistency=consistency, timeout=call.remaining())
        call.read_index = result.index
        return result.value

    # -- the pipeline ------------------------------------------------------------------------

    def _admit(self, request: web.Request, route: Route) -> None:
        """Refuse (definitely: nothing is submitted) a request over the connection or in-flight cap."""
        if not route.bounded:
            return
        limits = self.config.limits
        if getattr(request.protocol, "over_cap", False):
            raise Overloaded(f"{self.node.id} is at its cap of {limits.max_connections} connections; retry later")
        if self.in_flight >= limits.max_in_flight:
            raise Overloaded(f"{self.node.id} is at its cap of {limits.max_in_flight} requests in flight; retry later")

    def _handler(self, route: Route) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            self._admit(request, route)
            if not route.bounded:
                return await self._answer(request, route)
            self.in_flight += 1
            try:
                return await self._answer(request, route)
            finally:
                self.in_flight -= 1

        return handle

    async def _answer(self, request: web.Request, route: Route) -> web.StreamResponse:
        call = await build_call(request, self, route)
        if route.on_leader is not None and route.on_leader(call):
            if route.leader_only or self.config.forward == "http":
                result = await self._run_on_leader(call)
            else:
                result = await self._run_here(call)
        else:
            result = await route.handler(call)
        response = result if isinstance(result, web.StreamResponse) else _json_response(result, route.success_status)
        if call.read_index is not None:
            response["read_index"] = call.read_index
        return response

    async def _run_here(self, call: Call) -> Any:
        """Run a leader-bound request on this node: its engine takes it to the leader.

        Waits briefly for a leader to be known (during an election), as the HTTP relay does;
        after that the node's own outcome rules apply (a write that may have applied is unknown).
        """
        wait_until = time.monotonic() + min(_LEADER_WAIT_SECONDS, call.remaining() / 2)
        while self.node.status().leader is None and time.monotonic() < wait_until:
            await asyncio.sleep(0.05)
        if self.node.status().leader is None:
            raise Unavailable(f"{self.node.id} knows no leader at term {self.node.status().term}")
        return await call.route.handler(call)

    async def _run_on_leader(self, call: Call) -> Any:
        route = call.route
        leader_wait_until = time.monotonic() + min(_LEADER_WAIT_SECONDS, call.remaining() / 2)
        attempts = 0
        while True:
            status = self.node.status()
            if status.role is Role.LEADER:
                attempts += 1
                try:
                    return await route.handler(call)
                except NotLeader:
                    if attempts >= _ON_LEADER_ATTEMPTS:
                        raise
                    continue  # lost leadership before it was submitted: route it again
            if status.leader is None or status.leader == self.node.id:
                if time.monotonic() < leader_wait_until:
                    await asyncio.sleep(0.05)
                    continue
                raise Unavailable(f"{self.node.id} knows no leader at term {status.term}")
            url = self.forward_url_of(status.leader)
            if call.forwarded or url is None:
                if route.local_fallback:
                    return await route.handler(call)
                raise NotLeader(leader=status.leader)
            try:
                response = await self.forwarder.forward(call, status.leader, url, write=route.mutating)
            except ConsensusError as exc:
                self.metrics.forwarded.labels(exc.code).inc()
                raise
            self.metrics.forwarded.labels("ok").inc()
            return response

    # -- errors, headers, metrics ------------------------------------------------------------

    def _error_response(self, exc: ConsensusError) -> web.Response:
        body = exc.to_dict()
        if body.get("leader") is None and exc.code in ("not_leader", "unavailable", "indeterminate"):
            body["leader"] = self.node.status().leader
        body["leader_url"] = self.http_of(body.get("leader"))
        self.metrics.errors.labels(exc.code).inc()
        return _json_response({"error": body}, exc.http_status)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        protocol = request.protocol
        if isinstance(protocol, BoundedHandler):
            protocol.head_received()
        route_name = "unmatched"
        resource = request.match_info.route.resource
        if resource is not None:
            route_name = resource.canonical
        try:
            response = await handler(request)
        except ConsensusError as exc:
            response = self._error_response(exc)
        except web.HTTPException as exc:
            response = self._error_response(_from_http_exception(exc, request))
            if "Allow" in exc.headers:  # a 405 names the methods the route has (RFC 9110 15.5.6)
                response.headers["Allow"] = exc.headers["Allow"]
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug of ours: log it, keep the node up, say nothing revealing
            log.exception("%s failed to answer %s %s", self.node.id, request.method, request.path)
            error = ConsensusError("internal error; see the node's log")
            response = self._error_response(error)
        self._add_headers(response)
        if getattr(protocol, "over_cap", False):
            response.force_close()  # make room: a connection over the cap serves one answer
        # Label values must come from a small set, or odd requests would grow the registry forever.
        method = request.method if request.method in _KNOWN_METHODS else "other"
        self.metrics.requests.labels(method, route_name, str(response.status)).inc()
        self.metrics.latency.labels(method, route_name).observe(time.perf_counter() - started)
        return response

    def _add_headers(self, response: web.StreamResponse) -> None:
        if response.get("forwarded"):
            return  # the leader's headers describe the answer
        status = self.node.status()
        index = response.get("read_index", status.last_applied)
        headers = response.headers
        headers["X-Raft-Node"] = self.node.id
        headers["X-Raft-Leader"] = status.leader or ""
        headers["X-Raft-Term"] = str(status.term)
        headers["X-Raft-Applied-Index"] = str(index)
        leader_url = self.http_of(status.leader)
        if leader_url:
            headers["X-Raft-Leader-Url"] = leader_url

    def build(self) -> web.Application:
        """Return the aiohttp application (closing it closes the forwarding session)."""
        app = web.Application(middlewares=[self._middleware], client_max_size=self.config.max_body_bytes)
        for route in self.routes:
            app.router.add_route(route.method, route.path, self._handler(route))

        async def close_forwarder(_: web.Application) -> None:
            await self.forwarder.close()

        app.on_cleanup.append(close_forwarder)
        return app


class QuietParseErrors(logging.Filter):
    """Turn aiohttp's traceback for a request it cannot even parse into one line.

    Such a request (bad chunking, a 9 KB request line, no HTTP at all) gets aiohttp's plain 400
    before any handler runs; it is the client's mistake, not ours, so it deserves no traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            exc = record.exc_info[1] if record.exc_info else None
            if isinstance(exc, HttpProcessingError):
                original = record.getMessage()
                lines = str(exc.message or type(exc).__name__).strip().splitlines()
                record.msg = "refused a malformed HTTP request (%s): %s"
                record.args = (original.rsplit(" ", 1)[-1], lines[0] if lines else type(exc).__name__)
                record.levelno, record.levelname = logging.INFO, "INFO"
                record.exc_info = None
                record.exc_text = None
        except Exception:  # a logging filter must never break the request it logs about
            pass
        return True


def _from_http_exception(exc: web.HTTPException, request: web.Request) -> ConsensusError:
    if exc.status == 404:
        return NotFound(f"no route {request.method} {request.path[:200]}")
    if exc.status == 405:
        return MethodNotAllowed(f"{request.method} is not allowed on {request.path[:200]}")
    if exc.status == 413:
        return PayloadTooLarge(exc.text or "the body is too large")
    return InvalidRequest(exc.reason or f"HTTP {exc.status}")


def create_app(node: Node, config: ServerConfig, apps: Sequence[AppSpec] = ()) -> web.Application:
    """Return the aiohttp application that serves ``node`` with ``apps``."""
    return Server(node, config, apps).build()
