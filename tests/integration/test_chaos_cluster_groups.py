"""``ChaosCluster(groups=3)``: 3 processes each hosting a member of 3 Raft groups, every group's
Raft link through its own Toxiproxy proxy; faults act on processes, so a partition cuts every
group's link between two nodes; the kill-coordinator nemesis kills a coordinator group's leader
while transactions are prepared and undecided, and they still finish."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid

import aiohttp
import pytest

from apps.kv import KVClient, Op
from chaos.cluster import ChaosCluster
from chaos.nemesis import KillCoordinatorNemesis
from chaos.runner.checks import agreement_check
from chaos.verdict import Verdict
from consensus.client import Client
from consensus.shards import ShardMap
from tests.integration.chaos_helpers import eventually

pytestmark = pytest.mark.timeout(240)


def key_on(shards: ShardMap, group: str, tag: str) -> str:
    return next(k for k in (f"{tag}-{i}" for i in range(1000)) if shards.group_of(k) == group)


async def record_of(url: str, group: str, txn: str) -> dict | None:
    async with aiohttp.ClientSession() as s:
        async with s.post(url + "/v1/kv-internal", json={"query": {"op": "txn_record", "id": txn}},
                          headers={"X-Raft-Group": group}, timeout=aiohttp.ClientTimeout(total=5)) as r:
            return (await r.json())["result"] if r.status == 200 else None


async def test_a_cluster_of_three_groups_partitions_and_kills_per_process(tmp_path):
    nemesis = KillCoordinatorNemesis(wait=20.0)
    async with ChaosCluster(n=3, apps=("kv",), data_dir=tmp_path, groups=3, env=nemesis.node_env) as c:
        shards = ShardMap.load(tmp_path / "shards.json")
        # One Raft proxy per pair and group, whose upstream is that group's member in the shard map.
        assert c.groups == ["g1", "g2", "g3"] and len(c.links) == 9 and len(c.http_links) == 6
        members = {g: {m.raft for m in shards.members(g)} for g in c.groups}
        for link in c.links:
            assert link.proxy.startswith(f"{link.group}:") and link.upstream in members[link.group], link
        argv = c.local.procs["n1"].argv
        assert argv.count("--dial-route") == sum(1 for link in c.links if link.dialer == "n1")

        # Isolating the leader of g2 cuts its links in every group: g2 elects another, and the
        # other two nodes keep writing to every group.
        victim = await c.group_leader("g2")
        await c.isolate(victim)
        for link in c.links:
            if victim in link.pair:
                assert (await c.link_state(link.dialer, link.target, link.group))["enabled"] is False
        rest = [n for n in c.names if n != victim]
        await eventually(lambda: _leader_other_than(c, "g2", victim), 30, "g2 to elect a leader other than the isolated one")
        async with Client([c.node(n).http for n in rest], timeout=20.0) as client:
            for group in c.groups:
                await KVClient(client).put(key_on(shards, group, "cut"), "1")
        await c.heal()
        assert (await c.wait_for_group_leaders(30)).keys() == {"g1", "g2", "g3"}

        # Cross-group transfers in flight; the nemesis kills a coordinator group's leader while some are
        # prepared everywhere and undecided (the nodes pause 600 ms there: the test hook).
        keys = [key_on(shards, g, f"acct-{uuid.uuid4().hex[:4]}") for g in c.groups]
        stop = asyncio.Event()
        committed: list[int] = []

        async def transfers(slot: int) -> None:
            rng = random.Random(slot)
            async with c.client(timeout=10.0) as client:
                kv = KVClient(client)
                while not stop.is_set():
                    a, b = rng.sample(keys, 2)
                    with contextlib.suppress(Exception):
                        await kv.txn([], [Op.put(a, str(slot)), Op.put(b, str(slot))])
                        committed.append(slot)

        workers = [asyncio.create_task(transfers(i)) for i in range(4)]
        try:
            op = await nemesis.start(c, random.Random(1))
            assert op.f == "kill-coordinator" and op.value["caught"], op
            group, (killed,) = op.value["group"], op.value["nodes"]
            assert killed in c.faults["killed"]
            before = len(committed)
            await nemesis.stop(c)
            async def more_committed() -> bool:
                return len(committed) > before + 3
            await eventually(more_committed, 60, "transactions to commit after the restart")
        finally:
            stop.set()
            await asyncio.gather(*workers)
            await nemesis.heal(c)
        # Every transaction caught in the window was decided, one way or the other.
        url = c.endpoints[0]
        for caught in op.value["caught"]:
            async def decided(txn=caught["txn"]):
                record = await record_of(url, group, txn)
                return record is not None and record["state"] in ("committed", "aborted")
            await eventually(decided, 30, f"{caught['txn']} to be decided")
        logs = "".join(c.log_path(n).read_text() for n in c.names)
        assert all(f"txn {caught['txn']} prepared on" in logs for caught in op.value["caught"])
        agreement = await agreement_check(c, 30)
        assert agreement.valid is Verdict.VALID and "g3: 3 nodes agree" in agreement.reason, agreement.reason


async def _leader_other_than(c: ChaosCluster, group: str, old: str) -> bool:
    leader = await c.group_leader(group)
    return leader is not None and leader != old
