"""A lean HTTP/1.1 keep-alive client for the load generator.

The bench must measure the servers, not its own client. aiohttp's client costs about 800 us of
CPU per request on this project's 2-core machine, which capped the load at about 1,200
requests/s, below what raftwork and etcd can answer; this one does the least a correct
HTTP/1.1 client must: one request at a time per connection, connections kept alive and reused,
``Content-Length`` and chunked bodies read, ``Connection: close`` honoured. It speaks to
raftwork (aiohttp's server) and etcd (Go's net/http behind the gRPC gateway) alike, so both are
measured by the same client code.

Failures keep their meaning for a three-valued outcome: a refused or failed connect sent
nothing (``ConnectFailed``); a connection lost after the request was written, or a timeout, may
have applied it (``Disconnected``, ``TimeoutError``).
"""

from __future__ import annotations

import asyncio
from typing import cast
from urllib.parse import urlsplit

_MAX_HEAD = 64 * 1024  # a response head longer than this is not a server we measure


class ConnectFailed(Exception):
    """The connection could not be opened: the request was never sent."""


class Disconnected(Exception):
    """The connection closed, or sent something unreadable, before the whole answer came."""


class _Connection(asyncio.Protocol):
    """One TCP connection; ``exchange`` writes one request and waits for its whole answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.closed = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            answer = self._parse()
        except Disconnected as exc:
            self.waiter.set_exception(exc)
            self.close()
            return
        if answer is not None:
            self.waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(Disconnected("the server closed the connection"))

    # -- requests ----------------------------------------------------------------------------

    async def exchange(self, request: bytes, timeout: float) -> tuple[int, bytes, bool]:
        """Send ``request``; return (status, body, keep-alive) or raise ``Disconnected``/``TimeoutError``."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.buffer.clear()
        self.waiter = waiter = loop.create_future()
        self.transport.write(request)
        timer = loop.call_later(timeout, self._time_out, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def _time_out(self, waiter: asyncio.Future[tuple[int, bytes, bool]]) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError())
            self.close()  # a late answer must not be read as the next request's

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _parse(self) -> tuple[int, bytes, bool] | None:
        """Return the whole answer once it is in the buffer, None while more is to come."""
        buf = self.buffer
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                raise Disconnected("the response head is too long")
            return None
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise Disconnected(f"not an HTTP status line: {head[0][:80]!r}") from None
        length: int | None = None
        chunked = False
        keep_alive = head[0].startswith("HTTP/1.1")
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                keep_alive = value.strip().lower() == "keep-alive" or (keep_alive and value.strip().lower() != "close")
        start = end + 4
        if chunked:
            body = _dechunk(buf, start)
            return None if body is None else (status, body, keep_alive)
        if length is None:
            if status in (204, 304) or 100 <= status < 200:
                return status, b"", keep_alive
            raise Disconnected("a response without Content-Length")  # read-to-close: never from the servers we measure
        if len(buf) - start < length:
            return None
        return status, bytes(buf[start:start + length]), keep_alive


def _dechunk(buf: bytearray, at: int) -> bytes | None:
    """Return the body of a chunked answer starting at ``at``, or None if it is not all here."""
    parts = []
    while True:
        eol = buf.find(b"\r\n", at)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[at:eol]).split(b";", 1)[0], 16)
        except ValueError:
            raise Disconnected("a bad chunk size") from None
        if size == 0:
            return b"".join(parts) if buf.find(b"\r\n\r\n", eol) >= 0 else None  # the last chunk, trailers, a blank line
        if len(buf) < eol + 2 + size + 2:
            return None
        parts.append(bytes(buf[eol + 2:eol + 2 + size]))
        at = eol + 2 + size + 2


class Http1Client:
    """Keep-alive connections by host and port, each carrying one request at a time.

    ``await request(method, url, body, headers)`` returns ``(status, body)``. A connection is
    taken from the idle list of its host (or opened) and put back after a complete answer it may
    keep alive; ``close()`` closes every connection.
    """

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._all: set[_Connection] = set()
        self._targets: dict[str, tuple[str, int, str]] = {}  # base URL -> host, port, Host header

    async def request(self, method: str, url: str, body: bytes | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        host, port, path, host_header = self._split(url)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(body) if body else 0}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        conn = await self._take(host, port)
        try:
            status, data, keep_alive = await conn.exchange(request, self.timeout)
        except BaseException:
            conn.close()
            self._all.discard(conn)
            raise
        if keep_alive and not conn.closed:
            self._idle.setdefault((host, port), []).append(conn)
        else:
            conn.close()
            self._all.discard(conn)
        return status, data

    def _split(self, url: str) -> tuple[str, int, str, str]:
        scheme_end = url.find("://")
        path_start = url.find("/", scheme_end + 3)
        base, path = (url, "/") if path_start < 0 else (url[:path_start], url[path_start:])
        target = self._targets.get(base)
        if target is None:
            parts = urlsplit(base)
            if parts.scheme != "http" or parts.hostname is None:
                raise ValueError(f"only http:// URLs are supported, not {base!r}")
            target = self._targets[base] = (parts.hostname, parts.port or 80, parts.netloc)
        return target[0], target[1], path, target[2]

    async def _take(self, host: str, port: int) -> _Connection:
        idle = self._idle.get((host, port))
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
            self._all.discard(conn)
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(_Connection, host, port), self.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise ConnectFailed(str(exc) or type(exc).__name__) from None
        self._all.add(conn)
        return conn

    async def close(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks

    async def __aenter__(self) -> "Http1Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
