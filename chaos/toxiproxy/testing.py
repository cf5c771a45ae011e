"""Test helpers for code that runs traffic through Toxiproxy: a recording echo upstream and waits.

Shipped with the package (like aiohttp's test utilities) so the harness's own tests can use them.
Everything listens on 127.0.0.1 and every helper is closed by its owner.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

__all__ = ["EchoUpstream", "UpstreamConn", "wait_until", "async_wait_until"]


class UpstreamConn:
    """One connection accepted by :class:`EchoUpstream`: what it received, and a writer to push data."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received = bytearray()
        self.arrivals: list[tuple[float, int]] = []  # (loop time, bytes) per read
        self.eof = asyncio.Event()
        self.reset = False
        self.changed = asyncio.Event()

    async def wait_bytes(self, n: int, timeout: float = 5.0) -> bytes:
        """Wait until at least ``n`` bytes have arrived; return all received so far."""
        async with asyncio.timeout(timeout):
            while len(self.received) < n:
                self.changed.clear()
                await self.changed.wait()
        return bytes(self.received)


class EchoUpstream:
    """A TCP server on 127.0.0.1 that records each connection's bytes and echoes them if ``echo``."""

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.connections: list[UpstreamConn] = []
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._new_conn = asyncio.Event()
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> "EchoUpstream":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = UpstreamConn(reader, writer)
        self.connections.append(conn)
        self._new_conn.set()
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(65536):
                conn.received += data
                conn.arrivals.append((loop.time(), len(data)))
                conn.changed.set()
                if self.echo:
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, OSError):
            conn.reset = True
        finally:
            conn.eof.set()
            conn.changed.set()
            writer.close()
            self._tasks.discard(task)

    async def wait_connections(self, n: int, timeout: float = 5.0) -> list[UpstreamConn]:
        async with asyncio.timeout(timeout):
            while len(self.connections) < n:
                self._new_conn.clear()
                await self._new_conn.wait()
        return self.connections

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in self.connections:
            conn.writer.transport.abort()  # ends each handler's read loop
        if self._tasks:
            # Cancelling start_server handlers makes asyncio 3.11 log a spurious error, so wait instead.
            _, stuck = await asyncio.wait(list(self._tasks), timeout=5)
            for task in stuck:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return predicate()
        time.sleep(interval)
    return True


async def async_wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Like :func:`wait_until`, without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return predicate()
        await asyncio.sleep(interval)
    return True
