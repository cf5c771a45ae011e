"""A short soak: the `all` nemesis cycles while a client increments; nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import random

import pytest

from chaos.nemesis import make_nemesis
from chaos.pytest_plugin import cluster  # noqa: F401
from consensus.errors import ConsensusError
from tests.integration.chaos_helpers import caught_up


@pytest.mark.slow
async def test_all_nemesis_cycles_and_acknowledged_increments_survive(cluster):
    c = await cluster(n=3)
    nemesis = make_nemesis("all")
    rng = random.Random(2026)
    ok = unknown = 0
    ops: list[dict] = []
    done = asyncio.Event()

    async def writer() -> None:
        nonlocal ok, unknown
        async with c.client(timeout=2.0) as client:
            while not done.is_set():
                try:
                    await client.request("POST", "/v1/counters/soak/incr", body={"by": 1}, write=True)
                    ok += 1
                except ConsensusError as exc:
                    unknown += 0 if exc.definite else 1

    task = asyncio.create_task(writer())
    try:
        for _ in range(12):
            ops.append(await nemesis.start(c, rng))
            await asyncio.sleep(1.0)  # hold the fault while the writer runs
            ops.append(await nemesis.stop(c))
            await asyncio.sleep(1.0)
    finally:
        done.set()
        await task
        await nemesis.heal(c)
    assert c.faults == {"cut": [], "one_way": [], "slow": [], "paused": [], "killed": []}
    assert ok > 0, ops
    leader = await c.wait_for_leader(30)
    async with c.client() as client:
        final = (await client.request("GET", "/v1/counters/soak")).body["value"]
    assert ok <= final <= ok + unknown, (ok, unknown, final, ops)
    for name in c.names:
        await caught_up(c, name, final, key="soak", timeout=30)
    print(f"leader {leader}; {ok} ok, {unknown} unknown, final {final}; faults: {[op['f'] for op in ops]}")
