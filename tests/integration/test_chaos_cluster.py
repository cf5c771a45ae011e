"""ChaosCluster against real `consensus serve` processes and real Toxiproxy API traffic."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time

import pytest

from chaos.cluster import ChaosCluster, pid_alive
from chaos.pytest_plugin import cluster  # noqa: F401  (the fixture, also before `pip install -e .`)
from chaos.toxiproxy import BackgroundServer
from chaos.toxiproxy.client import Toxiproxy
from tests.integration.chaos_helpers import caught_up, eventually, incr, stale_value


def refuses(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


async def test_start_and_stop_leave_no_process_and_no_proxy(tmp_path):
    with BackgroundServer() as toxiproxy, Toxiproxy(toxiproxy.url) as api:
        c = ChaosCluster(n=3, data_dir=tmp_path, toxiproxy_url=toxiproxy.url, proxy_prefix="t1-")
        try:
            await c.start()
            pids = [node.pid for node in c.nodes]
            assert all(pid is not None and pid_alive(pid) for pid in pids)
            assert c.names == ["n1", "n2", "n3"]
            assert c.endpoints == [node.http for node in c.nodes]
            # One Raft proxy per pair, named dialer->target; the dialer's Raft address string is the greater.
            # One forwarding proxy per ordered pair: each node's view of the others' HTTP URLs.
            proxies = api.proxies()
            assert len(proxies) == 3 + 6 and len(c.links) == 3 and len(c.http_links) == 6
            for link in c.links:
                assert link.proxy == f"t1-{link.dialer}->{link.target}"
                assert c.node(link.dialer).raft > c.node(link.target).raft
                assert proxies[link.proxy].upstream == c.node(link.target).raft
                assert f"{link.upstream}={link.listen}" in " ".join(c.local.procs[link.dialer].argv)
            for hl in c.http_links:
                assert hl.proxy == f"t1-http-{hl.sender}->{hl.target}"
                assert "http://" + proxies[hl.proxy].upstream == c.node(hl.target).http
                argv = c.local.procs[hl.sender].argv
                # Forwarding takes the proxy; --peers keeps the real URL (what clients are told).
                assert f"{c.node(hl.target).raft}={hl.url}" in argv
                assert f"{c.node(hl.target).raft}={c.node(hl.target).http}" in argv[argv.index("--peers") + 1]
            assert await incr(c) == 1
            assert c.faults == {"cut": [], "one_way": [], "slow": [], "paused": [], "killed": []}
        finally:
            await c.stop()
        assert not any(pid_alive(pid) for pid in pids)
        assert api.proxies() == {}
        assert all(node.pid is None for node in c.nodes)
        await c.stop()  # idempotent
        for node in c.nodes:
            assert "serving HTTP" in node.log.read_text()  # logs are kept


async def test_fixture_stops_embedded_toxiproxy_and_nodes(cluster, tmp_path):
    c = await cluster(n=3)
    pids = [node.pid for node in c.nodes]
    url = c.toxiproxy
    assert str(c.data_dir).startswith(str(tmp_path))
    assert Toxiproxy(url).running()
    await c.pause("n2")          # stop() must cope with a paused node and a cut link
    await c.cut("n1", "n3")
    await c.stop()
    assert not any(pid_alive(pid) for pid in pids)
    assert not Toxiproxy(url).running()


async def test_kill_and_restart_catches_up(cluster):
    c = await cluster(n=3)
    leader = await c.wait_for_leader()
    victim = next(name for name in c.names if name != leader)
    old_pid = c.node(victim).pid
    await c.kill(victim)
    assert not pid_alive(old_pid) and c.node(victim).pid is None
    assert c.faults["killed"] == [victim]
    for _ in range(5):
        value = await incr(c)
    assert await stale_value(c, victim) is None
    await c.restart(victim)
    assert c.node(victim).pid not in (None, old_pid)
    assert c.faults["killed"] == []
    await caught_up(c, victim, value)


async def test_pause_and_resume(cluster):
    c = await cluster(n=3)
    leader = await c.wait_for_leader()
    victim = next(name for name in c.names if name != leader)
    await c.pause(victim)
    assert await c.status(victim) is None and c.faults["paused"] == [victim]
    # A paused node accepts TCP connections but never answers: ask the others.
    value = await incr(c, via=[n for n in c.names if n != victim])  # the other two still commit
    await c.heal()         # resumes it
    assert c.faults["paused"] == []
    await caught_up(c, victim, value)


async def test_isolated_leader_steps_down_majority_elects_and_commits_then_heal_catches_up(cluster):
    c = await cluster(n=3)
    old = await c.wait_for_leader()
    before = await incr(c)
    started = time.monotonic()
    await c.isolate(old)
    rest = [n for n in c.names if n != old]
    assert c.faults["cut"] == sorted(sorted([old, n]) for n in rest)
    for n in rest:
        assert refuses(c.link(old, n).listen)  # a disabled proxy refuses new connections
        assert refuses(c.http_links_of(old, n)[0].listen) and refuses(c.http_links_of(old, n)[1].listen)

    async def new_leader() -> str | None:
        leader = await c.leader()
        return leader if leader in rest else None

    new = await eventually(new_leader, 15, "a leader in the majority")
    elected = time.monotonic() - started

    async def stepped_down() -> bool:
        status = await c.status(old)
        return status is not None and status["role"] != "leader"

    await eventually(stepped_down, 10, f"isolated {old} to step down")  # leaderFallbackTimeout 1.5 s
    for _ in range(5):
        after = await incr(c)
    assert after == before + 5
    assert await stale_value(c, old) == before  # the minority saw none of it
    await c.heal()
    assert c.faults["cut"] == []
    await caught_up(c, old, after)
    assert await c.wait_for_leader() in c.names
    print(f"new leader {new} elected {elected:.2f}s after isolating {old}")


async def test_five_nodes_leader_in_a_two_node_minority(cluster):
    c = await cluster(n=5)
    old = await c.wait_for_leader()
    before = await incr(c)
    minority = [old, next(n for n in c.names if n != old)]
    majority = [n for n in c.names if n not in minority]
    await c.partition([minority, majority])
    assert len(c.faults["cut"]) == 6  # 2 x 3 links between the sides

    async def majority_leader() -> str | None:
        leader = await c.leader()
        return leader if leader in majority else None

    await eventually(majority_leader, 15, "a leader in the majority")

    async def minority_leaderless() -> bool:
        statuses = [await c.status(n) for n in minority]
        return all(s is not None and s["role"] != "leader" for s in statuses)

    await eventually(minority_leaderless, 10, "the minority's leader to step down")
    after = await incr(c, via=majority, timeout=20)
    assert after == before + 1
    assert [await stale_value(c, n) for n in minority] == [before, before]
    await c.heal()
    for n in minority:
        await caught_up(c, n, after)


async def test_one_way_loss_from_the_leader_gets_it_replaced(cluster):
    c = await cluster(n=3)
    old = await c.wait_for_leader()
    rest = [n for n in c.names if n != old]
    await c.apply_grudge({n: [old] for n in rest})  # nobody hears the leader; it hears everybody
    assert c.faults["one_way"] == [[old, n] for n in rest] and c.faults["cut"] == []
    link = c.link(old, rest[0])
    assert (await c.link_state(old, rest[0]))["toxics"] == [f"raftwork-drop-{link.stream_from(old)}"]
    # What the old leader sends is lost on the forwarding links too: its requests, and its answers.
    assert (await c.http_link_state(old, rest[0]))["toxics"] == ["raftwork-drop-upstream"]
    assert (await c.http_link_state(rest[0], old))["toxics"] == ["raftwork-drop-downstream"]

    async def new_leader() -> str | None:
        leader = await c.leader()
        return leader if leader in rest else None

    await eventually(new_leader, 15, "the others to elect a leader")
    value = await incr(c, via=rest, timeout=20)
    await c.uncut(old, rest[0])
    await c.uncut(old, rest[1])
    assert c.faults["one_way"] == [] and (await c.link_state(old, rest[0]))["toxics"] == []
    await caught_up(c, old, value)


async def test_partition_groups_cut_only_links_between_groups(cluster):
    c = await cluster(n=3)
    await c.partition([["n1"], ["n2"]])  # n3 is not listed: it forms its own group
    assert c.faults["cut"] == [["n1", "n2"], ["n1", "n3"], ["n2", "n3"]]
    await c.partition([["n1", "n2"]])    # replaces: n3 alone, n1-n2 restored
    assert c.faults["cut"] == [["n1", "n3"], ["n2", "n3"]]
    assert [(await c.link_state(a, b))["enabled"] for a, b in [("n1", "n2"), ("n1", "n3"), ("n2", "n3")]] == \
        [True, False, False]
    with pytest.raises(ValueError, match="unknown node"):
        await c.partition([["n9"]])
    with pytest.raises(ValueError, match="two groups"):
        await c.partition([["n1"], ["n1", "n2"]])
    await c.heal()
    for a, b in [("n1", "n2"), ("n1", "n3"), ("n2", "n3")]:
        assert await c.link_state(a, b) == {"enabled": True, "listen": c.link(a, b).listen, "toxics": []}


async def test_cut_one_link_the_cluster_still_commits(cluster):
    c = await cluster(n=3)
    leader = await c.wait_for_leader()
    other = next(n for n in c.names if n != leader)
    await c.cut(leader, other)
    assert c.faults["cut"] == [sorted([leader, other])]
    assert refuses(c.link(leader, other).listen)
    value = await incr(c, timeout=20)  # the third node still links both
    await c.uncut(leader, other)
    assert c.faults["cut"] == []
    for name in c.names:
        await caught_up(c, name, value)


async def test_latency_slows_a_write_and_heal_restores_speed(cluster):
    c = await cluster(n=3)
    await c.wait_for_leader()
    await incr(c)

    async def median_write() -> float:
        times = []
        for _ in range(3):
            t = time.monotonic()
            await incr(c, timeout=20)
            times.append(time.monotonic() - t)
        return statistics.median(times)

    await c.slow(150)
    assert len(c.faults["slow"]) == 3
    slow = await median_write()
    # A commit needs a round trip leader -> follower -> leader: 2 x 150 ms at least.
    assert slow >= 0.28, slow
    await c.heal()
    assert c.faults["slow"] == []
    fast = await median_write()
    assert fast < slow / 2, (fast, slow)


async def test_restart_of_a_running_node_is_refused_and_unknown_names_are_errors(cluster):
    c = await cluster(n=1)
    assert await c.wait_for_leader() == "n1"
    with pytest.raises(Exception, match="running"):
        await c.restart("n1")
    with pytest.raises(ValueError, match="unknown node"):
        await c.kill("n7")
    assert c.links == []


async def test_a_partitioned_follower_cannot_commit_through_the_leader(cluster):
    """A partition cuts a node off completely: its forwarding to the leader too (DESIGN section 7)."""
    import aiohttp

    c = await cluster(n=3)
    leader = await c.wait_for_leader()
    follower = next(n for n in c.names if n != leader)
    before = await incr(c, via=[follower])  # healed: the follower forwards to the leader
    await c.isolate(follower)
    for n in c.names:
        if n != follower:
            assert not (await c.http_link_state(follower, n))["enabled"]
    # Asked directly (a client would follow the leader hint to the leader's own URL, as it should):
    # the follower neither forwards it nor commits it by itself.
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{c.node(follower).http}/v1/counters/a/incr", json={"by": 1},
                             headers={"X-Request-Timeout": "3"}) as r:
            assert r.status in (503, 504), await r.text()
    await c.heal()
    assert await incr(c, via=[follower], timeout=20) >= before + 1


async def test_nodes_tell_clients_real_urls_while_forwarding_takes_the_proxy(cluster):
    """Clients reach every node directly (Jepsen's control node): the leader hints a follower gives
    them name the leader's own URL, never the follower's node-to-node proxy; the follower's own
    forwarding still crosses that proxy, so disabling it stops forwarding but no client."""
    import aiohttp

    c = await cluster(n=3)
    leader = await c.wait_for_leader()
    follower = next(n for n in c.names if n != leader)
    leader_url, proxy = c.node(leader).http, c.http_links_of(follower, leader)[0]
    await incr(c)  # the follower has learned of the leader
    async with aiohttp.ClientSession() as http:
        async def follower_view() -> tuple[str | None, str | None]:
            async with http.get(f"{c.node(follower).http}/v1/status") as r:
                return (await r.json())["leader_url"], r.headers.get("X-Raft-Leader-Url")

        assert await eventually(lambda: _same(follower_view(), (leader_url, leader_url)), 20,
                                "the follower naming the leader") == (leader_url, leader_url)
        transfer = f"{c.node(follower).http}/v1/leader/transfer"
        raft_id = c.node(leader).raft
        async with http.post(transfer, json={"to": raft_id}) as r:  # leader-only: relayed over HTTP
            assert r.status == 200, await r.text()
            assert (await r.json())["leader_url"] == leader_url
        with Toxiproxy(c.toxiproxy) as api:
            api.get_proxy(proxy.proxy).disable()  # the forwarding link alone; Raft still flows
            async with http.post(transfer, json={"to": raft_id}, headers={"X-Request-Timeout": "2"}) as r:
                body = await r.json()
                assert r.status in (503, 504), body
                assert body["error"]["leader_url"] == leader_url  # still the real URL
            api.get_proxy(proxy.proxy).enable()


async def _same(view, expected):
    got = await view
    return got if got == expected else None
