"""Memory per key and per session: resident memory growth of every node per item created.

Each row writes ``items`` new things through the leader (new counters, exactly-once records,
lock-service sessions; for etcd new keys and leases), waits until every node has applied them,
and divides each node's growth in resident memory (``VmRSS``) by the number created; the row
keeps every node's figure and their median. The growth includes whatever the node holds per
write until it compacts its log, which is what a node really costs at that moment. RSS moves in
allocator-sized steps, so figures from a few thousand items are rough.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass, field

from consensus.bench import load
from consensus.bench.clusters import LocalCluster
from consensus.bench.load import LoadSpec

_SETTLE_TIMEOUT = 60.0


@dataclass
class MemoryRow:
    scenario: str
    system: str
    what: str
    nodes: int
    items: int  # how many were created (successful operations)
    bytes_per_item: list[float] = field(default_factory=list)  # one per node
    rss_before_mb: list[float] = field(default_factory=list)

    @property
    def median_bytes(self) -> float | None:
        return round(statistics.median(self.bytes_per_item), 1) if self.bytes_per_item else None


def rss_bytes(pid: int) -> int:
    """Return the resident memory of process ``pid`` in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _settled(cluster: LocalCluster, leader: int) -> None:
    deadline = time.monotonic() + _SETTLE_TIMEOUT
    while True:
        top = cluster.status(leader)
        states = [cluster.status(i) for i in cluster.running()]
        if top is not None and all(s is not None and s.applied >= top.commit for s in states):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{cluster.system}: nodes did not apply everything within {_SETTLE_TIMEOUT:.0f}s")
        time.sleep(0.05)


def memory_row(cluster: LocalCluster, workload: str, what: str, items: int, concurrency: int = 8) -> MemoryRow:
    """Create ``items`` things with ``workload`` through the leader; return the memory per item."""
    leader = cluster.leader()
    _settled(cluster, leader)
    pids = {i: cluster.procs[i].pid for i in cluster.running()}
    before = {i: rss_bytes(pid) for i, pid in pids.items()}
    spec = LoadSpec(workload, [cluster.urls[leader]], concurrency, duration=600, warmup=0, ops=items,
                    key_prefix=f"m{uuid.uuid4().hex[:6]}")
    created = load.run(spec)["ops"]
    _settled(cluster, leader)
    row = MemoryRow("memory", cluster.system, what, cluster.n, created,
                    rss_before_mb=[round(before[i] / 2**20, 1) for i in pids])
    if created:
        row.bytes_per_item = [round((rss_bytes(pid) - before[i]) / created, 1) for i, pid in pids.items()]
    return row
