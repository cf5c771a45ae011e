"""Peer links routed through a proxy: identity stays the real address, the dial target changes."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from consensus import Consistency
from consensus.engine import clear_dial_route, dial_routes
from consensus.testing import InProcessCluster, free_ports, wait_until


class Forwarder:
    """A tiny TCP forwarder on loopback that can cut every link it carries."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0
        self.cut = False

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer):
        if self.cut:
            writer.close()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src, dst):
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    def cut_all(self) -> None:
        self.cut = True
        for w in list(self.writers):
            w.transport.abort()

    def heal(self) -> None:
        self.cut = False

    async def stop(self) -> None:
        self.cut_all()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def stale_get(node, key):
    return await node.read("kv", {"method": "get", "args": [key]}, consistency=Consistency.STALE)


async def test_cutting_one_nodes_links_leaves_the_rest_committing(tmp_path):
    ports = sorted(free_ports(3))
    addresses = [f"127.0.0.1:{p}" for p in ports]
    isolated = addresses[0]  # the smallest address never dials: every link to it is dialed to it
    forwarder = Forwarder(ports[0])
    proxy_port = await forwarder.start()
    cluster = InProcessCluster(3, tmp_path, dial_routes={isolated: ("127.0.0.1", proxy_port)})
    cluster.addresses = addresses
    try:
        await cluster.start()
        await cluster.wait_for_leader()
        assert dial_routes()[isolated] == ("127.0.0.1", proxy_port)
        assert forwarder.accepted >= 2  # both other nodes reached it through the proxy
        node_a = cluster.nodes[0]
        assert node_a.id == isolated  # identity is still the real address

        forwarder.cut_all()
        others = cluster.nodes[1:]

        def majority_leader():
            leaders = [n for n in others if n.is_leader()]
            return leaders[0] if leaders else None

        leader = await wait_until(majority_leader, 15, "a leader among the connected majority")
        for i in range(20):
            await leader.propose("kv", {"method": "put", "args": ["cut", i]}, timeout=5)
        assert await stale_get(node_a, "cut") is None  # the isolated node saw none of it

        forwarder.heal()

        async def caught_up():
            return await stale_get(node_a, "cut") == 19

        deadline = asyncio.get_running_loop().time() + 15
        while not await caught_up():
            assert asyncio.get_running_loop().time() < deadline, "isolated node did not catch up after heal"
            await asyncio.sleep(0.05)
    finally:
        await cluster.stop()
        await forwarder.stop()
        clear_dial_route(isolated)
