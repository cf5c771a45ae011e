"""The data plane of one proxied connection: two links, each a chain of toxic stages.

::

    client ──▶ [upstream link:   reader → stage → stage → sink] ──▶ upstream server
    client ◀── [downstream link: sink ← stage ← stage ← reader] ◀── upstream server

A link with no toxics forwards each read straight to the destination transport from the
protocol callback: no task, no queue, no copy. With toxics, the reader puts stamped chunks into
the first stage's :class:`Channel`; each :class:`Stage` runs its toxic in a task and hands
chunks on without ever blocking, so editing a chain (cancel a stage, forward what it held,
splice) is synchronous and cannot hang the API. Back-pressure: the reader pauses its socket
when the chain holds more than ``CHAIN_HIGH_WATER`` bytes or the destination's write buffer is
full, and resumes when both have drained.

End of stream is not propagated as a half-close: when a link's stream ends its destination
socket is closed fully, which ends the other link in turn (Toxiproxy does the same).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import socket
import struct
from typing import TYPE_CHECKING, Any, Callable

from chaos.toxiproxy.toxics import Toxic, noop_pipe

if TYPE_CHECKING:
    from chaos.toxiproxy.proxy import Proxy

log = logging.getLogger("chaos.toxiproxy")

CHAIN_HIGH_WATER = 4 * 1024 * 1024
CHAIN_LOW_WATER = 1024 * 1024


class Chunk:
    """Bytes read in one go and the loop time they arrived."""

    __slots__ = ("data", "ts")

    def __init__(self, data: bytes, ts: float) -> None:
        self.data = data
        self.ts = ts

    def with_data(self, data: bytes) -> "Chunk":
        return Chunk(data, self.ts)


class Channel:
    """An unbounded single-consumer queue of chunks with a sticky end of stream.

    ``put`` wakes the consumer but never hands it an item, so cancelling a consumer never
    loses one.
    """

    __slots__ = ("items", "nbytes", "eof", "_waiter", "_on_put")

    def __init__(self) -> None:
        self.items: collections.deque[Chunk] = collections.deque()
        self.nbytes = 0
        self.eof = False
        self._waiter: asyncio.Future[None] | None = None

    def put(self, chunk: Chunk) -> None:
        if self.eof:
            return
        self.items.append(chunk)
        self.nbytes += len(chunk.data)
        self._wake()

    def close(self) -> None:
        self.eof = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Chunk | None:
        while not self.items:
            if self.eof:
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        chunk = self.items.popleft()
        self.nbytes -= len(chunk.data)
        return chunk

    def move_to(self, target: "Channel | Sink") -> None:
        """Hand every queued chunk, then the end of stream if reached, to ``target``."""
        while self.items:
            chunk = self.items.popleft()
            self.nbytes -= len(chunk.data)
            target.put(chunk)
        if self.eof:
            target.close()


class Sink:
    """The end of a link's chain: writes to the destination socket, closes it at end of stream."""

    __slots__ = ("link",)

    def __init__(self, link: "Link") -> None:
        self.link = link

    def put(self, chunk: Chunk) -> None:
        self.link.write(chunk.data)
        self.link.update_reading()

    def close(self) -> None:
        self.link.finish()


class Stage:
    """One toxic running on one link: reads ``inp``, writes ``out``, and may hold one chunk."""

    def __init__(self, link: "Link", toxic: Toxic, inp: Channel, out: Channel | Sink) -> None:
        self.link = link
        self.toxic = toxic
        self.inp = inp
        self.out = out
        self.held: Chunk | None = None
        self.state: dict[str, Any] = {}  # per-link toxic state that survives re-runs (limit_data)
        self.rng: random.Random = link.conn.proxy.rng
        self.attrs: dict[str, int] = toxic.attributes
        self.task: asyncio.Task[None] | None = None

    # API for toxics (see chaos.toxiproxy.toxics)
    async def get(self) -> Chunk | None:
        self.held = await self.inp.get()
        return self.held

    def emit(self, chunk: Chunk) -> None:
        if chunk is self.held:
            self.held = None
        self.out.put(chunk)

    def drop(self) -> None:
        self.held = None
        if self.link.reading_paused:  # data that never reaches the sink must still free the chain
            self.link.update_reading()

    def close_output(self) -> None:
        self.out.close()

    # Lifecycle, driven by Link
    def start(self) -> None:
        """Run the toxic, or a noop when the toxicity roll says no (rolled at every start)."""
        self.attrs = self.toxic.attributes
        pipe = self.toxic.type.pipe if self.rng.random() < self.toxic.toxicity else noop_pipe
        self.task = asyncio.get_running_loop().create_task(self._run(pipe))

    async def _run(self, pipe: Callable[["Stage"], Any]) -> None:
        try:
            await pipe(self)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("toxic %s failed on %s; closing the connection", self.toxic.name, self.link.name)
            self.link.conn.close()

    def interrupt(self) -> None:
        """Stop the toxic at once and forward the chunk it held, so no data is lost."""
        if self.task is not None:
            self.task.cancel()
            self.link.conn.proxy.forget_task(self.task)
            self.task = None
        if self.held is not None:
            held, self.held = self.held, None
            self.out.put(held)


