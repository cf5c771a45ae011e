"""Measure how long a client's writes stall when the leader is isolated, against the election time.

    python benchmarks/client_stall.py --trials 5 [--attempt-timeout 1.0 | --attempt-timeout 0]

A 3-node chaos cluster (every peer and forwarding link through Toxiproxy; the client reaches every
node directly, as Jepsen's control node does). One writer increments a counter in a loop. For each
trial the leader is isolated; the *stall* is the time from the isolation to the writer's first
success after it, the *election time* the time until the other two agree on a new leader.
Both are counted from when ``isolate`` returned, to the first write that *began* after that. Prints
one line per trial and the medians. ``--attempt-timeout 0`` runs the client without a per-attempt
timeout (each attempt may use the whole deadline), as before.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from chaos.cluster import ChaosCluster
from consensus.client import Client


async def writer(client: Client, successes: list[tuple[float, float]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            await client.request("POST", "/v1/counters/stall/incr", body={"by": 1}, write=True, timeout=15)
            successes.append((started, time.monotonic()))
        except Exception:  # noqa: BLE001 - a failed write just means "not yet"
            pass


async def new_leader(cluster: ChaosCluster, old: str, deadline: float) -> float:
    others = [n.name for n in cluster.nodes if n.name != old]
    while time.monotonic() < deadline:
        statuses = [await cluster.status(name, timeout=0.5) for name in others]
        ids = {cluster.node(name).raft for name in others}
        leaders = {s.get("leader") for s in statuses if s}
        if len(leaders) == 1 and (leader := leaders.pop()) in ids:
            return time.monotonic()
        await asyncio.sleep(0.02)
    raise TimeoutError("no new leader")


async def trial(cluster: ChaosCluster, client: Client) -> tuple[float, float]:
    successes: list[tuple[float, float]] = []
    stop = asyncio.Event()
    task = asyncio.create_task(writer(client, successes, stop))
    try:
        while len(successes) < 20:
            await asyncio.sleep(0.05)
        old = await cluster.wait_for_leader()
        await cluster.isolate(old)
        isolated_at = time.monotonic()  # writes that began before this may still have got through
        elected_at = await new_leader(cluster, old, isolated_at + 30)
        # The stall: until the first write that began after the cut succeeded.
        while not [end for start, end in successes if start >= isolated_at] and time.monotonic() < isolated_at + 30:
            await asyncio.sleep(0.01)
        after = [end for start, end in successes if start >= isolated_at]
        stall = (after[0] if after else float("inf")) - isolated_at
        return stall, elected_at - isolated_at
    finally:
        stop.set()
        await task
        await cluster.heal()
        await cluster.wait_for_leader(timeout=30)


async def main(trials: int, attempt_timeout: float | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with ChaosCluster(n=3, apps=("counter",), data_dir=tmp) as cluster:
            await cluster.wait_for_leader(timeout=30)
            options = {} if attempt_timeout is None else {"attempt_timeout": attempt_timeout or None}
            async with Client(cluster.endpoints, timeout=15, **options) as client:
                stalls, elections = [], []
                for i in range(trials):
                    stall, election = await trial(cluster, client)
                    stalls.append(stall)
                    elections.append(election)
                    print(f"trial {i + 1}: stall {stall:.2f}s, new leader after {election:.2f}s", flush=True)
    print(f"median stall {statistics.median(stalls):.2f}s, median election {statistics.median(elections):.2f}s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--attempt-timeout", type=float, default=None,
                        help="seconds; 0 turns it off (default: the client's default)")
    args = parser.parse_args()
    asyncio.run(main(args.trials, args.attempt_timeout))
