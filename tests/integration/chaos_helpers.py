"""Small helpers for the chaos cluster tests: writes through the client, per-node reads, polls."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import aiohttp

from chaos.cluster import ChaosCluster


async def incr(c: ChaosCluster, key: str = "a", by: int = 1, timeout: float = 10.0, via: list[str] | None = None) -> int:
    """Add ``by`` to counter ``key`` through a client over every endpoint (or the nodes ``via``);
    return the new value."""
    from consensus.client import Client

    endpoints = c.endpoints if via is None else [c.node(n).http for n in via]
    async with Client(endpoints, timeout=timeout, token=c.token) as client:
        response = await client.request("POST", f"/v1/counters/{key}/incr", body={"by": by}, write=True)
    return int(response.body["value"])


async def stale_value(c: ChaosCluster, name: str, key: str = "a") -> int | None:
    """Read ``key`` from node ``name``'s own state (no leader involved), or None if it does not answer."""
    url = f"{c.node(name).http}/v1/counters/{key}?consistency=stale"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                return int((await r.json())["value"]) if r.status == 200 else None
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Poll an async ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


async def caught_up(c: ChaosCluster, name: str, value: int, key: str = "a", timeout: float = 20.0) -> None:
    async def check() -> bool:
        return await stale_value(c, name, key) == value
    await eventually(check, timeout, f"{name} to see {key}={value}")
