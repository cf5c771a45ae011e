"""A follower restarted while leadership moves: the schedule that made pysyncobj lose
acknowledged writes (DESIGN section 2, the first gap).

One start does, in order: SIGKILL a follower; let the others commit ``entries`` entries (filler
increments on a counter of its own, ``writers`` at a time, bounded by ``fill_timeout``);
transfer leadership to another live node; restart the follower while the filler keeps writing
(the workload's clients write meanwhile too). The restarted follower then has a long log to
catch up on, from a leader that did not send it the first part: an engine that truncates
acknowledged entries or rewinds ``nextIndex`` on old acks shows it as a lost write (the
checkers) or as replicas that disagree (the agreement check).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

from apps.counter import CounterClient
from chaos.cluster import FaultCluster
from chaos.nemesis.packages import NemesisOp, restart_all

FILLER = "nemesis-filler"
TRANSFER_ATTEMPTS = 3


class RestartFollowerNemesis:
    """See the module docstring; ``stop`` restarts the follower if a start failed halfway."""

    name = "restart-follower"

    def __init__(self, entries: int = 2000, writers: int = 16, fill_timeout: float = 20.0,
                 write_after_restart: float = 2.0) -> None:
        self.entries = entries
        self.writers = writers
        self.fill_timeout = fill_timeout
        self.write_after_restart = write_after_restart
        self.stopped: list[str] = []

    def problems(self, nodes: int) -> list[str]:
        return [] if nodes >= 3 else [f"restart-follower needs at least 3 nodes (a follower down, a leader "
                                      f"and a node to move leadership to), not {nodes}"]

    async def start(self, cluster: FaultCluster, rng: random.Random) -> NemesisOp:
        leader = await cluster.wait_for_leader(10.0)
        live = [n for n in cluster.names if n not in cluster.faults["killed"] and n not in cluster.faults["paused"]]
        follower = rng.choice(sorted(n for n in live if n != leader))
        await cluster.kill(follower)
        self.stopped.append(follower)
        async with cluster.client(timeout=5.0) as client:
            counters = CounterClient(client)
            filled = await self._fill(counters, self.entries, time.monotonic() + self.fill_timeout)
            target = rng.choice(sorted(n for n in live if n not in (leader, follower)))
            moved, failure = await self._transfer(client, cluster.node(target).raft)
            background = asyncio.create_task(self._fill(counters, 10**9, float("inf")))
            try:
                await cluster.restart(follower)  # also when the transfer failed: never leave it down
                self.stopped.remove(follower)
                await asyncio.sleep(self.write_after_restart)
            finally:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
        if failure is not None:  # the follower was restarted, but leadership did not move: say so
            raise failure
        return NemesisOp("restart-follower", {"nodes": [follower], "follower": follower, "leader": leader,
                                              "transfer_to": target, "new_leader": _name_of(cluster, moved),
                                              "entries": filled})

    async def _transfer(self, client: Any, to: str) -> tuple[Any, Exception | None]:
        """Move leadership to ``to``, trying up to ``TRANSFER_ATTEMPTS`` times (a transfer can be
        refused while another is under way); return the answer, or the last error."""
        error: Exception | None = None
        for attempt in range(TRANSFER_ATTEMPTS):
            try:
                return await client.transfer_leader(to=to, timeout=10.0), None
            except Exception as exc:  # noqa: BLE001 - retried, then reported by the caller
                error = exc
                await asyncio.sleep(0.5 * (attempt + 1))
        return None, error

    async def _fill(self, counters: CounterClient, entries: int, deadline: float) -> int:
        """Commit up to ``entries`` increments before ``deadline``; return how many were acknowledged."""
        done = 0

        async def writer() -> None:
            nonlocal done
            while done < entries and time.monotonic() < deadline:
                try:
                    await counters.incr(FILLER, 1)
                    done += 1
                except Exception:  # noqa: BLE001 - filler: its outcome is not checked
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(writer() for _ in range(self.writers)))
        return done

    async def stop(self, cluster: FaultCluster) -> NemesisOp:
        nodes, self.stopped = self.stopped, []
        await restart_all(cluster, nodes)
        return NemesisOp("stop-restart-follower", {"nodes": nodes})

    async def heal(self, cluster: FaultCluster) -> None:
        nodes, self.stopped = self.stopped, []
        await restart_all(cluster, nodes)


def _name_of(cluster: FaultCluster, answer: Any) -> Any:
    leader = answer.get("leader") if isinstance(answer, dict) else None
    return next((n.name for n in cluster.nodes if n.raft == leader), leader)
