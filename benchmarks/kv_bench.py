"""Config store watch delivery latency on a local 3-node cluster.

    python benchmarks/kv_bench.py [--watch-samples 300] [--rounds 3] [--fsync always]

Starts three ``consensus serve --apps counter,kv`` processes on loopback (fsync always by
default); a watcher (its own client, long-polling a follower) and a writer (another client,
through any node): the writer puts one key at a time and the latency is from the moment the put
is sent to the moment the watcher has the event; p50 and p99, medians of ``--rounds``.

Puts and gets per second (to the leader and through a follower, side by side with etcd) are
``consensus bench --scenario kv`` (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apps.kv import KVClient  # noqa: E402
from consensus.testing.local import LocalCluster, plan_nodes  # noqa: E402


async def watch_latencies(watch_url: str, endpoints: list[str], samples: int, round_no: int) -> list[float]:
    prefix = f"lat/{round_no}/"
    async with KVClient([watch_url], timeout=10) as watcher, KVClient(endpoints, timeout=10) as writer:
        start = await writer.revision() + 1
        received: dict[str, float] = {}
        arrived = asyncio.Event()

        async def collect() -> None:
            async for event in watcher.watch(prefix, from_revision=start):
                received[event.key] = time.perf_counter()
                arrived.set()

        collector = asyncio.ensure_future(collect())
        latencies = []
        try:
            for i in range(samples):
                key = f"{prefix}{i}"
                arrived.clear()
                sent = time.perf_counter()
                await writer.put(key, "v")
                while key not in received:
                    await arrived.wait()
                    arrived.clear()
                latencies.append(received[key] - sent)
        finally:
            collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)
        return latencies


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watch-samples", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fsync", choices=["always", "never"], default="always")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        specs = plan_nodes(3, data, apps=("counter", "kv"), extra_args=("--fsync", args.fsync))
        async with LocalCluster(specs) as cluster:
            leader = await cluster.wait_for_leader()
            follower = next(n.http for n in cluster.nodes if n.name != leader)
            p50s, p99s = [], []
            for r in range(args.rounds):
                latencies = await watch_latencies(follower, cluster.endpoints, args.watch_samples, r)
                p50s.append(quantile(latencies, 0.5) * 1000)
                p99s.append(quantile(latencies, 0.99) * 1000)
                print(f"round {r + 1}: watch p50 {p50s[-1]:.2f} ms p99 {p99s[-1]:.2f} ms", flush=True)
    print(f"raftwork kv, 3 nodes, fsync {args.fsync}: watch delivery median p50 {statistics.median(p50s):.2f} ms, "
          f"p99 {statistics.median(p99s):.2f} ms ({args.rounds} rounds)")


if __name__ == "__main__":
    asyncio.run(main())
