"""Load: 200 concurrent connections while toxics are added, updated and removed; nothing hangs or leaks."""

from __future__ import annotations

import asyncio
import os
import random

import aiohttp
import pytest

from chaos.toxiproxy import ToxiproxyServer
from chaos.toxiproxy.testing import EchoUpstream, async_wait_until

pytestmark = pytest.mark.timeout(60)

CONNECTIONS = 200
ROUNDS = 20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def client_session(addr: tuple[str, int], seed: int, stop: asyncio.Event) -> int:
    """Send random-sized messages and check each comes back intact; return the round trips done."""
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection(*addr)
    done = 0
    try:
        while not stop.is_set() or done < ROUNDS:
            message = rng.randbytes(rng.randint(1, 8_000))
            writer.write(message)
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(len(message)), 20) == message
            done += 1
    finally:
        writer.close()
    return done


async def test_200_connections_with_toxic_churn_no_hang_no_leak() -> None:
    baseline_fds = open_fds()
    baseline_tasks = len(asyncio.all_tasks())
    upstream = await EchoUpstream().start()
    server = ToxiproxyServer("127.0.0.1", 0, seed=7)
    await server.start()
    clients: list[asyncio.Task[int]] = []
    try:
        proxy = await server.create_proxy("load", "127.0.0.1:0", upstream.address)
        host, port = proxy.listen.rsplit(":", 1)
        stop = asyncio.Event()
        clients += [asyncio.create_task(client_session((host, int(port)), i, stop)) for i in range(CONNECTIONS)]
        async with aiohttp.ClientSession() as http:
            async def call(method: str, path: str, body: object = None) -> int:
                async with http.request(method, server.url + path, json=body) as resp:
                    await resp.read()
                    return resp.status

            assert await async_wait_until(lambda: len(proxy.connections) == CONNECTIONS, timeout=20)
            toxics = [
                ("latency", {"latency": 5, "jitter": 5}),
                ("slicer", {"average_size": 500, "size_variation": 100, "delay": 10}),
                ("bandwidth", {"rate": 100_000}),
                ("noop", {}),
                ("limit_data", {"bytes": 10**12}),
            ]
            rng = random.Random(3)
            for step in range(30):
                type_, attrs = rng.choice(toxics)
                name = f"{type_}{step}"
                stream = rng.choice(["upstream", "downstream"])
                assert await call("POST", "/proxies/load/toxics",
                                  {"name": name, "type": type_, "stream": stream, "attributes": attrs}) == 200
                await asyncio.sleep(0.02)
                if type_ == "latency":
                    assert await call("PATCH", f"/proxies/load/toxics/{name}", {"attributes": {"latency": 1}}) == 200
                if rng.random() < 0.6:
                    assert await call("DELETE", f"/proxies/load/toxics/{name}") == 204
            assert await call("POST", "/reset") == 204
        stop.set()
        rounds = await asyncio.wait_for(asyncio.gather(*clients), 40)
        assert all(r >= ROUNDS for r in rounds)
        assert await async_wait_until(lambda: not proxy.connections, timeout=10)
        assert not proxy._tasks  # every stage task was cancelled or finished
    finally:
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        await server.stop()
        await upstream.stop()
    assert await async_wait_until(lambda: len(asyncio.all_tasks()) <= baseline_tasks, timeout=5)
    assert await async_wait_until(lambda: open_fds() <= baseline_fds, timeout=5), (open_fds(), baseline_fds)
