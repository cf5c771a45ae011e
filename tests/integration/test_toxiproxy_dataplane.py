"""Data plane of the embedded Toxiproxy: real sockets on 127.0.0.1, toxics driven over real HTTP.

Timings are asserted with generous upper bounds (the machine may be busy): a 100 ms toxic must
delay by at least 100 ms and by less than a second.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, AsyncIterator

import aiohttp
import pytest

from chaos.toxiproxy import ToxiproxyServer
from chaos.toxiproxy.testing import EchoUpstream, async_wait_until

pytestmark = pytest.mark.timeout(30)


class Api:
    """Minimal async HTTP helper for the server under test."""

    def __init__(self, server: ToxiproxyServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    async def call(self, method: str, path: str, body: Any = None, expect: int | None = None) -> Any:
        async with self.session.request(method, self.server.url + path, json=body) as resp:
            data = await resp.read()
            if expect is not None:
                assert resp.status == expect, data
            return (await resp.json()) if data and resp.content_type == "application/json" else data

    async def proxy(self, upstream: EchoUpstream, name: str = "p", **fields: Any) -> tuple[str, int]:
        created = await self.call("POST", "/proxies", {"name": name, "listen": "127.0.0.1:0",
                                                      "upstream": upstream.address, **fields}, expect=201)
        host, port = created["listen"].rsplit(":", 1)
        return host, int(port)

    async def toxic(self, type_: str, stream: str = "downstream", proxy: str = "p", **kw: Any) -> dict[str, Any]:
        return await self.call("POST", f"/proxies/{proxy}/toxics", {"type": type_, "stream": stream, **kw}, expect=200)


@pytest.fixture
async def upstream() -> AsyncIterator[EchoUpstream]:
    up = await EchoUpstream().start()
    try:
        yield up
    finally:
        await up.stop()


@pytest.fixture
async def server() -> AsyncIterator[ToxiproxyServer]:
    srv = ToxiproxyServer("127.0.0.1", 0, seed=1)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def api(server: ToxiproxyServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(server, session)


class Client:
    """A client connection through the proxy, closed by the fixture that made it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.loop = asyncio.get_running_loop()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv_exactly(self, n: int, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), timeout)

    async def rtt(self, data: bytes = b"ping", timeout: float = 5.0) -> float:
        start = self.loop.time()
        await self.send(data)
        assert await self.recv_exactly(len(data), timeout) == data
        return self.loop.time() - start

    async def read_until_eof(self, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.reader.read(), timeout)

    async def eof_within(self, timeout: float) -> bool:
        """Return True if the connection ends (EOF or reset) within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
            return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True


@pytest.fixture
async def connect() -> AsyncIterator[Any]:
    clients: list[Client] = []

    async def _connect(addr: tuple[str, int]) -> Client:
        reader, writer = await asyncio.open_connection(*addr)
        client = Client(reader, writer)
        clients.append(client)
        return client

    try:
        yield _connect
    finally:
        for client in clients:
            client.writer.transport.abort()


async def test_plain_proxy_echoes_bulk_data_intact(api: Api, upstream: EchoUpstream, connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    payload = bytes(range(256)) * 4096  # 1 MiB
    await client.send(payload)
    assert await client.recv_exactly(len(payload)) == payload


@pytest.mark.parametrize("stream", ["upstream", "downstream"])
async def test_latency_delays_each_direction(api: Api, upstream: EchoUpstream, connect: Any, stream: str) -> None:
    client = await connect(await api.proxy(upstream))
    assert await client.rtt() < 0.5
    await api.toxic("latency", stream, attributes={"latency": 100})
    sent = client.loop.time()
    rtt = await client.rtt()
    assert 0.1 <= rtt < 1.0
    conn = upstream.connections[0]
    arrival = conn.arrivals[-1][0] - sent
    if stream == "upstream":
        assert arrival >= 0.1  # delayed before reaching the server
    else:
        assert arrival < 0.1  # reached the server at once, delayed on the way back


async def test_latency_is_pipelined_and_never_reorders(api: Api, upstream: EchoUpstream, connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    await api.toxic("latency", attributes={"latency": 200, "jitter": 50})
    start = client.loop.time()
    messages = [bytes([65 + i]) * 8 for i in range(6)]
    for message in messages:
        await client.send(message)
        await asyncio.sleep(0.03)
    received = await client.recv_exactly(48, timeout=5)
    elapsed = client.loop.time() - start
    assert received == b"".join(messages)  # in order despite jitter
    assert 0.15 + 0.15 <= elapsed < 1.0  # 6 x (200 ± 50) ms serially would take >= 0.9 s


async def test_stacked_latencies_add_up_and_removal_releases_at_once(api: Api, upstream: EchoUpstream,
                                                                    connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    await api.toxic("latency", name="a", attributes={"latency": 60})
    await api.toxic("latency", name="b", attributes={"latency": 60})
    assert 0.12 <= await client.rtt() < 1.0
    await api.toxic("latency", name="long", stream="upstream", attributes={"latency": 5000})
    await client.send(b"held")
    await asyncio.sleep(0.1)
    start = client.loop.time()
    await api.call("DELETE", "/proxies/p/toxics/long", expect=204)
    assert await client.recv_exactly(4) == b"held"
    assert client.loop.time() - start < 1.0  # released, not held for 5 s


@pytest.mark.parametrize("stream", ["upstream", "downstream"])
async def test_bandwidth_limits_rate(api: Api, upstream: EchoUpstream, connect: Any, stream: str) -> None:
    client = await connect(await api.proxy(upstream))
    await api.toxic("bandwidth", stream, attributes={"rate": 50})  # 50 KB/s
    start = client.loop.time()
    await client.send(b"x" * 20_000)
    await client.recv_exactly(20_000, timeout=5)
    assert 0.3 <= client.loop.time() - start < 2.0  # 20 kB at 50 kB/s = 0.4 s


async def test_bandwidth_zero_holds_then_releases_without_closing(api: Api, upstream: EchoUpstream,
                                                                  connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    await api.toxic("bandwidth", "upstream", name="cut_up", attributes={"rate": 0})
    await api.toxic("bandwidth", "downstream", name="cut_down", attributes={"rate": 0})
    await client.send(b"stale")
    with pytest.raises(TimeoutError):
        await client.recv_exactly(5, timeout=0.3)
    assert upstream.connections[0].received == b""
    start = client.loop.time()
    await api.call("DELETE", "/proxies/p/toxics/cut_down", expect=204)
    await api.call("DELETE", "/proxies/p/toxics/cut_up", expect=204)
    assert client.loop.time() - start < 1.0  # removing a toxic that holds data never blocks the API
    assert await client.recv_exactly(5) == b"stale"
    assert await client.rtt(b"fresh") < 1.0  # the connection survived


async def test_slow_close_downstream_delays_the_clients_eof(api: Api, upstream: EchoUpstream, connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    await api.toxic("slow_close", attributes={"delay": 300})
    assert await client.rtt() < 0.3  # data is not delayed
    start = client.loop.time()
    upstream.connections[0].writer.close()
    assert await client.read_until_eof() == b""
    assert 0.3 <= client.loop.time() - start < 1.5


async def test_slow_close_upstream_delays_the_servers_eof(api: Api, upstream: EchoUpstream, connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    await api.toxic("slow_close", "upstream", attributes={"delay": 300})
    await client.rtt()
    start = client.loop.time()
    client.writer.close()
    conn = upstream.connections[0]
    await asyncio.wait_for(conn.eof.wait(), 5)
    assert 0.3 <= client.loop.time() - start < 1.5


@pytest.mark.parametrize("stream", ["upstream", "downstream"])
async def test_timeout_drops_data_then_closes(api: Api, upstream: EchoUpstream, connect: Any, stream: str) -> None:
    client = await connect(await api.proxy(upstream))
    await client.rtt()
    start = client.loop.time()
    await api.toxic("timeout", stream, attributes={"timeout": 200})
    await client.send(b"lost")
    assert await client.eof_within(2.0)
    assert 0.2 <= client.loop.time() - start < 1.5
    received = bytes(upstream.connections[0].received)
    assert received == (b"ping" if stream == "upstream" else b"pinglost")


@pytest.mark.parametrize("stream", ["upstream", "downstream"])
async def test_timeout_zero_blackholes_and_removal_closes(api: Api, upstream: EchoUpstream, connect: Any,
                                                          stream: str) -> None:
    addr = await api.proxy(upstream)
    client = await connect(addr)
    await api.toxic("timeout", stream, attributes={"timeout": 0})
    await client.send(b"void")
    assert not await client.eof_within(0.3)  # black hole: connection kept, nothing comes back
    late = await connect(addr)  # new connections are accepted and the upstream is dialled
    await upstream.wait_connections(2)
    await api.call("DELETE", f"/proxies/p/toxics/timeout_{stream}", expect=204)
    assert await client.eof_within(2.0)  # removing it closes the connections it touched
    assert await late.eof_within(2.0)
    fresh = await connect(addr)
    assert await fresh.rtt() < 1.0


async def test_reset_removes_timeout_and_closes_its_connections(api: Api, upstream: EchoUpstream,
                                                               connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    await api.toxic("timeout", attributes={"timeout": 0})
    await api.call("POST", "/reset", expect=204)
    assert await client.eof_within(2.0)
    assert await api.call("GET", "/proxies/p/toxics") == []


@pytest.mark.parametrize("stream", ["upstream", "downstream"])
async def test_reset_peer_on_new_connection_sends_rst(api: Api, upstream: EchoUpstream, connect: Any,
                                                      stream: str) -> None:
    addr = await api.proxy(upstream)
    await api.toxic("reset_peer", stream, attributes={"timeout": 100})
    client = await connect(addr)
    assert not await client.eof_within(0.2)  # idle connections are not reset
    start = client.loop.time()
    await client.send(b"trigger")
    with pytest.raises(ConnectionResetError):
        async with asyncio.timeout(3):
            while await client.reader.read(65536):
                pass
    assert 0.1 <= client.loop.time() - start < 1.5


async def test_reset_peer_added_to_open_connection_sends_fin(api: Api, upstream: EchoUpstream, connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    await client.rtt()
    await api.toxic("reset_peer", "upstream", attributes={"timeout": 0})
    await client.send(b"trigger")
    assert await client.read_until_eof(timeout=3) == b""  # EOF, not ConnectionResetError


async def test_removing_reset_peer_mid_countdown_does_not_block(api: Api, upstream: EchoUpstream,
                                                                connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    await api.toxic("reset_peer", "upstream", attributes={"timeout": 5000})
    await client.send(b"trigger")
    await asyncio.sleep(0.05)
    start = client.loop.time()
    await api.call("DELETE", "/proxies/p/toxics/reset_peer_upstream", expect=204)
    assert client.loop.time() - start < 1.0


@pytest.mark.parametrize("stream", ["upstream", "downstream"])
async def test_slicer_splits_and_delays_but_keeps_data(api: Api, upstream: EchoUpstream, connect: Any,
                                                       stream: str) -> None:
    client = await connect(await api.proxy(upstream))
    await api.toxic("slicer", stream, attributes={"average_size": 10, "size_variation": 0, "delay": 20_000})
    payload = bytes(range(100))
    start = client.loop.time()
    await client.send(payload)
    received = bytearray()
    reads = 0
    while len(received) < len(payload):
        received += await asyncio.wait_for(client.reader.read(1000), 5)
        reads += 1
    assert bytes(received) == payload
    assert client.loop.time() - start >= 0.15  # ~10 pieces, 20 ms apart
    if stream == "downstream":
        assert reads >= 4
    else:
        assert len(upstream.connections[0].arrivals) >= 4


@pytest.mark.parametrize("stream", ["upstream", "downstream"])
async def test_limit_data_truncates_then_closes(api: Api, upstream: EchoUpstream, connect: Any, stream: str) -> None:
    client = await connect(await api.proxy(upstream))
    await api.toxic("limit_data", stream, attributes={"bytes": 10})
    await client.send(b"0123456789abcdefghij")
    echoed = await client.read_until_eof()
    if stream == "downstream":
        assert echoed == b"0123456789"
    else:  # the upstream socket closes after 10 bytes, and with it the reply path (as upstream)
        assert b"0123456789".startswith(echoed)
    conn = upstream.connections[0]
    await asyncio.wait_for(conn.eof.wait(), 5)
    assert bytes(conn.received) == (b"0123456789" if stream == "upstream" else b"0123456789abcdefghij")


async def test_noop_and_toxicity_zero_leave_traffic_alone(api: Api, upstream: EchoUpstream, connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    await api.toxic("noop")
    await api.toxic("noop", "upstream")
    await api.toxic("latency", name="never", toxicity=0, attributes={"latency": 2000})
    assert await client.rtt(b"x" * 1000) < 1.0


async def test_toxicity_one_always_applies(api: Api, upstream: EchoUpstream, connect: Any) -> None:
    addr = await api.proxy(upstream)
    await api.toxic("latency", toxicity=1, attributes={"latency": 100})
    for _ in range(3):
        client = await connect(addr)
        assert 0.1 <= await client.rtt() < 1.0


async def test_update_restarts_toxic_with_new_attributes(api: Api, upstream: EchoUpstream, connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    await api.toxic("latency", attributes={"latency": 50})
    assert 0.05 <= await client.rtt() < 1.0
    updated = await api.call("PATCH", "/proxies/p/toxics/latency_downstream", {"attributes": {"latency": 250}},
                             expect=200)
    assert updated["attributes"] == {"latency": 250, "jitter": 0}
    assert 0.25 <= await client.rtt() < 1.5


async def test_disable_closes_connections_and_refuses_new_ones(api: Api, upstream: EchoUpstream,
                                                               connect: Any) -> None:
    addr = await api.proxy(upstream)
    client = await connect(addr)
    await client.rtt()
    await api.call("PATCH", "/proxies/p", {"enabled": False}, expect=200)
    assert await client.eof_within(1.0)
    with pytest.raises(ConnectionRefusedError):
        await connect(addr)
    await api.call("PATCH", "/proxies/p", {"enabled": True}, expect=200)
    assert await (await connect(addr)).rtt() < 1.0


async def test_upstream_change_drops_connections(api: Api, upstream: EchoUpstream, connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    await client.rtt()
    await api.call("PATCH", "/proxies/p", {"upstream": f"localhost:{upstream.port}"}, expect=200)
    assert await client.eof_within(1.0)


async def test_failed_dial_closes_the_client(api: Api, connect: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # bound, not listening: connections are refused
        created = await api.call("POST", "/proxies", {"name": "dead", "listen": "127.0.0.1:0",
                                                     "upstream": f"127.0.0.1:{dead_port}"}, expect=201)
        host, port = created["listen"].rsplit(":", 1)
        client = await connect((host, int(port)))
        assert await client.eof_within(2.0)


async def test_dial_timeout_closes_the_client(connect: Any) -> None:
    srv = ToxiproxyServer("127.0.0.1", 0, dial_timeout=0.3)
    await srv.start()
    backlog = socket.socket()
    fillers: list[socket.socket] = []
    try:
        backlog.bind(("127.0.0.1", 0))
        backlog.listen(0)
        for _ in range(4):  # fill the accept queue so further SYNs are dropped
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(backlog.getsockname())
            fillers.append(filler)
        await asyncio.sleep(0.05)
        proxy = await srv.create_proxy("slow", "127.0.0.1:0", "127.0.0.1:%d" % backlog.getsockname()[1])
        host, port = proxy.listen.rsplit(":", 1)
        client = await connect((host, int(port)))
        start = client.loop.time()
        assert await client.eof_within(3.0)
        assert client.loop.time() - start < 2.5
    finally:
        for filler in fillers:
            filler.close()
        backlog.close()
        await srv.stop()


async def test_proxy_metrics_count_bytes_when_links_end(upstream: EchoUpstream, connect: Any) -> None:
    srv = ToxiproxyServer("127.0.0.1", 0, proxy_metrics=True)
    await srv.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(srv, session)
            client = await connect(await api.proxy(upstream))
            await client.rtt(b"x" * 100)
            client.writer.close()
            assert await async_wait_until(lambda: not srv.proxies["p"].connections)
            async with session.get(srv.url + "/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                text = await resp.text()
        assert 'toxiproxy_proxy_received_bytes_total{direction="upstream"' in text
        line = next(x for x in text.splitlines()
                    if x.startswith('toxiproxy_proxy_sent_bytes_total{direction="downstream"'))
        assert float(line.rsplit(" ", 1)[1]) == 100.0
    finally:
        await srv.stop()


async def test_toxicity_is_rolled_per_connection(api: Api, upstream: EchoUpstream, connect: Any) -> None:
    addr = await api.proxy(upstream)
    await api.toxic("limit_data", "upstream", toxicity=0.5, attributes={"bytes": 0})
    clients = [await connect(addr) for _ in range(30)]
    outcomes = []
    for client in clients:
        await client.send(b"hello")
        try:
            outcomes.append(await client.recv_exactly(5, timeout=2) == b"hello")
        except (asyncio.IncompleteReadError, ConnectionError):
            outcomes.append(False)  # the toxic ran on this connection: closed on its first byte
    assert 5 <= outcomes.count(True) <= 25, outcomes  # seeded; both outcomes occur


async def test_timeout_timer_restarts_on_update(api: Api, upstream: EchoUpstream, connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    await client.rtt()
    await api.toxic("timeout", attributes={"timeout": 400})
    await asyncio.sleep(0.25)
    updated_at = client.loop.time()
    await api.call("PATCH", "/proxies/p/toxics/timeout_downstream", {"attributes": {"timeout": 400}}, expect=200)
    assert await client.eof_within(3.0)
    assert client.loop.time() - updated_at >= 0.4  # counted from the update, not from the add


async def test_limit_data_added_to_a_live_connection_counts_from_the_add(api: Api, upstream: EchoUpstream,
                                                                         connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    assert await client.rtt(b"x" * 100) < 1.0
    await api.toxic("limit_data", attributes={"bytes": 10})
    await client.send(b"abcdefghijklmnopqrst")
    assert await client.read_until_eof() == b"abcdefghij"


async def test_reset_flushes_held_data_and_keeps_the_connection(api: Api, upstream: EchoUpstream,
                                                                connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    await api.toxic("bandwidth", attributes={"rate": 0})
    await client.send(b"queued")
    await upstream.connections[0].wait_bytes(6)
    await api.call("POST", "/reset", expect=204)
    assert await client.recv_exactly(6) == b"queued"
    assert await client.rtt() < 1.0


async def test_half_close_is_not_propagated_both_sockets_close(api: Api, upstream: EchoUpstream,
                                                               connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    payload = b"y" * 100_000
    await client.send(payload)
    client.writer.write_eof()
    reply = await client.read_until_eof(timeout=3)
    assert len(reply) < len(payload)  # the upstream socket was closed on EOF, as upstream Toxiproxy does
    await asyncio.wait_for(upstream.connections[0].eof.wait(), 3)


async def test_delete_and_listen_change_close_connections(api: Api, upstream: EchoUpstream, connect: Any) -> None:
    addr = await api.proxy(upstream)
    client = await connect(addr)
    await client.rtt()
    moved = await api.call("PATCH", "/proxies/p", {"listen": "127.0.0.1:0"}, expect=200)
    assert moved["listen"] != f"{addr[0]}:{addr[1]}"
    assert await client.eof_within(1.0)
    with pytest.raises(ConnectionRefusedError):
        await connect(addr)
    host, port = moved["listen"].rsplit(":", 1)
    second = await connect((host, int(port)))
    await second.rtt()
    await api.call("DELETE", "/proxies/p", expect=204)
    assert await second.eof_within(1.0)
    with pytest.raises(ConnectionRefusedError):
        await connect((host, int(port)))


async def test_bulk_data_through_toxics_keeps_order_under_back_pressure(api: Api, upstream: EchoUpstream,
                                                                        connect: Any) -> None:
    client = await connect(await api.proxy(upstream))
    await api.toxic("noop", "upstream")
    await api.toxic("latency", "upstream", attributes={"latency": 1})
    await api.toxic("bandwidth", "downstream", attributes={"rate": 200_000})
    payload = bytes(range(251)) * 40_000  # ~10 MB, more than the 4 MiB chain limit
    reader = asyncio.create_task(client.recv_exactly(len(payload), timeout=20))
    try:
        await client.send(payload)
        assert await reader == payload
    finally:
        reader.cancel()
