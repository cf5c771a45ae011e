"""Each nemesis package against a real 3-node cluster: start, stop, start again, final heal."""

from __future__ import annotations

import random

import pytest

from chaos.cluster import pid_alive
from chaos.nemesis import NemesisOp, make_nemesis
from chaos.pytest_plugin import cluster  # noqa: F401
from tests.integration.chaos_helpers import caught_up, incr

CLEAN = {"cut": [], "one_way": [], "slow": [], "paused": [], "killed": []}


async def check_started(c, op, name):
    """Assert the fault an op reports is what the cluster (and Toxiproxy) has now."""
    faults, value = c.faults, op.value
    if op.f == "start-partition":
        assert faults["cut"] == value["cut"]
        assert faults["one_way"] == value.get("one_way", [])
        assert faults["cut"] or faults["one_way"]
        for a, b in faults["cut"]:
            assert (await c.link_state(a, b))["enabled"] is False
        for sender, receiver in faults["one_way"]:
            stream = c.link(sender, receiver).stream_from(sender)
            assert f"raftwork-drop-{stream}" in (await c.link_state(sender, receiver))["toxics"]
            assert "raftwork-drop-upstream" in (await c.http_link_state(sender, receiver))["toxics"]
    elif op.f == "kill":
        assert faults["killed"] == sorted(value["nodes"]) and value["nodes"]
        assert all(c.node(n).pid is None for n in value["nodes"])
    elif op.f == "pause":
        assert faults["paused"] == sorted(value["nodes"]) and value["nodes"]
    elif op.f == "restart-follower":
        assert value["follower"] not in (value["leader"], value["transfer_to"]) and value["entries"] > 0
        assert value["new_leader"] == value["transfer_to"] and faults == CLEAN
        assert c.node(value["follower"]).pid is not None
    elif op.f == "start-latency":
        assert faults["slow"] and all(set(s["link"]) & set(value["nodes"]) for s in faults["slow"])
        a, b = faults["slow"][0]["link"]
        assert {"raftwork-latency-upstream", "raftwork-latency-downstream"} <= set((await c.link_state(a, b))["toxics"])
    else:
        assert name == "none" and faults == CLEAN, op


OPTIONS = {"restart-follower": {"entries": 300}}  # the default 2000 entries take too long for the suite


@pytest.mark.parametrize("name", ["none", "partition", "one-way", "kill", "kill-majority", "pause", "latency",
                                  "restart-follower", "all"])
async def test_nemesis_start_stop_and_final_heal(cluster, name):
    c = await cluster(n=3)
    nemesis = make_nemesis(name, **OPTIONS.get(name, {}))
    rng = random.Random(7)

    op = await nemesis.start(c, rng)
    assert isinstance(op.f, str)
    if name == "kill-majority":
        assert len(op.value["nodes"]) == 2 and op.value["target"] == "majority"
    await check_started(c, op, name)
    stopped = await nemesis.stop(c)
    assert isinstance(stopped.f, str)
    assert c.faults == CLEAN, (op, stopped)

    await nemesis.start(c, rng)  # the final heal must undo a fault that was never stopped
    await nemesis.heal(c)
    await nemesis.heal(c)        # and is safe to call again
    assert c.faults == CLEAN
    for link in c.links:
        assert await c.link_state(link.dialer, link.target) == {"enabled": True, "listen": link.listen, "toxics": []}
    for hl in c.http_links:
        assert await c.http_link_state(hl.sender, hl.target) == {"enabled": True, "listen": hl.listen, "toxics": []}
    assert all(node.pid is not None and pid_alive(node.pid) for node in c.nodes)
    value = await incr(c, timeout=20)
    for node in c.names:
        await caught_up(c, node, value)


async def test_kill_leader_falls_back_to_any_node_without_a_leader(cluster):
    c = await cluster(n=3)
    leader = await c.wait_for_leader()
    op = await make_nemesis("kill-leader").start(c, random.Random(1))
    assert op == NemesisOp("kill", {"target": "leader", "nodes": [leader]})
    await c.partition([[n] for n in c.names])  # nobody can lead now
    pause = make_nemesis("pause-leader")

    async def no_leader():
        return await c.leader() is None

    from tests.integration.chaos_helpers import eventually
    await eventually(no_leader, 15, "the leader to be gone")
    op = await pause.start(c, random.Random(1))
    assert op.value["target"] == "one" and len(op.value["nodes"]) == 1
    await pause.heal(c)
    await make_nemesis("kill").heal(c)  # restarts the killed leader
    await c.heal()
    assert c.faults == CLEAN
    await c.wait_for_leader()