class Link:
    """One direction of a connection: source socket → toxic stages → destination socket."""

    def __init__(self, conn: "Connection", direction: str, src: asyncio.Transport, dst: asyncio.Transport) -> None:
        self.conn = conn
        self.direction = direction
        self.name = f"{conn.proxy.name}/{conn.id}/{direction}"
        self.src = src
        self.dst = dst
        self.sink = Sink(self)
        self.head: Channel | Sink = self.sink
        self.stages: list[Stage] = []
        self.finished = False
        self.received = 0
        self.sent = 0
        self.dst_full = False
        self.reading_paused = False
        self._loop = asyncio.get_running_loop()

    # Data path
    def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self.head is self.sink:
            self.write(data)  # fast path: no toxics
        else:
            self.head.put(Chunk(data, self._loop.time()))
            self.update_reading()

    def feed_eof(self) -> None:
        self.head.close()

    def write(self, data: bytes) -> None:
        if self.finished or self.dst.is_closing():
            return
        self.dst.write(data)
        self.sent += len(data)

    def finish(self) -> None:
        """End this link's stream: close the destination fully."""
        if not self.finished:
            self.finished = True
            self.conn.close_transport(self.dst)

    # Flow control
    def chain_bytes(self) -> int:
        total = 0
        for stage in self.stages:
            total += stage.inp.nbytes + (len(stage.held.data) if stage.held is not None else 0)
        return total

    def update_reading(self) -> None:
        """Pause the source while the chain or the destination buffer is full; resume when both drained."""
        if self.src.is_closing():
            return
        if not self.reading_paused:
            if self.dst_full or (self.stages and self.chain_bytes() > CHAIN_HIGH_WATER):
                self.reading_paused = True
                self.src.pause_reading()
        elif not self.dst_full and (not self.stages or self.chain_bytes() < CHAIN_LOW_WATER):
            self.reading_paused = False
            self.src.resume_reading()

    # Chain edits (all synchronous; see module docstring)
    def start_chain(self, toxics: list[Toxic]) -> None:
        for toxic in toxics:
            self._append(toxic)
        for stage in self.stages:
            self._start(stage)

    def _append(self, toxic: Toxic) -> Stage:
        channel = Channel()
        if self.stages:
            self.stages[-1].out = channel
        else:
            self.head = channel
        stage = Stage(self, toxic, channel, self.sink)
        self.stages.append(stage)
        return stage

    def _start(self, stage: Stage) -> None:
        stage.start()
        assert stage.task is not None
        self.conn.proxy.track_task(stage.task)

    def add_toxic(self, toxic: Toxic) -> None:
        """Append a toxic; the previous last stage is interrupted and re-run, as upstream does."""
        previous = self.stages[-1] if self.stages else None
        if previous is not None:
            previous.interrupt()
        stage = self._append(toxic)
        self._start(stage)
        if previous is not None:
            self._start(previous)

    def update_toxic(self, toxic: Toxic) -> None:
        for stage in self.stages:
            if stage.toxic is toxic:
                stage.interrupt()
                self._start(stage)

    def remove_toxic(self, toxic: Toxic) -> None:
        """Remove a toxic, forwarding what it held; a ``timeout`` toxic closes the link instead."""
        index = next((i for i, s in enumerate(self.stages) if s.toxic is toxic), None)
        if index is None:
            return
        stage = self.stages[index]
        stage.interrupt()
        previous = self.stages[index - 1] if index > 0 else None
        if previous is not None:
            previous.interrupt()
        if toxic.type.cleanup_closes:
            stage.out.close()
        stage.inp.move_to(stage.out)
        del self.stages[index]
        if previous is not None:
            previous.out = stage.out
            self._start(previous)
        else:
            self.head = stage.out
        self.update_reading()

    def stop(self) -> None:
        for stage in self.stages:
            if stage.task is not None:
                stage.task.cancel()
                self.conn.proxy.forget_task(stage.task)
                stage.task = None


