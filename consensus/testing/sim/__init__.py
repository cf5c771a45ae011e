"""The deterministic simulation of the engine: a seed in, a schedule and a verdict out.

Real engine objects (pysyncobj 0.3.17 plus every raftwork rule, ``consensus.engine.core``) run
on an in-memory network and a simulated clock. The seed decides everything: the network's noise
(drops, duplicates, reordering), the fault schedule (partitions, crashes that lose unsynced
writes, torn writes, restarts, leadership transfers, clock skew, failing disks), the clients'
writes (to any node: followers forward) and linearizable reads (ReadIndex, to any node). After
every step the checks in ``checks.py`` run; at the end every fault is healed, the world runs quietly, and every acknowledged write must be applied
everywhere.

    result = run_seed(7)
    assert result.ok, result.report()      # the report holds the schedule and a replay line

From a shell: ``python -m consensus.testing.sim --seeds 0-999`` (``--legacy`` runs the engine as
it was before the Raft fixes; ``--scenario NAME`` runs a named regression scenario).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Iterator

from consensus.engine.core import RaftCore
from consensus.testing.sim.checks import CriticalLines
from consensus.testing.sim.faults import Fault, apply_fault, random_schedule
from consensus.testing.sim.network import Noise
from consensus.testing.sim.world import SimConfig, World, patched

__all__ = ["SimConfig", "SimResult", "World", "Fault", "run_seed", "run_schedule", "random_noise"]


@dataclass
class SimResult:
    seed: int
    violations: list[str]
    liveness: list[str]
    schedule: list[Fault]
    trace: list[str] = field(repr=False, default_factory=list)
    acked: int = 0
    terms: int = 0
    seconds: float = 0.0
    legacy: bool = False
    scenario: str | None = None
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def replay(self) -> str:
        if self.scenario:
            return f"python -m consensus.testing.sim --scenario {self.scenario}" + (" --legacy" if self.legacy else "")
        return f"python -m consensus.testing.sim --seed {self.seed}" + (" --legacy" if self.legacy else "")

    def report(self, trace_lines: int = 80) -> str:
        lines = [f"seed {self.seed}: {'ok' if self.ok else 'SAFETY VIOLATION'}"
                 f" ({self.acked} writes acknowledged, {self.terms} terms, {self.seconds:.2f}s)"]
        lines += [f"  violation: {v}" for v in self.violations]
        lines += [f"  liveness: {v}" for v in self.liveness]
        lines.append("  schedule:")
        lines += [f"    {f}" for f in self.schedule]
        if not self.ok:
            lines.append(f"  last {trace_lines} events:")
            lines += [f"    {t}" for t in self.trace[-trace_lines:]]
        lines.append(f"  replay: {self.replay()}")
        return "\n".join(lines)


def random_noise(rng: random.Random) -> Noise:
    return Noise(drop=rng.choice([0.0, 0.0, 0.01, 0.05]), duplicate=rng.choice([0.0, 0.01, 0.05]),
                 spike=rng.choice([0.0, 0.0, 0.02, 0.1]))


@contextlib.contextmanager
def _critical_lines(world: World) -> Iterator[None]:
    handler = CriticalLines(world.checks)
    root = logging.getLogger()
    root.addHandler(handler)
    quiet = [logging.getLogger(name) for name in ("consensus.engine", "pysyncobj", "consensus.dispatch")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.CRITICAL)  # the simulation makes engines complain a lot; keep CRITICAL
    try:
        yield
    finally:
        root.removeHandler(handler)
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)


def run_schedule(
    seed: int,
    schedule: list[Fault],
    *,
    config: SimConfig | None = None,
    legacy: bool = False,
    duration: float = 8.0,
    settle: float = 8.0,
    writes_per_second: float = 40.0,
    reads_per_second: float = 20.0,
    scenario: str | None = None,
    setup: "object | None" = None,
) -> SimResult:
    """Run ``schedule`` in a world seeded with ``seed``; check everything; return the verdict."""
    from consensus.testing.sim.legacy import LegacyCore

    started = time.perf_counter()
    core_class: type[RaftCore] = LegacyCore if legacy else RaftCore
    world = World(seed, config, core_class)
    try:
        with patched(world), _critical_lines(world):
            for node_id in world.nodes:
                world.start(node_id)
            for fault in schedule:
                world.at(fault.time, lambda f=fault: apply_fault(world, f), str(fault))  # type: ignore[misc]

            def client() -> None:
                if world.now >= duration:
                    return
                alive = world.alive()
                if alive:
                    world.submit(world.rng.choice(alive))
                world.after(world.rng.expovariate(writes_per_second), client, None)

            def reader() -> None:
                if world.now >= duration:
                    return
                alive = world.alive()
                if alive:
                    world.read(world.rng.choice(alive))
                world.after(world.rng.expovariate(reads_per_second), reader, None)

            world.after(0.3, client, None)
            world.after(0.35, reader, None)
            world.run_until(duration)
            world.network.noise = Noise()
            world.note("final heal")
            apply_fault(world, Fault(world.now, "heal"))
            for node_id, node in world.nodes.items():
                node.storage.failing = False
                node.skew_ns = 0
            apply_fault(world, Fault(world.now, "restart_all"))
            world.run_until(duration + settle)
            liveness = _liveness(world)
            world.checks.final()
        return SimResult(seed, list(world.checks.violations), liveness, schedule, list(world.trace),
                         acked=len(world.acked), terms=len(world.checks.leader_of_term),
                         seconds=time.perf_counter() - started, legacy=legacy, scenario=scenario)
    finally:
        world.close()


def _liveness(world: World) -> list[str]:
    problems = []
    leaders = world.leaders()
    if len(leaders) != 1:
        problems.append(f"{len(leaders)} leaders after the final heal")
        return problems
    leader = world.core(leaders[0]).raft
    for node_id in world.alive():
        raft = world.core(node_id).raft
        if raft.last_applied < leader.commit_index:
            problems.append(f"{node_id} applied {raft.last_applied} of {leader.commit_index} after the final heal")
    if world.pending:
        problems.append(f"{len(world.pending)} writes never got an answer")
    return problems


def run_seed(seed: int, *, nodes: int = 3, legacy: bool = False, duration: float = 8.0) -> SimResult:
    """Draw noise and a fault schedule from ``seed`` and run them (see the module docstring)."""
    rng = random.Random(seed)
    config = SimConfig(nodes=nodes, noise=random_noise(rng))
    node_ids = [f"sim{i + 1}:{7000 + i + 1}" for i in range(nodes)]
    schedule = random_schedule(rng, node_ids, duration)
    return run_schedule(seed, schedule, config=config, legacy=legacy, duration=duration)
