"""In-process nodes with real aiohttp servers on loopback, for tests of the HTTP layer.

``ServedCluster(n, tmp_path)`` starts n real nodes (engine threads, TCP between them) running
the counter app, and a real ``Server`` for each on a free port. ``peer_http`` can point a node's
view of a peer's HTTP URL somewhere else (a relay that misbehaves); ``server_options`` go into
every ``ServerConfig``, ``node_options`` into every ``NodeConfig``; ``only`` starts just some of
the nodes (one node of two never learns a leader). Everything is stopped on exit, also when a test fails.
"""

from __future__ import annotations

import asyncio
import json as json_module
from pathlib import Path
from typing import Any, Callable, Sequence

import aiohttp
from aiohttp import web

from consensus.node import Node
from consensus.server import AppSpec, Server, ServerConfig, load_apps, machines_for
from consensus.server.listener import start_site
from consensus.testing import InProcessCluster, free_ports


class ServedCluster:
    def __init__(self, n: int, data_dir: Path, *, peer_http: Callable[[int, str], str] | None = None,
                 extra_apps: Sequence[AppSpec] = (), node_options: dict[str, Any] | None = None,
                 only: Sequence[int] | None = None, **server_options: Any) -> None:
        self.specs = [*load_apps(["counter"]), *extra_apps]
        self.cluster = InProcessCluster(n, data_dir, machines=lambda: machines_for(self.specs), **(node_options or {}))
        self.ports = free_ports(n)
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self._peer_http = peer_http
        self._options = server_options
        self._only = list(range(n)) if only is None else list(only)  # the nodes to start
        self.servers: dict[int, Server] = {}
        self.runners: list[web.AppRunner] = []

    async def __aenter__(self) -> "ServedCluster":
        try:
            for i in self._only:
                await self.cluster.start_node(i)
            for i, node in enumerate(self.cluster.nodes):
                if node is not None:
                    await self._serve(i, node)
        except BaseException:
            await self.stop()
            raise
        return self

    async def _serve(self, i: int, node: Node) -> None:
        peer_http = {}
        for j, address in enumerate(self.cluster.addresses):
            if j != i:
                peer_http[address] = self._peer_http(j, self.urls[j]) if self._peer_http else self.urls[j]
        config = ServerConfig(http_url=self.urls[i], peer_http=peer_http, **self._options)
        server = Server(node, config, self.specs)
        runner = await start_site(server, "127.0.0.1", self.ports[i], config.limits)
        self.servers[i] = server
        self.runners.append(runner)

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        self.runners = []
        await self.cluster.stop()

    async def leader_index(self, timeout: float = 15.0) -> int:
        leader = await self.cluster.wait_for_leader(timeout)
        return self.cluster.addresses.index(leader.id)


async def request(method: str, url: str, *, json: Any = None, data: bytes | None = None,
                  headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, Any, dict[str, str]]:
    """Send one request on a fresh session; return (status, decoded JSON or text, headers)."""
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, json=json, data=data, headers=headers or {},
                                   timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            raw = await resp.read()
            try:
                body: Any = json_module.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            return resp.status, body, dict(resp.headers)


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)
