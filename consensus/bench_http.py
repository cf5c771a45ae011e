"""Measure a local cluster over HTTP: counter increments per second and latency at several
concurrencies, and failover time (kill -9 of the leader to the first successful write).

::

    python -m consensus.bench_http                       # 3 nodes, concurrency 1, 8, 32, 5 failovers
    python -m consensus.bench_http --duration 10 --json

``run_bench(...)`` returns a ``BenchReport``; ``format_report`` prints it (for ``consensus bench``).
Every node is a real ``consensus serve`` process on 127.0.0.1, run by
:class:`consensus.testing.local.LocalCluster` (started and stopped by PID).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from consensus.client import Client
from consensus.testing.local import LocalCluster, plan_nodes, start_with_retries


@dataclass
class LoadResult:
    concurrency: int
    ops: int
    seconds: float
    rate: float  # successful increments per second
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class BenchReport:
    nodes: int
    duration: float
    load: list[LoadResult] = field(default_factory=list)
    failover_s: list[float] = field(default_factory=list)

    @property
    def failover_median_s(self) -> float | None:
        return statistics.median(self.failover_s) if self.failover_s else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failover_median_s": self.failover_median_s}


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def measure_load(endpoints: Sequence[str], concurrency: int, duration: float, warmup: float = 0.5) -> LoadResult:
    """Run ``concurrency`` workers incrementing counters for ``duration`` seconds."""
    latencies: list[float] = []
    errors = 0
    async with Client(list(endpoints), timeout=10) as client:

        async def worker(i: int, until: float, record: bool) -> None:
            nonlocal errors
            path = f"/v1/counters/bench-{concurrency}-{i}/incr"
            while time.monotonic() < until:
                started = time.perf_counter()
                try:
                    await client.request("POST", path, body={"by": 1}, write=True)
                except Exception:
                    errors += record
                    continue
                if record:
                    latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker(i, time.monotonic() + warmup, False) for i in range(concurrency)))
        started = time.monotonic()
        await asyncio.gather(*(worker(i, started + duration, True) for i in range(concurrency)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return LoadResult(concurrency, len(latencies), round(elapsed, 3), round(len(latencies) / elapsed, 1),
                      round(_percentile(latencies, 0.50) * 1000, 2), round(_percentile(latencies, 0.99) * 1000, 2), errors)


async def measure_failover(cluster: LocalCluster, runs: int) -> list[float]:
    """Kill -9 the leader ``runs`` times; time each kill to the first successful write."""
    samples = []
    async with Client(cluster.endpoints, timeout=30) as client:
        await client.request("POST", "/v1/counters/failover/incr", body={"by": 1}, write=True)
        for _ in range(runs):
            victim = await cluster.wait_for_leader(30)
            await cluster.kill(victim)
            started = time.monotonic()
            await client.request("POST", "/v1/counters/failover/incr", body={"by": 1}, write=True)
            samples.append(round(time.monotonic() - started, 3))
            await cluster.restart(victim)
            await cluster.wait_caught_up(timeout=60)
    return samples


async def run_bench(
    nodes: int = 3,
    concurrencies: Sequence[int] = (1, 8, 32),
    duration: float = 5.0,
    failover_runs: int = 5,
    data_dir: str | None = None,
) -> BenchReport:
    """Start a local cluster, measure load at each concurrency and failover, stop the cluster."""
    report = BenchReport(nodes, duration)
    root = data_dir or tempfile.mkdtemp(prefix="raftwork-bench-")
    async with await start_with_retries(lambda: plan_nodes(nodes, root, apps=("counter",), log_level="warning")) as cluster:
        await cluster.wait_caught_up(timeout=60)
        for concurrency in concurrencies:
            report.load.append(await measure_load(cluster.endpoints, concurrency, duration))
        if failover_runs:
            report.failover_s = await measure_failover(cluster, failover_runs)
    return report


def format_report(report: BenchReport) -> str:
    lines = [f"HTTP counter increments, {report.nodes}-node local cluster, {report.duration:g}s per level",
             f"{'CONCURRENCY':>11}  {'OPS/S':>8}  {'P50 MS':>7}  {'P99 MS':>7}  {'OPS':>6}  {'ERRORS':>6}"]
    for r in report.load:
        lines.append(f"{r.concurrency:>11}  {r.rate:>8.1f}  {r.p50_ms:>7.2f}  {r.p99_ms:>7.2f}  {r.ops:>6}  {r.errors:>6}")
    if report.failover_s:
        lines.append(f"failover (kill -9 leader -> first successful write): median {report.failover_median_s:.2f}s "
                     f"of {', '.join(f'{s:.2f}' for s in report.failover_s)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m consensus.bench_http", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels (default 1,8,32)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per level (default 5)")
    parser.add_argument("--failovers", type=int, default=5, help="leader kills to time (default 5; 0 skips)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        levels = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        parser.error("--concurrency takes integers like 1,8,32")
    if args.nodes < 1 or args.duration <= 0 or args.failovers < 0 or any(c < 1 for c in levels):
        parser.error("--nodes, --duration and each concurrency must be positive, --failovers not negative")
    report = asyncio.run(run_bench(args.nodes, levels, args.duration, args.failovers))
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
