"""Transactions per second and latency: single-group vs cross-group, 1 vs 3 Raft groups.

    python benchmarks/txn_bench.py [--seconds 5] [--fsync never]

Starts ``consensus cluster``-shaped local clusters (3 nodes; 1 group, then 3 groups, kv app),
runs closed-loop clients at concurrency 8 and 32, each sending ``POST /v1/txn`` that writes two
keys (a transfer) to the nodes in turn: single-group (both keys on one group) or cross-group
(the keys on two groups: two-phase commit). Prints one line per run (JSON), then a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from consensus.shards import ShardMap
from consensus.testing.local import plan_groups, start_with_retries


def _pairs(shards: ShardMap, cross: bool, count: int) -> list[tuple[str, str]]:
    by_group: dict[str, list[str]] = {g: [] for g in shards.groups}
    for i in range(20 * count):
        key = f"acct/{i}"
        by_group[shards.group_of(key)].append(key)
    groups = list(by_group)
    pairs = []
    for i in range(count):
        g = groups[i % len(groups)]
        h = groups[(i + 1) % len(groups)] if cross else g
        a = by_group[g][i]
        b = by_group[h][i + 1] if h == g else by_group[h][i]
        pairs.append((a, b))
    return pairs


def _error_code(answer: bytes) -> str:
    try:
        return str(json.loads(answer)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "?"


async def _run(endpoints: list[str], pairs: list[tuple[str, str]], concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors: Counter[str] = Counter()  # "status code" of every answer that was not a 200
    stop = time.monotonic() + seconds

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        a, b = pairs[i % len(pairs)]  # each client its own keys: throughput, not contention
        url = endpoints[i % len(endpoints)]
        n = 0
        while time.monotonic() < stop:
            n += 1
            body = {"success": [{"put": {"key": a, "value": str(n)}}, {"put": {"key": b, "value": str(n)}}]}
            started = time.perf_counter()
            async with session.post(url + "/v1/txn", json=body) as r:
                answer = await r.read()
                if r.status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[f"{r.status} {_error_code(answer)}"] += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(client(i, session) for i in range(concurrency)))
    latencies.sort()

    def q(p: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2) if latencies else 0.0

    return {"txn_per_s": round(len(latencies) / seconds, 1), "p50_ms": q(0.5), "p99_ms": q(0.99), "errors": dict(errors)}


async def main(seconds: float, fsync: str) -> None:
    rows = []
    for groups in (1, 3):
        with tempfile.TemporaryDirectory(prefix="txn-bench-") as tmp:
            cluster = await start_with_retries(lambda: plan_groups(3, groups, Path(tmp), apps=("kv",), log_level="warning",
                                                                   extra_args=("--fsync", fsync)))
            async with cluster:
                await cluster.wait_for_group_leaders()
                shards = ShardMap.load(Path(tmp) / "shards.json")
                for kind in ("single", "cross") if groups > 1 else ("single",):
                    for concurrency in (8, 32):
                        pairs = _pairs(shards, kind == "cross", concurrency)
                        random.shuffle(pairs)
                        result = {"groups": groups, "kind": kind, "concurrency": concurrency,
                                  **await _run(cluster.endpoints, pairs, concurrency, seconds)}
                        print(json.dumps(result), flush=True)
                        rows.append(result)
    print(f"\n| groups | txn | concurrency | txn/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['groups']} | {r['kind']}-group | {r['concurrency']} | {r['txn_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {sum(r['errors'].values())} {_describe(r['errors'])}|")


def _describe(errors: dict[str, int]) -> str:
    return f"({', '.join(f'{n} x {kind}' for kind, n in sorted(errors.items()))}) " if errors else ""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--fsync", choices=["always", "never"], default="never")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.fsync))
