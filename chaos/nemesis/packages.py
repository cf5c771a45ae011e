"""Nemesis packages: ``start`` a fault, ``stop`` it, and a final ``heal`` that is always safe.

The protocol (Jepsen's, in three calls)::

    class Nemesis(Protocol):
        name: str
        async def start(self, cluster, rng) -> dict   # {"f": "start-partition", "value": {...}}
        async def stop(self, cluster) -> dict         # {"f": "stop-partition", "value": ...}
        async def heal(self, cluster) -> None         # undo everything this kind of fault can leave

The dicts are op values for the history (the runner records them as the nemesis process's
``info`` ops). ``start`` draws every random choice from the ``rng`` it is given, so a seeded run
injects the same faults, given the same leaders. A runner alternates ``start`` and ``stop`` and
always calls ``heal`` at the end, also after a failure.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from chaos.nemesis.grudges import GRUDGES, cut_pairs

if TYPE_CHECKING:
    from chaos.cluster import ChaosCluster

Op = dict[str, Any]

DEFAULT_GRUDGES = ("isolate_one", "isolate_leader", "random_halves", "majorities_ring", "bridge")


class Nemesis(Protocol):
    name: str

    async def start(self, cluster: "ChaosCluster", rng: random.Random) -> Op: ...

    async def stop(self, cluster: "ChaosCluster") -> Op: ...

    async def heal(self, cluster: "ChaosCluster") -> None: ...


def _running(cluster: "ChaosCluster") -> list[str]:
    faults = cluster.faults
    down = set(faults["killed"]) | set(faults["paused"])
    return [n for n in cluster.names if n not in down]


async def _pick(cluster: "ChaosCluster", rng: random.Random, target: str) -> tuple[list[str], str]:
    """Choose running nodes for ``target`` ("one", "minority", "leader", "all"); return them and
    the target actually used ("leader" falls back to "one" when no leader is agreed)."""
    running = _running(cluster)
    if not running:
        return [], target
    if target == "leader":
        leader = await cluster.leader()
        if leader in running:
            return [leader], target
        target = "one"  # no agreed leader: any node
    if target == "one":
        return [rng.choice(running)], target
    if target == "minority":
        size = max(1, (len(cluster.names) - 1) // 2)
        return sorted(rng.sample(running, min(size, len(running)))), target
    if target == "all":
        return list(running), target
    raise ValueError(f"unknown target {target!r}: use one, minority, leader or all")


class NoNemesis:
    """Injects nothing; for a baseline run."""

    name = "none"

    async def start(self, cluster: "ChaosCluster", rng: random.Random) -> Op:
        return {"f": "start", "value": None}

    async def stop(self, cluster: "ChaosCluster") -> Op:
        return {"f": "stop", "value": None}

    async def heal(self, cluster: "ChaosCluster") -> None:
        return None


class PartitionNemesis:
    """Each start cuts the network along a grudge drawn at random from ``grudges``.

    Grudge names are those of :data:`chaos.nemesis.grudges.GRUDGES`. ``isolate_leader`` asks the
    cluster for the leader and falls back to ``isolate_one`` when none is agreed (the op says so).
    """

    name = "partition"

    def __init__(self, grudges: Sequence[str] = DEFAULT_GRUDGES) -> None:
        unknown = [g for g in grudges if g not in GRUDGES]
        if unknown or not grudges:
            raise ValueError(f"unknown grudge {unknown[0] if unknown else None!r}; known: {', '.join(GRUDGES)}")
        self.grudges = tuple(grudges)

    async def start(self, cluster: "ChaosCluster", rng: random.Random) -> Op:
        kind = rng.choice(self.grudges)
        leader = await cluster.leader() if kind == "isolate_leader" else None
        if kind == "isolate_leader" and leader is None:
            kind = "isolate_one"
        grudge = GRUDGES[kind](cluster.names, rng, leader)
        await cluster.apply_grudge(grudge)
        value: dict[str, Any] = {"grudge": kind, "cut": cut_pairs(grudge)}
        one_way = sorted([s, r] for r, senders in grudge.items() for s in senders if r not in grudge.get(s, ()))
        if one_way:
            value["one_way"] = one_way  # [sender, receiver]: what sender sends receiver is lost
        if leader is not None:
            value["leader"] = leader
        return {"f": "start-partition", "value": value}

    async def stop(self, cluster: "ChaosCluster") -> Op:
        await cluster.apply_grudge({})
        return {"f": "stop-partition", "value": "network healed"}

    async def heal(self, cluster: "ChaosCluster") -> None:
        await cluster.heal_network()


class KillNemesis:
    """Each start SIGKILLs nodes (``targets``: one, minority, leader, drawn at random); stop restarts them."""

    name = "kill"

    def __init__(self, targets: Sequence[str] = ("one", "minority", "leader")) -> None:
        self.targets = tuple(targets)
        self.killed: list[str] = []

    async def start(self, cluster: "ChaosCluster", rng: random.Random) -> Op:
        nodes, target = await _pick(cluster, rng, rng.choice(self.targets))
        for name in nodes:
            await cluster.kill(name)
            self.killed.append(name)
        return {"f": "kill", "value": {"target": target, "nodes": nodes}}

    async def stop(self, cluster: "ChaosCluster") -> Op:
        nodes, self.killed = self.killed, []
        await _restart_all(cluster, nodes)
        return {"f": "restart", "value": {"nodes": nodes}}

    async def heal(self, cluster: "ChaosCluster") -> None:
        self.killed = []
        await _restart_all(cluster, cluster.faults["killed"])


async def _restart_all(cluster: "ChaosCluster", names: Sequence[str]) -> None:
    errors: list[Exception] = []
    for name in names:
        if name in cluster.faults["killed"]:
            try:
                await cluster.restart(name)
            except Exception as exc:  # restart the others anyway
                errors.append(exc)
    if errors:
        raise errors[0]


class PauseNemesis:
    """Each start SIGSTOPs nodes (``targets``: one, leader, minority); stop SIGCONTs them."""

    name = "pause"

    def __init__(self, targets: Sequence[str] = ("one", "leader")) -> None:
        self.targets = tuple(targets)
        self.paused: list[str] = []

    async def start(self, cluster: "ChaosCluster", rng: random.Random) -> Op:
        nodes, target = await _pick(cluster, rng, rng.choice(self.targets))
        for name in nodes:
            await cluster.pause(name)
            self.paused.append(name)
        return {"f": "pause", "value": {"target": target, "nodes": nodes}}

    async def stop(self, cluster: "ChaosCluster") -> Op:
        nodes, self.paused = self.paused, []
        for name in nodes:
            await cluster.resume(name)
        return {"f": "resume", "value": {"nodes": nodes}}

    async def heal(self, cluster: "ChaosCluster") -> None:
        self.paused = []
        for name in cluster.faults["paused"]:
            await cluster.resume(name)


class LatencyNemesis:
    """Each start delays links by ``latency_ms`` +- ``jitter_ms`` each way: all links, or (``targets``
    "one") those of one random node; stop removes the delay."""

    name = "latency"

    def __init__(self, latency_ms: int = 100, jitter_ms: int = 50, targets: Sequence[str] = ("all", "one")) -> None:
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.targets = tuple(targets)

    async def start(self, cluster: "ChaosCluster", rng: random.Random) -> Op:
        target = rng.choice(self.targets)
        nodes = list(cluster.names) if target == "all" else [rng.choice(cluster.names)]
        await cluster.slow(self.latency_ms, self.jitter_ms, nodes)
        return {"f": "start-latency",
                "value": {"latency_ms": self.latency_ms, "jitter_ms": self.jitter_ms, "nodes": nodes}}

    async def stop(self, cluster: "ChaosCluster") -> Op:
        await cluster.unslow()
        return {"f": "stop-latency", "value": None}

    async def heal(self, cluster: "ChaosCluster") -> None:
        await cluster.unslow()


class MixNemesis:
    """Each start picks one of several nemeses at random (partition, kill, pause, latency by
    default); stop stops the one started last; heal heals them all."""

    name = "all"

    def __init__(self, nemeses: Sequence[Nemesis] | None = None) -> None:
        self.nemeses: list[Nemesis] = list(nemeses) if nemeses is not None else [
            PartitionNemesis(), KillNemesis(), PauseNemesis(), LatencyNemesis()]
        self.active: list[Nemesis] = []

    async def start(self, cluster: "ChaosCluster", rng: random.Random) -> Op:
        nemesis = rng.choice(self.nemeses)
        op = await nemesis.start(cluster, rng)
        self.active.append(nemesis)
        return op

    async def stop(self, cluster: "ChaosCluster") -> Op:
        if not self.active:
            return {"f": "stop", "value": None}
        return await self.active.pop().stop(cluster)

    async def heal(self, cluster: "ChaosCluster") -> None:
        self.active = []
        errors: list[Exception] = []
        for nemesis in self.nemeses:
            try:
                await nemesis.heal(cluster)
            except Exception as exc:  # heal the rest anyway
                errors.append(exc)
        if errors:
            raise errors[0]
