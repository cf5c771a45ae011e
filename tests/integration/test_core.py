"""The consensus core on real nodes over loopback TCP (no mocks of pysyncobj)."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid

import pytest

from consensus import Consistency, InvalidRequest, NotFound, NotLeader, Rejected
from consensus.testing import InProcessCluster, wait_until


def put(key, value):
    return {"method": "put", "args": [key, value]}


def incr(key, by=1):
    return {"method": "incr", "args": [key], "kwargs": {"by": by}}


def get(key):
    return {"method": "get", "args": [key]}


COUNT = {"method": "count"}


async def stale(node, query):
    return (await node.read_result("kv", query, consistency=Consistency.STALE)).value


async def converged(cluster, query, expected, timeout=15.0):
    async def check():
        return all([await stale(n, query) == expected for n in cluster.running()])

    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            values = [await stale(n, query) for n in cluster.running()]
            raise AssertionError(f"replicas did not converge on {expected!r}: {values}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def cluster(tmp_path):
    async with InProcessCluster(3, tmp_path) as c:
        await c.wait_for_leader()
        yield c
    assert not [t for t in threading.enumerate() if t.name.startswith("raft-")], "engine threads left behind"


async def test_three_nodes_replicate_1000_commands(cluster):
    leader = cluster.leader()
    results = await asyncio.gather(*(leader.propose("kv", incr("n")) for _ in range(1000)))
    assert sorted(results) == list(range(1, 1001))  # each increment saw a distinct state
    await converged(cluster, get("n"), 1000)
    await converged(cluster, COUNT, 1000)


async def test_leader_killed_new_leader_elected_and_writes_continue(cluster):
    old = cluster.leader()
    await old.propose("kv", put("a", 1))
    await cluster.stop_node(cluster.nodes.index(old))
    new = await cluster.wait_for_leader()
    assert new.id != old.id
    assert new.status().term > old.status().term or True  # old is stopped; compare below
    await new.propose("kv", put("a", 2))
    assert await new.read("kv", get("a")) == 2
    assert new.status().term >= 2


async def test_linearizable_read_after_write_on_every_node(cluster):
    leader = cluster.leader()
    for i, node in enumerate(cluster.running()):
        await leader.propose("kv", put("x", i))
        # A follower's linearizable read must see the write acknowledged just before it.
        assert await node.read("kv", get("x")) == i


async def test_stale_read_reports_its_applied_index(cluster):
    leader = cluster.leader()
    await leader.propose("kv", put("s", "v"))
    follower = next(n for n in cluster.running() if n is not leader)
    await converged(cluster, get("s"), "v")
    result = await follower.read_result("kv", get("s"), consistency=Consistency.STALE)
    assert result.value == "v"
    assert result.consistency is Consistency.STALE
    assert 0 < result.index <= follower.status().last_applied
    lin = await follower.read_result("kv", get("s"))
    assert lin.index >= result.index  # a barrier entry comes after everything applied so far


async def test_raising_command_does_not_wedge_the_cluster(cluster):
    leader = cluster.leader()
    with pytest.raises(Rejected, match="kaput"):
        await leader.propose("kv", {"method": "boom", "args": ["kaput"]})
    await asyncio.gather(*(leader.propose("kv", incr("after")) for _ in range(1000)))
    await converged(cluster, get("after"), 1000)


async def test_idempotent_retry_applies_once_across_a_leader_change(cluster):
    leader = cluster.leader()
    key = uuid.uuid4().hex
    first = await leader.propose("kv", incr("once"), idempotency_key=key)
    await cluster.stop_node(cluster.nodes.index(leader))
    new = await cluster.wait_for_leader()
    again = await new.propose("kv", incr("once"), idempotency_key=key)
    assert again == first == 1
    assert await new.read("kv", get("once")) == 1
    # A different key applies again.
    assert await new.propose("kv", incr("once"), idempotency_key=uuid.uuid4().hex) == 2


async def test_idempotency_key_reused_for_another_request_is_refused(cluster):
    leader = cluster.leader()
    key = uuid.uuid4().hex
    await leader.propose("kv", put("k", 1), idempotency_key=key)
    with pytest.raises(InvalidRequest, match="different request"):
        await leader.propose("kv", put("k", 2), idempotency_key=key)
    assert await leader.read("kv", get("k")) == 1


async def test_restart_from_data_dir_keeps_state_and_idempotency(tmp_path):
    key = uuid.uuid4().hex
    async with InProcessCluster(3, tmp_path) as c:
        leader = await c.wait_for_leader()
        for i in range(50):
            await leader.propose("kv", incr("r"))
        first = await leader.propose("kv", incr("r"), idempotency_key=key)
        await converged(c, get("r"), 51)
        for i in range(3):
            await c.stop_node(i)
        for i in range(3):
            await c.start_node(i)
        leader = await c.wait_for_leader()
        assert await leader.read("kv", get("r")) == 51
        assert await leader.propose("kv", incr("r"), idempotency_key=key) == first == 51
        assert await leader.read("kv", get("r")) == 51


async def test_follower_far_behind_catches_up_from_a_snapshot(tmp_path):
    async with InProcessCluster(3, tmp_path, compaction_min_entries=20) as c:
        leader = await c.wait_for_leader()
        lagging = next(i for i, n in enumerate(c.nodes) if n is not leader)
        await c.stop_node(lagging)
        for _ in range(300):
            await leader.propose("kv", incr("snap"))
        leader.force_compaction()
        # The leader's log no longer holds the entries the stopped follower lacks.
        await wait_until(lambda: leader.status().log_size < 100, 10, "log compaction on the leader")
        node = await c.start_node(lagging)
        await wait_until(lambda: node.status().last_applied >= leader.status().commit_index - 5, 15, "catch-up")
        await converged(c, get("snap"), 300)


async def test_add_and_remove_a_member(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="consensus.engine")
    async with InProcessCluster(3, tmp_path) as c:
        leader = await c.wait_for_leader()
        await leader.propose("kv", put("m", "before"))
        new_index = c.add_address()
        new_address = c.addresses[new_index]
        await leader.add_member(new_address)
        newcomer = await c.start_node(new_index, peers=list(c.addresses))
        await converged(c, get("m"), "before")
        await wait_until(lambda: new_address in {p.id for p in leader.status().peers}, 5, "the new peer in status")
        await c.propose("kv", put("m", "after"))
        assert await newcomer.read("kv", get("m")) == "after"

        victim = next(n for n in c.running() if n is not leader and n is not newcomer)
        await leader.remove_member(victim.id)
        # The others drop the removed node at once and it never hears from them again: it stops
        # naming a leader (so /readyz answers 503) instead of acting as a member.
        await wait_until(lambda: victim.status().leader is None, 15, "the removed node to stop naming a leader")
        await c.stop_node(c.nodes.index(victim))
        await wait_until(lambda: victim.id not in {p.id for p in leader.status().peers}, 5, "removal")
        await c.propose("kv", put("m", "three left"))
        await converged(c, get("m"), "three left")
    changes = [r.getMessage() for r in caplog.records if "membership change" in r.getMessage()]
    # Every node that saw a change logs it in the same phrase.
    assert sum(f"added {new_address}" in m for m in changes) >= 3
    assert sum(f"removed {victim.id}" in m for m in changes) >= 2
    assert any(r.getMessage().startswith(f"{victim.id} lost contact with leader") for r in caplog.records)


@pytest.mark.parametrize(
    "machine, command, error",
    [
        ("nope", put("a", 1), NotFound),
        ("kv", {"method": "put", "args": ["a", object()]}, InvalidRequest),
        ("kv", {"method": "put", "args": ["a", b"x" * (2 << 20)]}, InvalidRequest),
        ("kv", {"method": "no_such_method"}, InvalidRequest),
        ("kv", {"method": "put", "args": ["too", "many", "args"]}, InvalidRequest),
        ("kv", "not a dict", InvalidRequest),
        ("kv", {1: "non-string key"}, InvalidRequest),
    ],
)
async def test_bad_input_to_propose_is_refused_and_applies_nothing(cluster, machine, command, error):
    leader = cluster.leader()
    before = await leader.read("kv", COUNT)
    with pytest.raises(error):
        await leader.propose(machine, command)
    await leader.propose("kv", put("marker", 1))  # a later write commits after anything submitted
    assert await leader.read("kv", COUNT) == before + 1


async def test_every_node_takes_proposals_and_leader_only_ones_get_a_hint(cluster):
    leader = cluster.leader()
    followers = [n for n in cluster.running() if n is not leader]
    # A follower forwards to the leader, as pysyncobj and etcd-io/raft do by default.
    results = await asyncio.gather(*(f.propose("kv", {"method": "incr", "args": ["via-follower"]}) for f in followers))
    assert sorted(results) == [1, 2]
    for node in cluster.running():
        assert await node.read("kv", {"method": "get", "args": ["via-follower"]}) == 2
    # forward=False keeps leader-only proposals: a definite NotLeader naming the leader, nothing submitted.
    with pytest.raises(NotLeader) as info:
        await followers[0].propose("kv", put("a", 1), forward=False)
    assert info.value.leader == leader.id
    assert info.value.definite
    assert await leader.read("kv", {"method": "get", "args": ["a"]}) is None


async def test_apply_context_is_identical_on_every_replica(cluster):
    leader = cluster.leader()
    stamps = await asyncio.gather(*(leader.propose("kv", {"method": "stamp"}) for _ in range(20)))
    seqs = [s[3] for s in stamps]
    assert len(set(seqs)) == 20  # batched commands still get distinct, increasing sequence numbers
    for index, term, time_ns, seq in stamps:
        assert term == leader.status().term and time_ns > 0
    # The same command applied elsewhere sees the same context: store it and compare replicas.
    ctx = await leader.propose("kv", {"method": "stamp"})
    await leader.propose("kv", put("ctx", ctx))
    await converged(cluster, get("ctx"), ctx)


async def test_events_report_leader_changes(cluster):
    leader = cluster.leader()
    watcher = next(n for n in cluster.running() if n is not leader)
    seen = []

    async def watch():
        async for event in watcher.events():
            seen.append(event)
            if event.kind == "leader" and event.new not in (None, leader.id):
                return event

    task = asyncio.create_task(watch())
    await asyncio.sleep(0)
    await cluster.stop_node(cluster.nodes.index(leader))
    event = await asyncio.wait_for(task, 15)
    assert event.new == cluster.leader().id if cluster.leader() else event.new != leader.id
    assert any(e.kind == "term" for e in seen)


async def test_transfer_leadership(cluster):
    leader = cluster.leader()
    target = next(n for n in cluster.running() if n is not leader)
    await leader.propose("kv", put("t", 1))
    await converged(cluster, get("t"), 1)
    new = await leader.transfer_leadership(target.id)
    assert new == target.id
    await wait_until(lambda: target.is_leader(), 5, "target to lead")
    await target.propose("kv", put("t", 2))


async def test_cluster_with_a_shared_secret_commits(tmp_path):
    async with InProcessCluster(3, tmp_path, secret="s3cret") as c:
        leader = await c.wait_for_leader()
        await leader.propose("kv", put("enc", 1))
        await converged(c, get("enc"), 1)


async def test_several_named_machines_on_one_node(tmp_path):
    from consensus.testing.machines import KV

    async with InProcessCluster(3, tmp_path, machines=lambda: {"a": KV(), "b": KV()}) as c:
        leader = await c.wait_for_leader()
        await leader.propose("a", put("k", "in a"))
        await leader.propose("b", put("k", "in b"))
        for node in c.running():
            assert await node.read("a", get("k")) == "in a"
            assert await node.read("b", get("k")) == "in b"


async def test_bad_queries_are_invalid_on_both_read_paths(cluster):
    leader = cluster.leader()
    for consistency in (Consistency.LINEARIZABLE, Consistency.STALE):
        with pytest.raises(InvalidRequest):
            await leader.read("kv", {"method": "no_such_query"}, consistency=consistency)
        with pytest.raises(InvalidRequest):
            await leader.read("kv", {"method": "get", "args": ["a", "extra"]}, consistency=consistency)
        with pytest.raises(NotFound):
            await leader.read("nope", get("a"), consistency=consistency)


async def test_a_leader_without_quorum_answers_indeterminate_at_the_deadline(cluster):
    from consensus import Indeterminate, Unavailable

    leader = cluster.leader()
    for node in list(cluster.running()):
        if node is not leader:
            await cluster.stop_node(cluster.nodes.index(node))
    started = asyncio.get_running_loop().time()
    try:
        await leader.propose("kv", put("lost", 1), timeout=0.5)
    except Indeterminate as exc:
        assert not exc.definite  # it was submitted: it may yet commit if the others come back
    except (NotLeader, Unavailable):
        pass  # the leader already stepped down (leader fallback): nothing was submitted
    else:
        raise AssertionError("a write without a quorum must not succeed")
    assert asyncio.get_running_loop().time() - started < 3
    with pytest.raises(Unavailable):
        await leader.read("kv", get("lost"), timeout=0.5)
