"""Run the bench's load scenarios: raftwork and its baselines interleaved, medians, ratios.

``Bench`` owns every cluster it starts (raftwork over HTTP, etcd, the embedded workers) and
stops them all by PID when the run ends, also on failure or Ctrl-C. Clusters start on first use
and are shared by the scenarios that need the same shape. Each measurement point runs
raftwork, then the baseline, ``repeats`` times (A, B, A, B, ...), and keeps the medians.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

from consensus.bench import load
from consensus.bench.clusters import LocalCluster
from consensus.bench.embedded import EmbeddedCluster
from consensus.bench.etcd import INSTALL_HINT, EtcdCluster, etcd_binary
from consensus.bench.launch import RaftworkCluster, served_apps
from consensus.bench.load import LoadSpec
from consensus.bench.procs import NullServer
from consensus.bench.results import BenchResults, LoadRow, compare, median_row
from consensus.bench.settings import BenchSettings

Progress = Callable[[str], None]

# (what the row says, raftwork workload, etcd workload), per scenario
HTTP_OPS: list[tuple[str, str, str]] = [
    ("counter incr", "rw-incr", "etcd-put"),
    ("linearizable get", "rw-get", "etcd-range"),
    ("stale get", "rw-stale", "etcd-range-serializable"),
]
KV_OPS: list[tuple[str, str, str]] = [
    ("kv put", "rw-kv-put", "etcd-put"),
    ("kv linearizable get", "rw-kv-get", "etcd-range"),
    ("kv stale get", "rw-kv-stale", "etcd-range-serializable"),
]
LOCK_OP = ("rw-lock", "etcd-lock")  # acquire (waiting) + release, one session or lease per client
# the app each raftwork workload needs (the rest need the counter app)
_APP_OF = {"rw-kv-put": "kv", "rw-kv-get": "kv", "rw-kv-stale": "kv", "rw-lock": "locks", "rw-session": "locks"}
EMBEDDED_OPS = [("propose", "propose"), ("linearizable read", "read"), ("stale read", "stale")]


class Bench:
    def __init__(self, settings: BenchSettings, progress: Progress | None = None) -> None:
        self.settings = settings
        self.progress = progress or (lambda message: None)
        self.results = BenchResults(settings=_settings_dict(settings))
        self.root = Path(tempfile.mkdtemp(prefix="raftwork-bench-"))
        self._stack = contextlib.ExitStack()
        self._clusters: dict[str, Any] = {}

    def __enter__(self) -> "Bench":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._clusters.clear()
        try:
            self._stack.close()
        finally:
            load.close()  # the shared load client process

    # -- clusters, started on first use -----------------------------------------------------------

    def _start(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._clusters:
            self.progress(f"starting {key}")
            self._clusters[key] = self._stack.enter_context(make())
        return self._clusters[key]

    def raftwork(self, n: int = 3) -> RaftworkCluster:
        return self._start(f"raftwork-{n}", lambda: RaftworkCluster(n, self.root / f"raftwork-{n}", self.settings.fsync))  # type: ignore[no-any-return]

    def etcd(self, n: int = 3) -> EtcdCluster | None:
        if not self.settings.etcd:
            return None
        if etcd_binary() is None:
            self.results.skip("etcd", INSTALL_HINT)
            return None
        return self._start(f"etcd-{n}", lambda: EtcdCluster(n, self.root / f"etcd-{n}"))  # type: ignore[no-any-return]

    def embedded(self, system: str) -> EmbeddedCluster:
        return self._start(f"embedded-{system}", lambda: EmbeddedCluster(system, 3, self.root / f"embedded-{system}", self.settings.fsync))  # type: ignore[no-any-return]

    def drop(self, key: str) -> None:
        """Stop one shared cluster now (the sizes scenario starts and stops its own)."""
        cluster = self._clusters.pop(key, None)
        if cluster is not None:
            cluster.__exit__(None, None, None)

    # -- measurements --------------------------------------------------------------------------

    def ceiling(self, seconds: float = 3.0) -> None:
        """Measure the load client against a do-nothing server at every level this run uses.

        Called before the first scenario and after each one: the machine is shared, so the
        ceiling moves; the run reports the median of these samples next to each row.
        """
        levels = self.settings.load_levels()
        if not levels:
            return
        with NullServer() as null:
            for c in levels:
                self.progress(f"load client ceiling at c={c}")
                spec = self._spec("null", [null.url], c, 16)
                spec.duration, spec.warmup = min(spec.duration, seconds), min(spec.warmup, 0.3)
                self.results.ceiling_samples.setdefault(c, []).append(load.run(spec)["rate"])

    def _spec(self, workload: str, targets: list[str], concurrency: int, payload: int, locks: int = 1) -> LoadSpec:
        s = self.settings
        return LoadSpec(workload, targets, concurrency, s.duration, warmup=s.warmup, payload=payload, locks=locks,
                        timeout=15.0, key_prefix=f"b{uuid.uuid4().hex[:6]}")

    def http_pair(self, scenario: str, op: str, rw_workload: str, etcd_workload: str, target: str, concurrency: int,
                  payload: int = 16, locks: int = 1, nodes: int = 3) -> None:
        """Measure one HTTP point on raftwork and etcd, interleaved; add the rows."""
        if not _app_ready(self, scenario, rw_workload):
            return
        if nodes == 1 and target == "follower":
            return
        rw, ec = self.raftwork(nodes), self.etcd(nodes)
        runs_a: list[dict[str, Any]] = []
        runs_b: list[dict[str, Any]] = []
        for rep in range(self.settings.repeats):
            self.progress(f"{scenario}: {op} to the {target}, n={nodes} c={concurrency} {payload}B, repeat {rep + 1}")
            runs_a.append(self._measure(rw, rw_workload, target, concurrency, payload, locks))
            if ec is not None:
                runs_b.append(self._measure(ec, etcd_workload, target, concurrency, payload, locks))
        row = self._row(scenario, "raftwork", op, target, nodes, payload, runs_a)
        if runs_b:
            base = self._row(scenario, "etcd", op, target, nodes, payload, runs_b)
            compare(row, base)

    def _measure(self, cluster: LocalCluster, workload: str, target: str, concurrency: int, payload: int, locks: int) -> dict[str, Any]:
        """Run one load on ``cluster``; add the CPU each op cost the leader and (on average) a follower."""
        leader = cluster.leader()
        node = leader if target == "leader" else cluster.follower()
        pids = {i: p.pid for i, p in cluster.procs.items()}
        spec = self._spec(workload, [cluster.urls[node]], concurrency, payload, locks)
        spec.watch_pids = list(pids.values())
        run = load.run(spec)
        run["cpu_us_per_op"] = cpu_per_op(run, pids, leader)
        return run

    def embedded_pair(self, scenario: str, op: str, kind: str, concurrency: int, payload: int = 16) -> None:
        s = self.settings
        rw = self.embedded("raftwork")
        raw = self.embedded("pysyncobj") if s.pysyncobj else None
        runs_a: list[dict[str, Any]] = []
        runs_b: list[dict[str, Any]] = []
        for rep in range(s.repeats):
            self.progress(f"{scenario}: {op} c={concurrency} {payload}B, repeat {rep + 1}")
            runs_a.append(rw.run(kind, concurrency, s.duration, s.warmup, payload))
            if raw is not None:
                runs_b.append(raw.run(kind, concurrency, s.duration, s.warmup, payload))
        row = self._row(scenario, "raftwork", op, "-", 3, payload, runs_a)
        if runs_b:
            compare(row, self._row(scenario, "pysyncobj", op, "-", 3, payload, runs_b))

    def _row(self, scenario: str, system: str, op: str, target: str, nodes: int, payload: int,
             runs: list[dict[str, Any]]) -> LoadRow:
        row = median_row(scenario, system, op, target, nodes, payload, runs)
        self.results.loads.append(row)
        return row


def cpu_per_op(run: dict[str, Any], pids: dict[int, int], leader: int) -> dict[str, float | None]:
    """Return microseconds of CPU per successful op: on the leader, and the mean over followers."""
    ops = run["ops"]
    if not ops:
        return {"leader": None, "follower": None}
    cpu = {i: float(run["cpu_s"].get(str(pid), 0.0)) for i, pid in pids.items()}
    followers = [seconds for i, seconds in cpu.items() if i != leader]
    return {"leader": round(cpu.get(leader, 0.0) / ops * 1e6, 1),
            "follower": round(sum(followers) / len(followers) / ops * 1e6, 1) if followers else None}


def _app_ready(bench: Bench, scenario: str, workload: str) -> bool:
    app = _APP_OF.get(workload, "counter")
    if app in served_apps():
        return True
    bench.results.skip(scenario, f"{workload}: the {app} app is not installed")
    return False


def _settings_dict(settings: BenchSettings) -> dict[str, Any]:
    from dataclasses import asdict

    from consensus.bench.etcd import etcd_version

    from consensus.bench.launch import serve_has_flag

    fsync = settings.fsync if serve_has_flag("--fsync") else "not supported yet (consensus serve has no --fsync)"
    return {**asdict(settings), "etcd_version": etcd_version(), "raftwork_apps": served_apps(), "raftwork_fsync": fsync}


# -- the load scenarios ----------------------------------------------------------------------------


def run_embedded(bench: Bench) -> None:
    for concurrency in bench.settings.embedded_concurrency:
        for op, kind in EMBEDDED_OPS:
            bench.embedded_pair("embedded", op, kind, concurrency)


def run_http(bench: Bench) -> None:
    _run_ops(bench, "http", HTTP_OPS)


def run_kv(bench: Bench) -> None:
    _run_ops(bench, "kv", KV_OPS)


def _run_ops(bench: Bench, scenario: str, ops: list[tuple[str, str, str]]) -> None:
    for concurrency in bench.settings.concurrency:
        for op, rw_workload, etcd_workload in ops:
            for target in bench.settings.targets:
                bench.http_pair(scenario, op, rw_workload, etcd_workload, target, concurrency)


def run_locks(bench: Bench) -> None:
    """``--lock-clients`` clients contending on one lock, then each on a lock of its own."""
    clients = bench.settings.lock_clients
    for locks in sorted({1, clients}):
        op = "lock 1 name" if locks == 1 else f"lock {locks} names"
        for target in bench.settings.targets:
            bench.http_pair("locks", op, *LOCK_OP, target, clients, locks=locks)


def run_sweep(bench: Bench) -> None:
    for op, rw_workload, etcd_workload in HTTP_OPS[:2]:
        for concurrency in bench.settings.sweep:
            bench.http_pair("sweep", op, rw_workload, etcd_workload, "leader", concurrency)


def run_payload(bench: Bench) -> None:
    for payload in bench.settings.payloads:
        bench.embedded_pair("payload", "propose", "propose", bench.settings.embedded_concurrency[-1], payload)
        for concurrency in bench.settings.concurrency:
            bench.http_pair("payload", "kv put", "rw-kv-put", "etcd-put", "leader", concurrency, payload=payload)


def run_sizes(bench: Bench) -> None:
    for n in bench.settings.sizes:
        for op, rw_workload, etcd_workload in HTTP_OPS:
            for concurrency in bench.settings.concurrency:
                bench.http_pair("sizes", op, rw_workload, etcd_workload, "leader", concurrency, nodes=n)
        if n != 3:  # the 3-node clusters stay for the scenarios after this one
            bench.drop(f"raftwork-{n}")
            bench.drop(f"etcd-{n}")
