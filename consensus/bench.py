"""Measure ``Node.propose`` and linearizable reads against raw pysyncobj, in the same run.

Each system runs as three real processes on loopback. Every worker starts its node and waits
for a leader; the leader's worker drives the load in its own process (so no client hop is
measured), prints one JSON line of results and exits; the parent then stops the others by PID.

    python -m consensus.bench --duration 3 --concurrency 1,16,64
    consensus bench --json

Figures are reported as ratios against raw pysyncobj measured in the same run, because
absolute numbers on a shared 2-core machine mean little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

SYSTEMS = ("raftwork", "pysyncobj", "pysyncobj-tuned")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(kind: str, concurrency: int, latencies: list[float], elapsed: float) -> dict[str, Any]:
    return {
        "op": kind,
        "concurrency": concurrency,
        "ops": len(latencies),
        "ops_per_s": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
    }


# -- workers (run inside the node processes) ---------------------------------------------------


async def _raftwork_worker(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    from consensus import Node, NodeConfig
    from consensus.testing.machines import KV

    node = Node(NodeConfig(args.self_address, args.peers.split(","), args.data_dir), {"kv": KV()})
    await node.start()
    await node.wait_for_leader(30)
    await asyncio.sleep(0.5)  # let every node agree before deciding who drives the load
    if not node.is_leader():
        await asyncio.Event().wait()  # followers serve until the parent stops them
    results = []
    for kind in ("write", "read"):
        for concurrency in args.concurrency:
            latencies: list[float] = []
            stop_at = time.monotonic() + args.duration

            async def client(i: int) -> None:
                key = f"k{i}"
                while time.monotonic() < stop_at:
                    started = time.perf_counter()
                    if kind == "write":
                        await node.propose("kv", {"method": "incr", "args": [key]})
                    else:
                        await node.read("kv", {"method": "get", "args": [key]})
                    latencies.append(time.perf_counter() - started)

            began = time.monotonic()
            await asyncio.gather(*(client(i) for i in range(concurrency)))
            results.append(_summary(kind, concurrency, latencies, time.monotonic() - began))
    await node.stop()
    return results


def _pysyncobj_worker(args: argparse.Namespace, tuned: bool) -> list[dict[str, Any]] | None:
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class Counter(SyncObj):  # type: ignore[misc]
        def __init__(self, conf: SyncObjConf) -> None:
            super().__init__(args.self_address, [p for p in args.peers.split(",") if p != args.self_address], conf)
            self.values: dict[str, int] = {}

        @replicated  # type: ignore[misc]
        def incr(self, key: str) -> int:
            self.values[key] = self.values.get(key, 0) + 1
            return self.values[key]

    options: dict[str, Any] = dict(journalFile=os.path.join(args.data_dir, "journal"), fullDumpFile=os.path.join(args.data_dir, "dump"))
    if tuned:
        options.update(appendEntriesUseBatch=False, commandsWaitLeader=False, leaderFallbackTimeout=1.5, connectionRetryTime=0.5)
    os.makedirs(args.data_dir, exist_ok=True)
    obj = Counter(SyncObjConf(**options))
    deadline = time.monotonic() + 30
    while obj._getLeader() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    if not obj._isLeader():
        threading.Event().wait()
    results = []
    for concurrency in args.concurrency:
        latencies: list[float] = []
        done = threading.Event()
        stop_at = time.monotonic() + args.duration
        lock = threading.Lock()
        outstanding = [0]

        def issue(key: str) -> None:
            started = time.perf_counter()

            def on_result(result: Any, err: Any) -> None:
                with lock:
                    if err == 0:
                        latencies.append(time.perf_counter() - started)
                    if time.monotonic() < stop_at:
                        issue(key)
                    else:
                        outstanding[0] -= 1
                        if outstanding[0] == 0:
                            done.set()

            obj.incr(key, callback=on_result)

        began = time.monotonic()
        outstanding[0] = concurrency
        for i in range(concurrency):
            issue(f"k{i}")
        done.wait(args.duration + 30)
        results.append(_summary("write", concurrency, latencies, time.monotonic() - began))
    return results


def _worker_main(args: argparse.Namespace) -> int:
    if args.worker == "raftwork":
        profile_to = os.environ.get("RAFTWORK_BENCH_PROFILE")  # profile the driving node's event loop
        if profile_to:
            import cProfile

            profiler = cProfile.Profile()
            results = profiler.runcall(asyncio.run, _raftwork_worker(args))
            profiler.dump_stats(profile_to)
        else:
            results = asyncio.run(_raftwork_worker(args))
    else:
        results = _pysyncobj_worker(args, tuned=args.worker == "pysyncobj-tuned")
    print(json.dumps({"results": results}), flush=True)
    os._exit(0)  # raw pysyncobj's tick thread is not a daemon; leave at once


# -- the parent -------------------------------------------------------------------------------


def _run_system(system: str, duration: float, concurrency: list[int]) -> list[dict[str, Any]]:
    from consensus.testing import free_ports

    addresses = [f"127.0.0.1:{p}" for p in free_ports(3)]
    root = tempfile.mkdtemp(prefix=f"bench-{system}-")
    procs = []
    try:
        for i, address in enumerate(addresses):
            cmd = [
                sys.executable, "-m", "consensus.bench", "--worker", system, "--self-address", address,
                "--peers", ",".join(addresses), "--data-dir", os.path.join(root, f"n{i}"),
                "--duration", str(duration), "--concurrency", ",".join(map(str, concurrency)),
            ]  # fmt: skip
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        result: list[dict[str, Any]] = []
        reader_done = threading.Event()

        def read(proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("{"):
                    result.extend(json.loads(line)["results"])
                    reader_done.set()

        threads = [threading.Thread(target=read, args=(p,), daemon=True) for p in procs]
        for t in threads:
            t.start()
        budget = 60 + duration * len(concurrency) * 2 * 2
        if not reader_done.wait(budget):
            raise RuntimeError(f"{system}: no results within {budget:.0f}s")
        return result
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def run(duration: float = 3.0, concurrency: list[int] | None = None, systems: tuple[str, ...] = SYSTEMS) -> dict[str, list[dict[str, Any]]]:
    """Measure each system; return {system: [summary, ...]}."""
    concurrency = concurrency or [1, 16, 64]
    return {system: _run_system(system, duration, concurrency) for system in systems}


def format_table(results: dict[str, list[dict[str, Any]]]) -> str:
    baseline = {r["concurrency"]: r["ops_per_s"] for r in results.get("pysyncobj", []) if r["op"] == "write"}
    writes = {r["concurrency"]: r["ops_per_s"] for r in results.get("raftwork", []) if r["op"] == "write"}
    lines = [f"{'system':<16} {'op':<6} {'conc':>5} {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs raw':>7} {'vs write':>8}"]
    for system, rows in results.items():
        for r in rows:
            raw = baseline.get(r["concurrency"])
            vs_raw = f"{r['ops_per_s'] / raw:.2f}x" if raw else "-"
            vs_write = f"{r['ops_per_s'] / writes[r['concurrency']]:.2f}x" if r["op"] == "read" and writes.get(r["concurrency"]) else "-"
            lines.append(
                f"{system:<16} {r['op']:<6} {r['concurrency']:>5} {r['ops_per_s']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {vs_raw:>7} {vs_write:>8}"
            )
    return "\n".join(lines)


def _concurrency(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not values or any(v < 1 or v > 4096 for v in values):
        raise argparse.ArgumentTypeError("each concurrency must be between 1 and 4096")
    return values


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement (default 3)")
    parser.add_argument("--concurrency", type=_concurrency, default=None, help="comma-separated (default 1,16,64; with --http 1,8,32)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {','.join(SYSTEMS)}")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--http", action="store_true", help="measure HTTP counter increments and failover on a local cluster instead")
    parser.add_argument("--failovers", type=int, default=5, help="with --http: leader kills to time (default 5; 0 skips)")


def command(args: argparse.Namespace) -> int:
    systems = tuple(s for s in args.systems.split(",") if s)
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        print(f"consensus bench: unknown system {unknown[0]!r} (choose from {', '.join(SYSTEMS)})", file=sys.stderr)
        return 2
    if args.duration <= 0:
        print("consensus bench: --duration must be positive", file=sys.stderr)
        return 2
    if args.http:
        from consensus import bench_http

        if args.failovers < 0:
            print("consensus bench: --failovers must not be negative", file=sys.stderr)
            return 2
        report = asyncio.run(bench_http.run_bench(3, args.concurrency or [1, 8, 32], args.duration, args.failovers))
        print(json.dumps(report.to_dict(), indent=2) if args.json else bench_http.format_report(report))
        return 0
    results = run(args.duration, args.concurrency or [1, 16, 64], systems)
    print(json.dumps(results, indent=2) if args.json else format_table(results))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("bench", help="measure proposals and reads against raw pysyncobj")
    _add_arguments(parser)
    parser.set_defaults(func=command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m consensus.bench")
    _add_arguments(parser)
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--self-address", help=argparse.SUPPRESS)
    parser.add_argument("--peers", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker_main(args)
    return command(args)


if __name__ == "__main__":
    raise SystemExit(main())
