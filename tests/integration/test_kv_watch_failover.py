"""A watch keeps going across a kill -9 of the leader with no gap and no duplicate.

The watcher long-polls round robin over all three nodes (so it also resumes across nodes that
have applied different amounts), the leader is killed mid-stream while a writer keeps writing,
and the events collected must be exactly what a fresh watch from revision 1 on a survivor
returns: the same events in the same order, every acknowledged write among them.
"""

from __future__ import annotations

import asyncio

import pytest

from apps.kv import KVClient
from consensus.errors import Indeterminate
from consensus.testing.local import LocalCluster, plan_nodes

pytestmark = pytest.mark.timeout(240)
WRITES = 60
KILL_AFTER = 20


async def test_a_watch_resumes_across_a_leader_kill_without_gap_or_duplicate(tmp_path):
    async with LocalCluster(plan_nodes(3, tmp_path, apps=("counter", "kv"), extra_args=("--fsync", "never"))) as cluster:
        leader = await cluster.wait_for_leader()
        async with KVClient(cluster.endpoints) as writer, KVClient(cluster.endpoints, timeout=10) as watcher:
            watch = watcher.watch("f/", from_revision=1, poll_ms=500)
            seen: list[tuple[str, str, str | None, int]] = []
            progressed = asyncio.Condition()

            async def collect() -> None:
                async for event in watch:
                    async with progressed:
                        seen.append((event.type, event.key, event.value, event.revision))
                        progressed.notify_all()

            collector = asyncio.ensure_future(collect())
            acknowledged: dict[int, str] = {}
            try:
                for i in range(WRITES):
                    if i == KILL_AFTER:
                        await cluster.kill(leader)
                    try:
                        acknowledged[(await writer.put(f"f/{i % 7}", str(i))).revision] = str(i)
                    except Indeterminate:
                        pass  # may or may not have applied: the comparison below covers both
                last = max(acknowledged)
                async with progressed:
                    await asyncio.wait_for(progressed.wait_for(lambda: seen and seen[-1][3] >= last), 60)
            finally:
                collector.cancel()
                await asyncio.gather(collector, return_exceptions=True)
            assert await cluster.wait_for_leader(other_than=leader) != leader
            survivor = next(n.http for n in cluster.nodes if n.name != leader)
            async with KVClient([survivor]) as fresh:
                again, replay = fresh.watch("f/", from_revision=1), []
                while not replay or replay[-1][3] < seen[-1][3]:  # the survivor may still be applying
                    replay += [(e.type, e.key, e.value, e.revision) for e in await again.poll()]
        assert seen == replay[: len(seen)]  # the same events in the same order: no gap, no duplicate
        assert [r for _, _, _, r in seen] == sorted(r for _, _, _, r in seen)
        assert {r: v for _, _, v, r in seen if r in acknowledged} == acknowledged  # every acknowledged write
        assert len(acknowledged) >= WRITES - 3 and any(r > 0 for r in acknowledged)
