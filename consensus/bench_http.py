"""Measure a local cluster over HTTP: counter increments per second and latency at several
concurrencies, and failover time (kill -9 of the leader to the first successful write).

::

    python -m consensus.bench_http                       # 3 nodes, concurrency 1, 8, 32, 5 failovers
    python -m consensus.bench_http --duration 10 --json

``run_bench(...)`` returns a ``BenchReport``; ``format_report`` prints it (for ``consensus bench``).
Every node is a real ``consensus serve`` process on 127.0.0.1, started and stopped (by PID) here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from consensus.client import Client
from consensus.server.local_cluster import ChildNode, child_env, die_with_parent, plan, port_in_use


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


class BenchCluster:
    """N ``consensus serve`` children on free loopback ports; kill and restart by PID."""

    def __init__(self, nodes: int, data_dir: str) -> None:
        base = _free_base(nodes * 2)
        args = argparse.Namespace(nodes=nodes, base_port=base, http_base_port=base + nodes, apps="counter",
                                  log_level="warning", token_file=None)
        self.nodes: list[ChildNode] = plan(args, data_dir)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start_node(self, i: int) -> None:
        node = self.nodes[i]
        with open(node.log, "ab") as log:
            self.procs[i] = subprocess.Popen(node.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             env=child_env(), preexec_fn=die_with_parent)

    def start(self) -> None:
        for i in range(len(self.nodes)):
            self.start_node(i)
        self.wait_ready(range(len(self.nodes)))

    def status(self, i: int) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.nodes[i].http + "/v1/status", timeout=1) as response:  # noqa: S310
                return json.loads(response.read())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    def wait_ready(self, indexes: Sequence[int], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for i in indexes:
            while True:
                status = self.status(i)
                if status and status["leader"] and status["last_applied"] >= status["commit_index"]:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {self.nodes[i].name} not ready; see {self.nodes[i].log}")
                time.sleep(0.05)

    def leader(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i in self.procs:
                status = self.status(i)
                if status and status["role"] == "leader":
                    return i
            time.sleep(0.05)
        raise RuntimeError("no leader")

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def _free_base(count: int) -> int:
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 40000 - count)
        if not any(port_in_use(p) for p in range(base, base + count)):
            return base
    raise RuntimeError("no free port range")


async def measure_failover(cluster: BenchCluster, runs: int) -> list[float]:
    """Kill -9 the leader ``runs`` times; time each kill to the first successful write."""
    samples = []
    async with Client([n.http for n in cluster.nodes], timeout=30) as client:
        await client.request("POST", "/v1/counters/failover/incr", body={"by": 1}, write=True)
        for _ in range(runs):
            victim = cluster.leader()
            cluster.kill(victim)
            started = time.monotonic()
            await client.request("POST", "/v1/counters/failover/incr", body={"by": 1}, write=True)
            samples.append(round(time.monotonic() - started, 3))
            cluster.start_node(victim)
            cluster.wait_ready(range(len(cluster.nodes)))
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
    cluster = BenchCluster(nodes, data_dir or tempfile.mkdtemp(prefix="raftwork-bench-"))
    try:
        cluster.start()
        endpoints = [n.http for n in cluster.nodes]
        for concurrency in concurrencies:
            report.load.append(await measure_load(endpoints, concurrency, duration))
        if failover_runs:
            report.failover_s = await measure_failover(cluster, failover_runs)
    finally:
        cluster.stop()
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
