"""Lock acquire+release round trips per second over HTTP: raftwork's lock service beside etcd's.

    python benchmarks/locks_bench.py [--seconds 5] [--rounds 3] [--clients 8] [--no-etcd]

Two scenarios, each with ``--clients`` clients (one session each, its own HTTP connection pool):
``contended`` (all on one lock: each waits in the queue, is woken by the release before it) and
``spread`` (each on a lock of its own). One round trip is an acquire that is granted plus the
release of that grant. Both systems run 3 nodes on loopback with every write fsynced
(``consensus serve --fsync always``; etcd fsyncs by default) and are measured in turns (ours,
etcd, ours, etcd, ...); the table gives the median of the rounds. etcd goes through its v3 JSON
gateway: ``/v3/lease/grant``, then ``/v3/lock/lock`` (waits until held) and ``/v3/lock/unlock``.
etcd runs only if ``etcd`` is on the PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp

from apps.locks import LockClient
from consensus.bench.etcd import EtcdCluster, etcd_binary, etcd_version
from consensus.testing.local import LocalCluster, plan_nodes, start_with_retries

Loop = Callable[[int, float], Awaitable[int]]  # (client number, stop time) -> round trips done


def lock_name(scenario: str, i: int) -> str:
    return "bench" if scenario == "contended" else f"bench-{i}"


async def ours(endpoints: list[str], scenario: str, clients: int, seconds: float) -> float:
    locks = [LockClient(endpoints, timeout=30.0) for _ in range(clients)]
    try:
        sessions = [await c.open_session(ttl_ms=60000) for c in locks]

        async def run(i: int, stop: float) -> int:
            done = 0
            while time.monotonic() < stop:
                grant = await locks[i].acquire(lock_name(scenario, i), sessions[i].id, wait_ms=30000)
                await locks[i].release(grant.name, grant.session, grant.token)
                done += 1
            return done

        rate = await _measure(run, clients, seconds)
        for c, s in zip(locks, sessions):
            await c.close_session(s.id)
        return rate
    finally:
        for c in locks:
            await c.close()


async def etcd(endpoints: list[str], scenario: str, clients: int, seconds: float) -> float:
    sessions = [aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) for _ in range(clients)]
    try:
        async def post(i: int, path: str, body: dict) -> dict:
            async with sessions[i].post(endpoints[i % len(endpoints)] + path, json=body) as resp:
                answer = await resp.json(content_type=None)
                if resp.status != 200 or "error" in answer:
                    raise RuntimeError(f"etcd {path}: {resp.status} {answer}")
                return answer  # type: ignore[no-any-return]

        leases = [(await post(i, "/v3/lease/grant", {"TTL": 60}))["ID"] for i in range(clients)]

        async def run(i: int, stop: float) -> int:
            name = base64.b64encode(lock_name(scenario, i).encode()).decode()
            done = 0
            while time.monotonic() < stop:
                key = (await post(i, "/v3/lock/lock", {"name": name, "lease": leases[i]}))["key"]
                await post(i, "/v3/lock/unlock", {"key": key})
                done += 1
            return done

        rate = await _measure(run, clients, seconds)
        for i, lease in enumerate(leases):
            await post(i, "/v3/lease/revoke", {"ID": lease})
        return rate
    finally:
        for s in sessions:
            await s.close()


async def _measure(run: Loop, clients: int, seconds: float) -> float:
    started = time.monotonic()
    counts = await asyncio.gather(*(run(i, started + seconds) for i in range(clients)))
    return sum(counts) / (time.monotonic() - started)


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="locks-bench-"))
    ours_cluster = await start_with_retries(lambda: plan_nodes(3, root / "raftwork", apps=("counter", "locks"),
                                                               extra_args=("--fsync", "always")))
    systems: dict[str, tuple[list[str], Callable[..., Awaitable[float]]]] = {}
    etcd_cluster = None
    try:
        await ours_cluster.wait_for_leader()
        systems["raftwork"] = (ours_cluster.endpoints, ours)
        if args.etcd and etcd_binary() is not None:
            etcd_cluster = EtcdCluster(3, root / "etcd")
            etcd_cluster.__enter__()
            etcd_cluster.wait_ready()
            systems[f"etcd {etcd_version() or ''}".strip()] = (etcd_cluster.urls, etcd)
        results: dict[tuple[str, str], list[float]] = {}
        for scenario in ("contended", "spread"):
            for _ in range(args.rounds):  # interleaved: A, B, A, B, ...
                for system, (endpoints, measure) in systems.items():
                    rate = await measure(endpoints, scenario, args.clients, args.seconds)
                    results.setdefault((scenario, system), []).append(rate)
        print(f"lock acquire+release round trips/s, {args.clients} clients, 3 nodes, fsync on, "
              f"median of {args.rounds} rounds of {args.seconds:g}s")
        print(f"{'scenario':<11} {'system':<14} {'median':>8}   rounds")
        for (scenario, system), rates in results.items():
            print(f"{scenario:<11} {system:<14} {statistics.median(rates):>8.0f}   "
                  + " ".join(f"{r:.0f}" for r in rates))
    finally:
        if etcd_cluster is not None:
            etcd_cluster.__exit__(None, None, None)
        await ours_cluster.stop()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--no-etcd", dest="etcd", action="store_false")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
