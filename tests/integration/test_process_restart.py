"""Nodes in their own processes: SIGKILL and restart on the same data dir."""

from __future__ import annotations

import asyncio
import time

import pytest

from consensus.testing import ProcessCluster


def incr(key):
    return {"method": "incr", "args": [key]}


async def stale_value(node, key):
    return (await node.read("kv", {"method": "get", "args": [key]}, consistency="stale"))["value"]


async def eventually_equal(node, key, expected, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await stale_value(node, key)
        if value == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{node.address} has {key}={value!r}, expected {expected!r}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def procs(tmp_path):
    async with ProcessCluster(3, tmp_path) as c:
        yield c
    assert all(n.process is None for n in c.nodes)


async def test_sigkilled_follower_restarts_with_its_state_and_catches_up(procs):
    leader = procs.nodes[await procs.leader_index()]
    for _ in range(20):
        await leader.propose("kv", incr("k"))
    follower_index = next(i for i, n in enumerate(procs.nodes) if n is not leader)
    follower = procs.nodes[follower_index]
    await eventually_equal(follower, "k", 20)
    procs.kill(follower_index)
    for _ in range(10):
        await leader.propose("kv", incr("k"))
    await procs.restart(follower_index)
    await eventually_equal(follower, "k", 30)


async def test_sigkilled_leader_is_replaced_and_writes_continue(procs):
    old = await procs.leader_index()
    await procs.nodes[old].propose("kv", incr("w"))
    procs.kill(old)
    started = time.monotonic()
    new = None
    while new is None or new == old:
        survivors = [i for i in range(3) if i != old]
        statuses = [await procs.nodes[i].status() for i in survivors]
        leaders = [survivors[j] for j, s in enumerate(statuses) if s["role"] == "leader"]
        new = leaders[0] if leaders else None
        assert time.monotonic() - started < 15, "no new leader after SIGKILL of the old one"
        await asyncio.sleep(0.05)
    assert await procs.nodes[new].propose("kv", incr("w")) == 2


async def test_whole_cluster_sigkilled_and_restarted_keeps_state(procs):
    leader = procs.nodes[await procs.leader_index()]
    for _ in range(25):
        await leader.propose("kv", incr("all"))
    for i in range(3):
        procs.kill(i)
    for i in range(3):
        await procs.restart(i)
    leader = procs.nodes[await procs.leader_index(timeout=20)]
    assert (await leader.read("kv", {"method": "get", "args": ["all"]}))["value"] == 25
    assert await leader.propose("kv", incr("all")) == 26