class _SideProtocol(asyncio.Protocol):
    """Socket callbacks of one side (client or upstream) of a connection."""

    def __init__(self, conn: "Connection | None" = None) -> None:
        self.conn = conn
        self.reads: Link | None = None  # the link whose source is this socket
        self.writes: Link | None = None  # the link whose destination is this socket
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.reads is not None:
            self.reads.feed(data)

    def eof_received(self) -> bool:
        if self.reads is not None:
            self.reads.feed_eof()
        return True  # the link closes this socket fully when it is done

    def pause_writing(self) -> None:
        if self.writes is not None:
            self.writes.dst_full = True
            self.writes.update_reading()

    def resume_writing(self) -> None:
        if self.writes is not None:
            self.writes.dst_full = False
            self.writes.update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.reads is not None:
            self.reads.feed_eof()
        if self.writes is not None:
            self.writes.finished = True
        if self.conn is not None:
            self.conn.side_lost()


class ClientProtocol(_SideProtocol):
    """Accepted client socket: pauses reading until the upstream dial has finished."""

    def __init__(self, proxy: "Proxy") -> None:
        super().__init__()
        self.proxy = proxy
        self.dial: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        transport.pause_reading()  # type: ignore[attr-defined]
        self.proxy.accepted(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.conn is None and self.dial is not None:
            self.dial.cancel()


class UpstreamProtocol(_SideProtocol):
    """Socket to the upstream server: paused until its connection is wired, so no early byte is lost."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        transport.pause_reading()  # type: ignore[attr-defined]


def set_linger_zero(transport: asyncio.BaseTransport) -> None:
    """Make close() send RST, as upstream does for connections that start with a reset_peer toxic."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Connection:
    """A client connection proxied to the upstream: two sockets, two links."""

    def __init__(self, proxy: "Proxy", conn_id: int, client: ClientProtocol, upstream: UpstreamProtocol) -> None:
        assert client.transport is not None and upstream.transport is not None
        self.proxy = proxy
        self.id = conn_id
        self.client = client
        self.upstream = upstream
        self.up = Link(self, "upstream", client.transport, upstream.transport)
        self.down = Link(self, "downstream", upstream.transport, client.transport)
        client.conn = upstream.conn = self
        client.reads, client.writes = self.up, self.down
        upstream.reads, upstream.writes = self.down, self.up
        self.closed = False

    def link(self, direction: str) -> Link:
        return self.up if direction == "upstream" else self.down

    def start(self, upstream_toxics: list[Toxic], downstream_toxics: list[Toxic]) -> None:
        if any(t.type.name == "reset_peer" for t in upstream_toxics + downstream_toxics):
            set_linger_zero(self.up.src)
            set_linger_zero(self.up.dst)
        self.up.start_chain(upstream_toxics)
        self.down.start_chain(downstream_toxics)
        self.up.src.resume_reading()
        self.down.src.resume_reading()

    def close_transport(self, transport: asyncio.Transport) -> None:
        if not transport.is_closing():
            transport.close()

    def close(self) -> None:
        """Close both sockets now, discarding data held in toxics (disable, delete, errors)."""
        self.up.stop()
        self.down.stop()
        for transport in (self.up.src, self.up.dst):
            if transport.get_write_buffer_size() > 0:
                transport.abort()  # a peer that does not read must not keep the connection alive
            else:
                self.close_transport(transport)

    def side_lost(self) -> None:
        if self.client.lost and self.upstream.lost and not self.closed:
            self.closed = True
            self.up.stop()
            self.down.stop()
            self.proxy.connection_closed(self)
