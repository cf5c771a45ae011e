"""Kill the leader of a transaction's coordinator group between prepare and commit.

Two-phase commit's classic weakness is a coordinator that dies after the participants voted
and before the decision: here the decision is a replicated change of the record in the
coordinator group, so the kill must not lose or block anything. This nemesis hits exactly that
window, on purpose rather than by luck:

- the nodes run with the test hook ``RAFTWORK_TEST_PAUSE_AFTER_PREPARE_MS`` (``node_env``), so
  every cross-group transaction waits that long between its last yes vote and its decision
  (``apps.kv.coordinator``);
- ``start`` asks the groups (``txn_active``, a linearizable read through ``/v1/kv-internal``)
  for records still ``pending`` whose every participant holds the transaction's locks, i.e.
  transactions prepared everywhere and not yet decided, and as soon as it sees one it SIGKILLs
  the leader of that transaction's coordinator group (a process that also hosts members of the
  other groups, and may be the one coordinating the transaction). The op names the group, the
  node and the transactions caught in the window; ``stop`` restarts the node.

If no such transaction shows up within ``wait`` seconds (no cross-group load), it kills the
leader of a random group and says ``"caught": []``: the fault still happens, and the history
shows it did not land in the window.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import aiohttp

from chaos.cluster import FaultCluster
from chaos.nemesis.packages import KillNemesis, NemesisOp

PAUSE_MS = 600  # below the intent timeout (1 s), so resolvers do not abort the paused transactions
POLL_SECONDS = 0.05


class KillCoordinatorNemesis(KillNemesis):
    """See the module docstring; ``stop`` and ``heal`` restart the killed node, as ``kill``'s do."""

    name = "kill-coordinator"

    def __init__(self, wait: float = 10.0, pause_ms: int = PAUSE_MS) -> None:
        super().__init__(targets=("leader",))
        self.wait = wait
        self.node_env = {"RAFTWORK_TEST_PAUSE_AFTER_PREPARE_MS": str(pause_ms)}

    def problems(self, nodes: int) -> list[str]:
        return [] if nodes >= 3 else [f"kill-coordinator needs at least 3 nodes (a group must keep a majority), not {nodes}"]

    async def start(self, cluster: FaultCluster, rng: random.Random) -> NemesisOp:
        groups = list(getattr(cluster, "groups", ()))
        deadline = time.monotonic() + self.wait
        async with aiohttp.ClientSession() as http:
            while len(groups) > 1 and time.monotonic() < deadline:
                for group in rng.sample(groups, len(groups)):
                    caught = await _prepared_undecided(cluster, http, group)
                    if caught:
                        return await self._kill(cluster, group, caught)
                await asyncio.sleep(POLL_SECONDS)
        group = rng.choice(groups) if len(groups) > 1 else None
        return await self._kill(cluster, group, [])

    async def _kill(self, cluster: FaultCluster, group: str | None, caught: list[dict[str, Any]]) -> NemesisOp:
        leader = await (cluster.group_leader(group) if group else cluster.leader())  # type: ignore[attr-defined]
        if leader is None or leader in cluster.faults["killed"]:
            raise RuntimeError(f"group {group} has no agreed leader to kill")
        await cluster.kill(leader)
        self.killed.append(leader)
        return NemesisOp("kill-coordinator", {"group": group, "nodes": [leader], "caught": caught})


async def _prepared_undecided(cluster: FaultCluster, http: aiohttp.ClientSession, group: str) -> list[dict[str, Any]]:
    """Return the transactions whose record in ``group`` is pending and that every participant has prepared."""
    active = await _active(cluster, http, group)
    found = []
    for record in (active or {}).get("pending", []):
        participants = record["participants"]
        if len(participants) < 2:
            continue
        answers = await asyncio.gather(*(_active(cluster, http, g) for g in participants))
        if all(a is not None and record["id"] in a["prepared"] for a in answers):
            found.append({"txn": record["id"], "participants": participants})
    return found


async def _active(cluster: FaultCluster, http: aiohttp.ClientSession, group: str) -> dict[str, Any] | None:
    """Ask any running node for ``group``'s pending records and prepared transactions (None: no answer)."""
    down = set(cluster.faults["killed"]) | set(cluster.faults["paused"])
    for node in cluster.nodes:
        if node.name in down:
            continue
        try:
            async with http.post(node.http + "/v1/kv-internal", json={"query": {"op": "txn_active"}},
                                 headers={"X-Raft-Group": group}, timeout=aiohttp.ClientTimeout(total=1.0)) as r:
                if r.status == 200:
                    return (await r.json())["result"]  # type: ignore[no-any-return]
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            continue
    return None


def node_env(nemesis: Any) -> dict[str, str]:
    """Return the environment the nodes need for ``nemesis`` (and every nemesis it mixes)."""
    env: dict[str, str] = {}
    for part in getattr(nemesis, "nemeses", ()):
        env.update(node_env(part))
    env.update(getattr(nemesis, "node_env", {}))
    return env
