"""Listen for HTTP with bounds: a header read timeout, a connection cap, JSON for parse errors.

aiohttp gives a connection as long as its keep-alive timeout (an hour by default) to send its
headers, so 200 connections that never finish theirs hold 200 sockets forever (slowloris). Here:

- a connection must finish each request's headers within ``header_timeout`` seconds, counted
  from when it opened or from the first byte of the next request; else it is closed;
- an idle keep-alive connection is closed after ``idle_timeout`` (longer than the clients'
  pooling time, 15 s in aiohttp, so a client never reuses a connection the server is closing);
- at most ``max_connections`` are served: a request on a connection over the cap gets a definite
  503 ``overloaded`` (nothing submitted) and the connection is closed after it; twice the cap,
  a new connection is closed at once;
- a request aiohttp cannot parse (bad request line, oversized URL or header) gets the JSON error
  body every other error has, not aiohttp's plain text.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from consensus.errors import ConsensusError, InvalidRequest, PayloadTooLarge

log = logging.getLogger("consensus.server")


@dataclass(frozen=True)
class Limits:
    """Per-node bounds of the HTTP server (flags of ``consensus serve``)."""

    header_timeout: float = 5.0
    idle_timeout: float = 60.0
    max_connections: int = 1000
    max_in_flight: int = 1000

    def __post_init__(self) -> None:
        if not (self.header_timeout > 0 and self.idle_timeout > 0 and self.max_connections > 0 and self.max_in_flight > 0):
            raise ValueError("every HTTP limit must be positive")


class ConnectionCount:
    """How many connections a server holds; shared by its handlers."""

    def __init__(self) -> None:
        self.open = 0


class BoundedHandler(RequestHandler):
    """aiohttp's request handler with a header read timeout and a place in the connection cap."""

    def __init__(self, manager: Any, *, limits: Limits, count: ConnectionCount, **kwargs: Any) -> None:
        # access_log=None turns access logging off (aiohttp checks it for truth; its annotation says Logger).
        super().__init__(manager, keepalive_timeout=limits.idle_timeout, access_log=None, **kwargs)  # type: ignore[arg-type]
        self._limits = limits
        self._count = count
        self._counted = False
        self._awaiting_head = True
        self._head_timer: asyncio.TimerHandle | None = None
        self.over_cap = False  # read by the server's middleware: answer "overloaded"

    # -- the connection cap ------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._count.open += 1
        self._counted = True
        self.over_cap = self._count.open > self._limits.max_connections
        if self._count.open > 2 * self._limits.max_connections:
            self.force_close()  # far over the cap: not even a 503 (it would cost a task and a parse)
            return
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._count.open -= 1
            self._counted = False
        self._cancel_head_timer()
        super().connection_lost(exc)

    # -- the header read timeout -------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head and self._head_timer is None and data:
            self._arm_head_timer()  # the first byte of the next request starts its clock
        super().data_received(data)

    def head_received(self) -> None:
        """Called by the middleware once a request's headers are in: stop the header clock."""
        self._awaiting_head = False
        self._cancel_head_timer()

    async def finish_response(self, request: Any, resp: Any, start_time: Any) -> Any:
        result = await super().finish_response(request, resp, start_time)
        self._awaiting_head = True  # the next bytes start a new request
        return result

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = asyncio.get_running_loop().call_later(self._limits.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._awaiting_head and self.transport is not None:
            log.info("closed a connection from %s that sent no complete request headers in %.1fs",
                     _peer(self.transport), self._limits.header_timeout)
            self.force_close()

    # -- requests aiohttp could not parse ----------------------------------------------------

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """Answer a request aiohttp refused (or a failure past the middleware) with a JSON error."""
        if request.writer.output_size > 0:
            raise ConnectionError("the answer has begun; no error can follow it")
        error: ConsensusError
        if status >= 500:
            log.error("failed to answer a request from %s", _peer(self.transport), exc_info=exc)
            error = ConsensusError("internal error; see the node's log")
        elif status == 413:
            error = PayloadTooLarge(_first_line(exc, message))
        else:
            log.info("refused a malformed HTTP request from %s: %s", _peer(self.transport), _first_line(exc, message))
            error = InvalidRequest(f"malformed HTTP request: {_first_line(exc, message)}")
        body = error.to_dict()
        body["leader_url"] = None
        response = web.Response(status=status if 400 <= status < 600 else error.http_status,
                                text=json.dumps({"error": body}, separators=(",", ":")), content_type="application/json")
        response.force_close()
        return response


def _peer(transport: Any) -> str:
    peer = transport.get_extra_info("peername") if transport is not None else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"


def _first_line(exc: BaseException | None, message: str | None) -> str:
    text = getattr(exc, "message", None) or message or (type(exc).__name__ if exc else "bad request")
    lines = str(text).strip().splitlines()
    return (lines[0] if lines else "bad request")[:200]


class BoundedSite(web.TCPSite):
    """A TCP site whose connections are served by ``BoundedHandler``."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limits: Limits, count: ConnectionCount) -> None:
        super().__init__(runner, host, port)
        self._limits = limits
        self._count = count

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; TCPSite.start would use aiohttp's handler
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None

        def handler() -> BoundedHandler:
            return BoundedHandler(server, limits=self._limits, count=self._count, loop=loop)

        self._server = await loop.create_server(handler, self._host, self._port, backlog=self._backlog)


async def start_site(server: Any, host: str, port: int, limits: Limits | None = None) -> web.AppRunner:
    """Serve ``server`` (a ``Server``) on ``host:port``; return the runner (``await runner.cleanup()`` stops it)."""
    limits = limits or Limits()
    runner = web.AppRunner(server.build(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await BoundedSite(runner, host, port, limits, server.connections).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
