"""Run a whole bench: the client's ceiling, then each chosen scenario in order, then the outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from consensus.bench import faults, profile, runner
from consensus.bench.clusters import LocalCluster
from consensus.bench.load import LoadProcess, LoadSpec
from consensus.bench.results import BenchResults, write
from consensus.bench.runner import Bench
from consensus.bench.settings import SCENARIOS, BenchSettings


def run_memory(bench: Bench) -> None:
    from apps.locks.machine import LockLimits
    from consensus.bench.launch import served_apps
    from consensus.bench.memory import memory_row

    items = bench.settings.memory_items
    rows = [("rw-incr-new", "per counter key", "counter"), ("rw-incr-idem", "per exactly-once record", "counter"),
            ("rw-session", "per lock session", "locks")]
    for workload, what, app in rows:
        if app not in served_apps():
            bench.results.skip("memory", f"{workload}: the {app} app is not installed")
            continue
        # the lock service refuses sessions past its quota (10,000 by default; other scenarios' sessions
        # may still be alive): stay well under it, or the row would count refusals
        count = min(items, LockLimits().max_sessions // 2) if workload == "rw-session" else items
        bench.progress(f"memory: raftwork {what}, {count} items")
        bench.results.memory.append(memory_row(bench.raftwork(3), workload, what, count))
    etcd = bench.etcd(3)
    if etcd is not None:
        for workload, what in (("etcd-put-new", "per key"), ("etcd-lease", "per lease")):
            bench.progress(f"memory: etcd {what}, {items} items")
            bench.results.memory.append(memory_row(etcd, workload, what, items))


def run_failover(bench: Bench) -> None:
    s = bench.settings
    clusters: list[tuple[LocalCluster, str]] = [(bench.raftwork(3), "rw-incr")]
    etcd = bench.etcd(3)
    if etcd is not None:
        clusters.append((etcd, "etcd-put"))
    bench.results.events += faults.failover_rows(clusters, s.failovers, s.failover_writers, s.failover_window, bench.progress)


def run_catchup(bench: Bench) -> None:
    s = bench.settings
    clusters: list[tuple[LocalCluster, str]] = [(bench.raftwork(3), "rw-incr")]
    etcd = bench.etcd(3)
    if etcd is not None:
        clusters.append((etcd, "etcd-put"))
    for make in (lambda c, w: faults.restart_catchup(c, w, s.catchup_entries),
                 lambda c, w: faults.pause_catchup(c, w, s.pause_seconds)):
        rows = []
        for cluster, workload in clusters:
            bench.progress(f"catchup: {cluster.system}")
            rows.append(make(cluster, workload))
            cluster.wait_ready()
        for row in rows[1:]:
            faults.ratio_of(rows[0], row)
        bench.results.events += rows


def run_profile(bench: Bench) -> None:
    """Sample the leader, a follower and the load client under HTTP writes at the first --concurrency."""
    if profile.py_spy() is None:
        bench.results.skip("profile", "py-spy is not installed (pip install py-spy)")
        return
    s = bench.settings
    cluster = bench.raftwork(3)
    leader = cluster.leader()
    follower = cluster.follower()
    out = Path(s.out or bench.root) / "profile"
    concurrency = s.concurrency[0]
    client = LoadProcess()
    client.start(LoadSpec("rw-incr", [cluster.urls[leader]], concurrency, s.profile_seconds + 2, warmup=1.0, key_prefix="prof"))
    try:
        assert client.proc is not None
        faults.wait_writes_flow(cluster, leader, client)  # sample the steady state, not start-up
        pids = {"leader": cluster.procs[leader].pid, "follower": cluster.procs[follower].pid, "client": client.proc.pid}
        bench.progress(f"profile: py-spy on the leader, a follower and the client for {s.profile_seconds:g}s at c={concurrency}")
        spies = profile.record(pids, s.profile_seconds, out)
        for spy in spies:
            spy.wait(s.profile_seconds + 30)
        result = client.result()
    finally:
        client.kill()
    bench.results.profile = [p.format() for p in profile.summaries(list(pids), out)]
    bench.results.profile.insert(0, f"HTTP counter incr to the leader at c={concurrency}: {result['rate']:.0f} ops/s while sampled")


SCENARIO_RUNNERS: dict[str, Callable[[Bench], None]] = {
    "embedded": runner.run_embedded,
    "http": runner.run_http,
    "kv": runner.run_kv,
    "locks": runner.run_locks,
    "sweep": runner.run_sweep,
    "payload": runner.run_payload,
    "sizes": runner.run_sizes,
    "memory": run_memory,
    "failover": run_failover,
    "catchup": run_catchup,
    "profile": run_profile,
}
assert list(SCENARIO_RUNNERS) == list(SCENARIOS)


def run_bench(settings: BenchSettings, progress: Callable[[str], None] | None = None) -> BenchResults:
    """Run every scenario in ``settings`` (in the canonical order); write the results directory."""
    with Bench(settings, progress) as bench:
        bench.ceiling()
        for name in SCENARIOS:
            if name in settings.scenarios:
                SCENARIO_RUNNERS[name](bench)
                if name not in ("memory", "profile"):
                    bench.ceiling(seconds=1.0)
        bench.results.mark_client_bound()
    if settings.out:
        write(bench.results, settings.out)
        if settings.plots:
            from consensus.bench.plots import write_plots

            write_plots(bench.results, settings.out)
    return bench.results
