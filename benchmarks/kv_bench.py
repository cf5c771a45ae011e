"""Config store throughput and watch delivery latency on a local 3-node cluster.

    python benchmarks/kv_bench.py [--seconds 10] [--concurrency 32] [--watch-samples 300] [--fsync always]

Starts three ``consensus serve --apps counter,kv`` processes on loopback (fsync always by
default), then:

- puts/s: ``--concurrency`` tasks put distinct keys through one ``KVClient`` (HTTP, client
  sessions on: every put is exactly-once) for ``--seconds``; the count of acknowledged puts over
  the time taken;
- watch latency: a watcher (its own client, long-polling a follower) and a writer (another
  client, through any node); the writer puts one key at a time and the latency is from the
  moment the put is sent to the moment the watcher has the event. p50 and p99.

Rounds alternate (``--rounds``, default 3) and medians are printed. No etcd here: if an
``etcd`` binary is on PATH, ``consensus bench --scenario http`` runs it side by side.
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


async def puts_per_second(endpoints: list[str], seconds: float, concurrency: int, round_no: int) -> float:
    async with KVClient(endpoints, timeout=10) as kv:
        await kv.put(f"bench/warm/{round_no}", "x")  # opens the client session
        done = 0
        stop = time.perf_counter() + seconds

        async def worker(w: int) -> None:
            nonlocal done
            i = 0
            while time.perf_counter() < stop:
                await kv.put(f"bench/{round_no}/{w}/{i}", "v" * 32)
                done += 1
                i += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        return done / (time.perf_counter() - started)


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
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--watch-samples", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fsync", choices=["always", "never"], default="always")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        specs = plan_nodes(3, data, apps=("counter", "kv"), extra_args=("--fsync", args.fsync))
        async with LocalCluster(specs) as cluster:
            leader = await cluster.wait_for_leader()
            follower = next(n.http for n in cluster.nodes if n.name != leader)
            rates, p50s, p99s = [], [], []
            for r in range(args.rounds):
                rates.append(await puts_per_second(cluster.endpoints, args.seconds, args.concurrency, r))
                latencies = await watch_latencies(follower, cluster.endpoints, args.watch_samples, r)
                p50s.append(quantile(latencies, 0.5) * 1000)
                p99s.append(quantile(latencies, 0.99) * 1000)
                print(f"round {r + 1}: {rates[-1]:.0f} puts/s at c={args.concurrency}; "
                      f"watch p50 {p50s[-1]:.2f} ms p99 {p99s[-1]:.2f} ms", flush=True)
    print(f"raftwork kv, 3 nodes, fsync {args.fsync}: median {statistics.median(rates):.0f} puts/s at "
          f"c={args.concurrency}; watch delivery median p50 {statistics.median(p50s):.2f} ms, "
          f"p99 {statistics.median(p99s):.2f} ms ({args.rounds} rounds)")


if __name__ == "__main__":
    asyncio.run(main())
