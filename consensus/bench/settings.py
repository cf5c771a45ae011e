"""What one ``consensus bench`` run measures: the scenarios and every size, count and duration."""

from __future__ import annotations

from dataclasses import dataclass, field

# In the order they run: the ones that kill and pause nodes come last, on the same clusters.
SCENARIOS: dict[str, str] = {
    "embedded": "Node.propose, linearizable and stale reads in the leader's process, vs raw pysyncobj",
    "http": "counter incr, linearizable and stale gets at each --concurrency, to the leader and through a follower, vs etcd put and ranges",
    "kv": "config store put, linearizable get and stale get at each --concurrency, to the leader and through a follower, vs etcd put and ranges",
    "locks": "lock acquire+release round trips of --lock-clients clients on one lock and on one lock each, to the leader and through a follower, vs etcd's lock API",
    "sweep": "HTTP counter incr and linearizable get to the leader at each --sweep concurrency, vs etcd",
    "payload": "embedded proposals and HTTP kv puts of each --payloads size, vs raw pysyncobj and etcd",
    "sizes": "HTTP writes and reads on clusters of each --sizes size, vs etcd of the same size",
    "memory": "resident memory per new key, per exactly-once record and per lock session (etcd: per key and per lease)",
    "failover": "kill -9 of the leader under write load: time to the first successful write, vs etcd",
    "catchup": "a follower restarted after missing --catchup-entries entries, and one resumed after a --pause-seconds SIGSTOP, vs etcd",
    "profile": "py-spy samples of the leader's process under HTTP writes: where its time goes, by thread and frame",
}
DEFAULT_SCENARIOS = ("embedded", "http", "kv", "locks", "sweep", "payload", "sizes", "memory", "failover", "catchup")


@dataclass
class BenchSettings:
    scenarios: list[str] = field(default_factory=lambda: list(DEFAULT_SCENARIOS))
    concurrency: list[int] = field(default_factory=lambda: [32])  # the http, kv, payload and sizes scenarios
    embedded_concurrency: list[int] = field(default_factory=lambda: [1, 64])
    sweep: list[int] = field(default_factory=lambda: [1, 8, 32, 128])
    payloads: list[int] = field(default_factory=lambda: [16, 1024, 16384])
    sizes: list[int] = field(default_factory=lambda: [1, 3, 5])
    targets: list[str] = field(default_factory=lambda: ["leader", "follower"])
    lock_clients: int = 8  # the locks scenario: clients on one lock, then as many locks as clients
    duration: float = 5.0  # seconds measured per repeat
    warmup: float = 1.0  # seconds run before measuring, not counted
    repeats: int = 3  # interleaved A, B, A, B ...; the row is the median
    failovers: int = 5
    failover_writers: int = 8
    failover_window: float = 8.0  # seconds after a kill to wait for the first successful write
    catchup_entries: int = 10_000
    pause_seconds: float = 5.0
    profile_seconds: float = 10.0
    memory_items: int = 20_000
    fsync: str = "always"  # passed to raftwork nodes once `consensus serve` has --fsync
    etcd: bool = True  # measure the etcd baseline when etcd is installed
    pysyncobj: bool = True  # measure the raw pysyncobj baseline
    out: str | None = None  # the results directory
    plots: bool = True

    def load_levels(self) -> list[int]:
        """Return every HTTP concurrency this run uses (the client's ceiling is measured at each)."""
        levels: set[int] = set()
        if {"http", "kv", "payload", "sizes"} & set(self.scenarios):
            levels |= set(self.concurrency)
        if "locks" in self.scenarios:
            levels.add(self.lock_clients)
        if "sweep" in self.scenarios:
            levels |= set(self.sweep)
        if "failover" in self.scenarios:
            levels.add(self.failover_writers)
        return sorted(levels)
