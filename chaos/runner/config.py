"""A test as data: its parts named, its knobs, its seed; and the pure schedules derived from it."""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

NEMESIS_NAMES = ("none", "partition", "kill", "pause", "latency", "all")  # test-all's default matrix


def parse_concurrency(text: str | int, nodes: int) -> int:
    """Return the number of client workers: an int, or ``"2n"`` meaning twice the node count."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = re.fullmatch(r"\s*(\d*)\s*n\s*|\s*(\d+)\s*", str(text))
        if not match:
            raise ValueError(f"concurrency is an int or '<k>n' (k times the node count), not {text!r}")
        value = int(match.group(1) or 1) * nodes if match.group(2) is None else int(match.group(2))
    if value < 1:
        raise ValueError(f"concurrency must be at least 1, not {value}")
    return value


@dataclass
class TestConfig:
    """Everything that defines a run; ``test.json`` stores it (with the seed actually used)."""

    __test__ = False  # not a pytest test class

    workload: str = "register"
    nemesis: str = "none"  # a name, or a comma list of names (each fault one of them)
    nodes: int = 3
    groups: int = 1  # Raft groups; with more than 1 every node process hosts a member of each
    time_limit: float = 60.0
    concurrency: str | int = "2n"
    rate: float = 50.0
    seed: int | None = None
    store: str = "store"
    toxiproxy: str | None = None
    name: str | None = None
    op_timeout: float = 5.0  # each client op's deadline
    final_timeout: float = 10.0  # each final read's deadline (tried up to 3 times)
    recovery: float = 5.0  # quiet seconds after the final heal, before the final reads
    nemesis_interval: tuple[float, float] = (5.0, 10.0)  # fault held / quiet for this many seconds
    checker_timeout: float = 120.0  # linearizability search budget; then "unknown"
    agreement_timeout: float = 30.0  # how long replicas may take to agree after the final heal
    read_consistency: str = "linearizable"  # or "stale": reads that may miss writes (the checker must notice)
    leave_db_running: bool = False  # keep the healed cluster up after the run, until Ctrl-C
    progress: bool = True
    workload_options: dict[str, Any] = field(default_factory=dict)
    # Not data: how to build the cluster (tests inject stand-ins); None: chaos.cluster.ChaosCluster.
    cluster_factory: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    @property
    def test_name(self) -> str:
        return self.name or f"{self.workload}-{self.nemesis}" + (f"-g{self.groups}" if self.groups > 1 else "")

    def processes(self) -> int:
        return parse_concurrency(self.concurrency, self.nodes)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as JSON-ready data (without the cluster factory)."""
        data = asdict(self)
        data.pop("cluster_factory", None)
        data["nemesis_interval"] = list(self.nemesis_interval)
        data["name"] = self.test_name
        data["concurrency_processes"] = self.processes()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TestConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "cluster_factory"}
        if "nemesis_interval" in known:
            known["nemesis_interval"] = tuple(known["nemesis_interval"])
        return cls(**known)


def derive_rng(seed: int, part: str) -> random.Random:
    """Return an independent, reproducible ``Random`` for one part of the test."""
    return random.Random(f"{seed}:{part}")


def nemesis_schedule(rng: random.Random, time_limit: float, interval: tuple[float, float] = (5.0, 10.0)) -> list[tuple[float, float]]:
    """Return ``(start, stop)`` seconds of each fault: quiet, fault, quiet, fault, ... within the limit.

    Quiet and fault spans are drawn uniformly from ``interval``; for short tests the interval
    shrinks so that at least one fault fits (a third of the time limit at most). A fault that
    would run past the limit is cut at the limit. Pure: same rng state, same schedule.
    """
    lo, hi = interval
    if time_limit < 3 * lo:
        scale = time_limit / (3 * lo)
        lo, hi = lo * scale, hi * scale
    spans: list[tuple[float, float]] = []
    t = 0.0
    while True:
        start = t + rng.uniform(lo, hi)
        if start >= time_limit - lo / 2:
            return spans
        stop = min(time_limit, start + rng.uniform(lo, hi))
        spans.append((round(start, 3), round(stop, 3)))
        t = stop


class Pacer:
    """Spread invocations over time at ``rate`` per second overall, with seeded random gaps.

    Gaps are uniform in ``[0, 2/rate)`` (mean ``1/rate``), Jepsen's stagger. Workers call
    :meth:`next_slot` with the current time and sleep until the time it returns.
    """

    def __init__(self, rng: random.Random, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rng = rng
        self.rate = rate
        self._next = 0.0

    def next_slot(self, now: float) -> float:
        slot = max(self._next, now)
        self._next = slot + self.rng.uniform(0, 2 / self.rate)
        return slot
