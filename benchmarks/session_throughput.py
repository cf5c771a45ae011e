"""Write throughput with client sessions against plain idempotency keys, in one run.

    python benchmarks/session_throughput.py [--concurrency 32] [--seconds 5] [--repeats 3]

A local 3-node cluster (``consensus serve`` processes, fsync on). ``--concurrency`` tasks
increment counters through ``consensus.client.Client`` for ``--seconds``: once with client
sessions (the default: each write carries ``X-Raft-Session``, the replicated session table keeps
its result until the client acknowledges it) and once without (each write carries a fresh
``Idempotency-Key``, kept in the key table for its TTL). The two alternate, A B A B, on the same
cluster; the table gives each one's median writes per second and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time

from apps.counter import CounterClient
from consensus.client import Client
from consensus.testing.local import LocalCluster, plan_nodes


async def measure(endpoints: list[str], sessions: bool, concurrency: int, seconds: float) -> float:
    async with Client(endpoints, sessions=sessions, timeout=10.0) as client:
        counters = CounterClient(client)
        await counters.incr("warm-up")  # registers the session (when on) and finds the leader
        done = 0
        stop_at = time.monotonic() + seconds

        async def writer(i: int) -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                await counters.incr(f"c{i}")
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(writer(i) for i in range(concurrency)))
        return done / (time.monotonic() - started)


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="raftwork-sessions-") as tmp:
        cluster = LocalCluster(plan_nodes(3, tmp))
        try:
            await cluster.start()
            await cluster.wait_for_leader()
            rates: dict[str, list[float]] = {"sessions": [], "idempotency keys": []}
            for _ in range(args.repeats):
                for label, sessions in (("sessions", True), ("idempotency keys", False)):
                    rate = await measure(cluster.endpoints, sessions, args.concurrency, args.seconds)
                    rates[label].append(rate)
                    print(f"  {label:17} {rate:8.0f} writes/s", file=sys.stderr)
        finally:
            await cluster.stop()
    medians = {label: statistics.median(values) for label, values in rates.items()}
    print(f"concurrency {args.concurrency}, {args.repeats} interleaved repeats of {args.seconds:g} s, medians:")
    for label, value in medians.items():
        print(f"  {label:17} {value:8.0f} writes/s")
    print(f"  ratio sessions / idempotency keys: {medians['sessions'] / medians['idempotency keys']:.2f}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    sys.exit(asyncio.run(main(parser.parse_args())))
