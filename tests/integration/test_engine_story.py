"""Engine safety on real clusters (loopback TCP, real pysyncobj, real disks).

The simulation (tests/sim) proves the rules over thousands of schedules; these tests tell the
same stories with real threads, sockets and files:

- the restart-during-leader-change story that made pysyncobj delete entries it had acknowledged
  (its CRITICAL "truncating already-applied log entries"): no CRITICAL line, every replica ends in
  the same state, no acknowledged increment lost or doubled;
- a follower cut off for several election timeouts rejoins without raising the term (pre-vote);
- a forwarded request cut off in flight is failed and leaves nothing in flight;
- a node whose disk fills up stops voting and appending, says so, and recovers when space returns.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import uuid

import pytest

from consensus import Consistency
from consensus.engine import clear_dial_route
from consensus.errors import ConsensusError, Indeterminate
from consensus.testing import InProcessCluster, free_ports, wait_until

from tests.integration.test_dial_routes import Forwarder


def _criticals(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.CRITICAL]


async def _increment_until_done(cluster, key: str, attempts: int = 40) -> bool:
    """One logical increment, retried under one idempotency key; True once it is known applied."""
    idem = uuid.uuid4().hex
    for _ in range(attempts):
        node = cluster.leader() or next(iter(cluster.running()), None)
        if node is None:
            return False
        try:
            await node.propose("kv", {"method": "incr", "args": [key]}, idempotency_key=idem, timeout=2.0)
            return True
        except ConsensusError:
            await asyncio.sleep(0.05)
    return False


async def _transfer_under_writes(cluster, attempts: int = 10) -> None:
    for _ in range(attempts):
        leader = cluster.leader()
        try:
            if leader is not None:
                await leader.transfer_leadership()
                return
        except ConsensusError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("leadership never moved under writes")


async def test_follower_restarted_while_leadership_moves_loses_and_doubles_nothing(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    async with InProcessCluster(3, tmp_path) as cluster:
        leader = await cluster.wait_for_leader()
        follower_index = next(i for i, n in enumerate(cluster.nodes) if n is not leader)
        await cluster.stop_node(follower_index)
        for start in range(0, 3000, 10):  # 3,000 writes (hundreds of entries) the follower misses
            await asyncio.gather(*(leader.propose("kv", {"method": "put", "args": [f"fill{start + i}", i]})
                                   for i in range(10)))
        missed = leader.status().commit_index
        acked: dict[str, int] = {}
        unknown: dict[str, int] = {}
        stop = asyncio.Event()

        async def writer(w: int) -> None:
            key = f"w{w}"
            while not stop.is_set():
                if await _increment_until_done(cluster, key):
                    acked[key] = acked.get(key, 0) + 1
                else:
                    unknown[key] = unknown.get(key, 0) + 1

        writers = [asyncio.create_task(writer(w)) for w in range(8)]
        await asyncio.sleep(0.3)
        await _transfer_under_writes(cluster)
        await cluster.start_node(follower_index)
        await wait_until(lambda: cluster.nodes[follower_index].status().last_applied >= missed, 30,
                         "the restarted follower to catch up")
        await asyncio.sleep(1.0)  # writers keep going on the new leader with the follower back
        stop.set()
        await asyncio.gather(*writers)
        final = await cluster.wait_for_leader()
        await final.propose("kv", {"method": "put", "args": ["end", 1]})
        target = final.status().last_applied
        for node in cluster.running():
            await wait_until(lambda n=node: n.status().last_applied >= target, 15, f"{node.id} to apply everything")
        digests = {await node.state_digest() for node in cluster.running()}
        assert len({d for _, d in digests}) == 1, digests
        for w in range(8):
            key = f"w{w}"
            value = await final.read("kv", {"method": "get", "args": [key]}) or 0
            assert acked.get(key, 0) <= value <= acked.get(key, 0) + unknown.get(key, 0), (key, value, acked, unknown)
        assert sum(acked.values()) > 0
    assert _criticals(caplog) == []


async def test_a_follower_cut_off_for_several_election_timeouts_rejoins_without_raising_the_term(tmp_path):
    ports = sorted(free_ports(3))
    addresses = [f"127.0.0.1:{p}" for p in ports]
    isolated = addresses[0]  # the smallest address never dials: every link to it is dialed to it
    forwarder = Forwarder(ports[0])
    proxy_port = await forwarder.start()
    cluster = InProcessCluster(3, tmp_path, dial_routes={isolated: ("127.0.0.1", proxy_port)})
    cluster.addresses = addresses
    try:
        await cluster.start()
        await cluster.wait_for_leader()
        if cluster.leader().id == isolated:
            await cluster.leader().transfer_leadership()
        leader = await wait_until(lambda: cluster.leader() if cluster.leader() and cluster.leader().id != isolated else None,
                                  15, "a leader other than the node to isolate")
        term = leader.status().term
        forwarder.cut_all()
        for i in range(30):  # about 4 s: several election timeouts of the isolated node
            await leader.propose("kv", {"method": "put", "args": ["during", i]})
            await asyncio.sleep(0.12)
        forwarder.heal()
        isolated_node = cluster.nodes[0]
        await wait_until(lambda: isolated_node.status().last_applied >= leader.status().commit_index, 15,
                         "the isolated node to catch up")
        assert cluster.leader() is leader
        assert leader.status().term == term, "the rejoining node forced an election"
        assert isolated_node.status().term == term
    finally:
        await cluster.stop()
        await forwarder.stop()
        clear_dial_route(isolated)


async def test_a_forwarded_read_cut_off_in_flight_leaves_nothing_in_flight(tmp_path):
    ports = sorted(free_ports(3))
    addresses = [f"127.0.0.1:{p}" for p in ports]
    isolated = addresses[0]
    forwarder = Forwarder(ports[0])
    proxy_port = await forwarder.start()
    cluster = InProcessCluster(3, tmp_path, dial_routes={isolated: ("127.0.0.1", proxy_port)})
    cluster.addresses = addresses
    try:
        await cluster.start()
        await cluster.wait_for_leader()
        if cluster.leader().id == isolated:
            await cluster.leader().transfer_leadership()
        await wait_until(lambda: cluster.leader() and cluster.leader().id != isolated, 15, "a leader elsewhere")
        node = cluster.nodes[0]
        await node.propose("kv", {"method": "put", "args": ["k", 1]})  # through the leader: forwarded
        pending = [asyncio.create_task(node.propose("kv", {"method": "incr", "args": ["n"]}, timeout=1.0)),
                   asyncio.create_task(node.read("kv", {"method": "get", "args": ["k"]}, timeout=1.0))]
        await asyncio.sleep(0)
        forwarder.cut_all()
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        for outcome in outcomes:
            assert not isinstance(outcome, ConsensusError) or not outcome.definite or outcome.code != "internal"
        assert node._in_flight_batches == {}  # nothing is left waiting for a callback that may never come
        forwarder.heal()

        def linked_to_leader():
            status = node.status()
            return any(p.id == status.leader and p.connected for p in status.peers)

        await wait_until(linked_to_leader, 15, "the node to reach the leader again")
        results = await asyncio.gather(*(node.propose("kv", {"method": "incr", "args": ["after"]}) for _ in range(20)))
        assert sorted(results) == list(range(1, 21))
        assert await node.read("kv", {"method": "get", "args": ["after"]}) == 20
        assert await node.read("kv", {"method": "get", "args": ["after"]}, consistency=Consistency.STALE) == 20
    finally:
        await cluster.stop()
        await forwarder.stop()
        clear_dial_route(isolated)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs we can fill up (needs root and mount; skipped where it cannot be made)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(path) -> None:
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


async def test_a_node_whose_disk_fills_stops_voting_and_appending_and_recovers(tmp_path, small_disk, caplog):
    caplog.set_level(logging.ERROR, logger="consensus.engine")
    data = tmp_path / "cluster"
    data.mkdir()
    (data / "n2").symlink_to(small_disk)  # the second node keeps its journal on the small disk
    async with InProcessCluster(3, data) as cluster:
        await cluster.wait_for_leader()
        victim = cluster.nodes[1]
        if victim.is_leader():
            await victim.transfer_leadership()
        await wait_until(lambda: cluster.leader() is not None and cluster.leader() is not victim, 15, "another leader")
        _fill(small_disk / "filler")
        for i in range(300):  # the victim's appends soon fail; the majority keeps committing
            await cluster.propose("kv", {"method": "put", "args": [f"k{i}", "x" * 500]})
            if not victim.status().healthy:
                break
        await wait_until(lambda: not victim.status().healthy, 15, "the victim to report it cannot persist")
        assert "journal" in (victim.status().problem or "")
        assert any("cannot write its journal" in r.getMessage() for r in caplog.records)
        assert cluster.leader() is not victim
        os.remove(small_disk / "filler")
        await wait_until(lambda: victim.status().healthy, 15, "the victim to recover")
        await cluster.propose("kv", {"method": "put", "args": ["after", 1]})
        await wait_until(lambda: victim.status().last_applied >= cluster.leader().status().commit_index, 15,
                         "the victim to catch up after the disk recovered")
