"""The engine refuses unsafe or impossible starts with a clear error."""

from __future__ import annotations

import socket

import pytest

from consensus import Node, NodeConfig
from consensus.engine import EngineStartError
from consensus.testing import free_ports
from consensus.testing.machines import default_machines


async def test_peer_port_beyond_loopback_needs_a_secret(tmp_path):
    port = free_ports(1)[0]
    node = Node(NodeConfig(f"0.0.0.0:{port}", [f"0.0.0.0:{port}"], str(tmp_path)), default_machines())
    with pytest.raises(EngineStartError, match="without a shared secret"):
        await node.start()


async def test_port_in_use_is_reported_at_start(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        node = Node(NodeConfig(address, [address], str(tmp_path)), default_machines())
        with pytest.raises(EngineStartError, match="cannot listen for peers"):
            await node.start()


async def test_single_node_cluster_elects_itself_and_stops_cleanly(tmp_path):
    address = f"127.0.0.1:{free_ports(1)[0]}"
    async with Node(NodeConfig(address, [address], str(tmp_path)), default_machines()) as node:
        assert await node.wait_for_leader(10) == address
        assert await node.propose("kv", {"method": "incr", "args": ["a"]}) == 1
    # The port is free again once the node stopped.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(address.rsplit(":", 1)[1])))
