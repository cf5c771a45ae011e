"""Waiting for applies and leader time entries: what lease-holding apps stand on."""

from __future__ import annotations

import asyncio

from consensus import Consistency
from consensus.testing import InProcessCluster

from tests.unit.test_dispatch import Leases


def _machines():
    return {"leases": Leases()}


async def test_wait_for_apply_wakes_on_an_apply_not_on_a_poll(tmp_path):
    async with InProcessCluster(3, tmp_path, machines=_machines) as cluster:
        leader = await cluster.wait_for_leader()
        follower = next(n for n in cluster.running() if n is not leader)
        start = follower.status().last_applied
        waiter = asyncio.create_task(follower.wait_for_apply(start, timeout=10.0))
        await asyncio.sleep(0)  # the waiter is parked before anything is proposed
        assert not waiter.done()
        await leader.propose("leases", {"name": "x", "ttl": 60 * 10**9})
        applied = await asyncio.wait_for(waiter, 5.0)
        assert applied > start
        # Past an index already applied it answers at once; at a deadline it returns unchanged.
        assert await follower.wait_for_apply(start, timeout=0) >= applied
        now = follower.status().last_applied
        assert await follower.wait_for_apply(now + 10**6, timeout=0.05) < now + 10**6


async def test_the_leader_moves_time_while_a_machine_wants_it(tmp_path):
    async with InProcessCluster(3, tmp_path, machines=_machines, time_granularity=0.05) as cluster:
        leader = await cluster.wait_for_leader()
        await leader.propose("leases", {"name": "short", "ttl": 300 * 10**6})  # 0.3 s of leader time
        follower = next(n for n in cluster.running() if n is not leader)
        # Nobody writes again: only the leader's time entries can expire the lease, on every node.
        for node in (leader, follower):
            deadline = asyncio.get_running_loop().time() + 10
            while await node.read("leases", {}, consistency=Consistency.STALE) != []:
                index = node.status().last_applied
                await node.wait_for_apply(index, timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
                assert asyncio.get_running_loop().time() < deadline, "the lease never expired"
        # With nothing left to expire the leader stops appending time entries.
        quiet = leader.status().last_applied
        assert await leader.wait_for_apply(quiet, timeout=0.5) == quiet


async def test_replicas_that_applied_the_same_log_report_the_same_digest(tmp_path):
    from consensus.testing.machines import default_machines

    async with InProcessCluster(3, tmp_path, machines=default_machines) as cluster:
        leader = await cluster.wait_for_leader()
        for i in range(20):
            await leader.propose("kv", {"method": "put", "args": [f"k{i}", i]})
        target = leader.status().last_applied
        for node in cluster.running():
            await node.wait_for_apply(target - 1, timeout=5.0)
        digests = {await node.state_digest() for node in cluster.running()}
        assert len(digests) == 1 and next(iter(digests))[0] == target
        # A different state has a different digest.
        await leader.propose("kv", {"method": "put", "args": ["k0", "changed"]})
        assert (await leader.state_digest())[1] != next(iter(digests))[1]


async def test_a_proxy_command_retried_with_its_key_applies_once(tmp_path):
    from consensus.testing.machines import default_machines

    async with InProcessCluster(1, tmp_path, machines=default_machines) as cluster:
        leader = await cluster.wait_for_leader()
        kv = leader.machine("kv")
        assert await kv.incr("n", idempotency_key="retry-1") == 1
        assert await kv.incr("n", idempotency_key="retry-1") == 1  # the retry gets the first result
        assert await kv.incr("n") == 2
        assert await kv.get("n") == 2
