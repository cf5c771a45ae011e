"""Links between nodes, each through its own Toxiproxy proxy, driven through Toxiproxy's HTTP API.

Raft: pysyncobj opens one TCP connection per pair, dialed by the node whose Raft address string
is greater, and both directions of Raft traffic share it. So one proxy per pair carries the whole
Raft link: the dialer's ``--dial-route`` points at the proxy's listener, the proxy's upstream is
the target's Raft port. Toxiproxy's ``upstream`` stream is dialer -> target, ``downstream`` is
target -> dialer.

HTTP: a follower relays requests to the leader over HTTP through its own route
(``--forward-route ADDR=URL``): for every other node, the URL of a proxy ``sender -> target``
whose upstream is the target's HTTP port; ``--peers`` keeps the real URLs, which nodes tell
clients. Requests flow on ``upstream``,
answers on ``downstream``. A partition of a pair cuts its Raft proxy and both HTTP proxies, so a
partitioned node is cut off completely; clients still reach every node directly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from chaos.toxiproxy.client import NotFound, Toxiproxy

LATENCY_TOXIC = "raftwork-latency"   # + "-upstream" / "-downstream"
DROP_TOXIC = "raftwork-drop"         # + "-upstream" / "-downstream"


@dataclass(frozen=True)
class Link:
    """The link between ``dialer`` and ``target`` (node names), carried by proxy ``proxy``."""

    dialer: str
    target: str
    proxy: str
    listen: str     # where the dialer connects: the proxy's listener
    upstream: str   # the target's Raft address
    group: str = "default"  # the Raft group whose link it is (a process hosting several has one link per group)

    @property
    def pair(self) -> frozenset[str]:
        return frozenset((self.dialer, self.target))

    def stream_from(self, sender: str) -> str:
        """Return the Toxiproxy stream that carries data sent by ``sender``."""
        if sender == self.dialer:
            return "upstream"
        if sender == self.target:
            return "downstream"
        raise ValueError(f"{sender} is not an end of link {self.proxy}")


@dataclass(frozen=True)
class HttpLink:
    """Node ``sender`` reaches node ``target``'s HTTP API (to forward to it) through ``proxy``."""

    sender: str
    target: str
    proxy: str
    listen: str     # the proxy's listener: the sender's URL for the target is http://listen
    upstream: str   # the target's HTTP host:port

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    def stream_from(self, node: str) -> str:
        """Return the Toxiproxy stream that carries data sent by ``node``."""
        if node == self.sender:
            return "upstream"
        if node == self.target:
            return "downstream"
        raise ValueError(f"{node} is not an end of link {self.proxy}")


class ProxyAPI:
    """Async calls to one Toxiproxy server (any: embedded or Go), each with a timeout.

    The client is toxiproxy-python's (through ``chaos.toxiproxy.client``), which is synchronous,
    so every call runs in a worker thread, one at a time.
    """

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self._client = Toxiproxy(url, timeout=timeout)
        self._lock = asyncio.Lock()

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            return await asyncio.to_thread(fn, *args, **kwargs)

    async def create(self, name: str, listen: str, upstream: str) -> str:
        """Create (or replace) a proxy; return the address it listens on."""
        def create() -> str:
            if self._client.get_proxy(name) is not None:
                self._client.destroy(name)
            return str(self._client.create(upstream=upstream, name=name, listen=listen).listen)
        return str(await self._call(create))

    async def set_enabled(self, name: str, enabled: bool) -> None:
        def update() -> None:
            proxy = self._client.get_proxy(name)
            if proxy is None:
                raise NotFound(f"proxy {name} is gone".encode())
            proxy.update(enabled=enabled)
        await self._call(update)

    async def add_toxic(self, proxy: str, name: str, type: str, stream: str, attributes: dict[str, int]) -> None:
        """Add a toxic, or update its attributes if one with that name exists."""
        def add() -> None:
            p = self._client.get_proxy(proxy)
            if p is None:
                raise NotFound(f"proxy {proxy} is gone".encode())
            if p.get_toxic(name) is not None:
                p.update_toxic(name, attributes=attributes)
            else:
                p.add_toxic(name=name, type=type, stream=stream, attributes=attributes)
        await self._call(add)

    async def remove_toxic(self, proxy: str, name: str) -> None:
        def remove() -> None:
            p = self._client.get_proxy(proxy)
            if p is not None and p.get_toxic(name) is not None:
                p.destroy_toxic(name)
        await self._call(remove)

    async def heal(self, proxy: str) -> None:
        """Remove every toxic of ``proxy`` and enable it (what ``/reset`` does, for one proxy)."""
        def heal() -> None:
            p = self._client.get_proxy(proxy)
            if p is None:
                return
            for toxic in p.toxics():
                p.destroy_toxic(toxic)
            if not p.enabled:
                p.update(enabled=True)
        await self._call(heal)

    async def state(self, proxy: str) -> dict[str, Any] | None:
        """Return ``{"enabled": bool, "toxics": [names]}`` as the server sees it, or None if absent."""
        def state() -> dict[str, Any] | None:
            p = self._client.get_proxy(proxy)
            if p is None:
                return None
            return {"enabled": bool(p.enabled), "listen": p.listen, "toxics": sorted(p.toxics())}
        result: dict[str, Any] | None = await self._call(state)
        return result

    async def names(self) -> list[str]:
        return list(await self._call(lambda: list(self._client.proxies())))

    async def destroy(self, name: str) -> None:
        def destroy() -> None:
            try:
                self._client.destroy(name)
            except NotFound:
                pass
        await self._call(destroy)

    def close(self) -> None:
        self._client.close()
