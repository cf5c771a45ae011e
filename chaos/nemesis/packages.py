"""Nemesis packages: ``start`` a fault, ``stop`` it, and a final ``heal`` that is always safe.

The protocol (Jepsen's, in three calls, plus a check before the run)::

    class Nemesis(Protocol):
        name: str
        def problems(self, nodes: int) -> list[str]          # why it cannot run on this cluster
        async def start(self, cluster, rng) -> NemesisOp     # NemesisOp("start-partition", {...})
        async def stop(self, cluster) -> NemesisOp
        async def heal(self, cluster) -> None                # undo everything this kind of fault can leave

The ops are values for the history (the runner records them as the nemesis process's ``info``
ops). ``start`` draws every random choice from the ``rng`` it is given, so a seeded run injects
the same faults, given the same leaders. A runner asks ``problems`` first (a nemesis that
cannot run is a usage error, not a run of nothing), alternates ``start`` and ``stop``, and
always calls ``heal`` at the end, also after a failure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from chaos.cluster import FaultCluster
from chaos.nemesis.grudges import GRUDGES, MIN_NODES, cut_pairs

DEFAULT_GRUDGES = ("isolate_one", "isolate_leader", "random_halves", "majorities_ring", "bridge")
TARGETS = ("one", "minority", "majority", "leader", "all")


@dataclass(frozen=True)
class NemesisOp:
    """What a nemesis did: Jepsen's ``:f`` (``start-partition``, ``kill``...) and its ``:value``."""

    f: str
    value: Any = None


class Nemesis(Protocol):
    name: str

    def problems(self, nodes: int) -> list[str]: ...

    async def start(self, cluster: FaultCluster, rng: random.Random) -> NemesisOp: ...

    async def stop(self, cluster: FaultCluster) -> NemesisOp: ...

    async def heal(self, cluster: FaultCluster) -> None: ...


def _running(cluster: FaultCluster) -> list[str]:
    faults = cluster.faults
    down = set(faults["killed"]) | set(faults["paused"])
    return [n for n in cluster.names if n not in down]


async def some_leader(cluster: FaultCluster, rng: random.Random) -> tuple[str | None, str | None]:
    """Return the agreed leader and its group: with several Raft groups, of one drawn at random
    (each process hosts a member of every group, so it kills or cuts off one group's leader and a
    follower of the others); with one group, its leader (group None)."""
    groups = list(getattr(cluster, "groups", ()))
    if len(groups) > 1:
        group = rng.choice(groups)
        return await cluster.group_leader(group), group  # type: ignore[attr-defined]
    return await cluster.leader(), None


async def _pick(cluster: FaultCluster, rng: random.Random, target: str) -> tuple[list[str], dict[str, Any]]:
    """Choose running nodes for ``target`` (one of :data:`TARGETS`); return them and what the op
    says of the choice: the target actually used ("leader" falls back to "one" when no leader is
    agreed) and, for a group's leader, its group."""
    running = _running(cluster)
    if not running:
        return [], {"target": target}
    if target == "leader":
        leader, group = await some_leader(cluster, rng)
        if leader in running:
            return [leader], {"target": target, **({"group": group} if group else {})}
        target = "one"  # no agreed leader: any node
    if target == "one":
        return [rng.choice(running)], {"target": target}
    sizes = {"minority": max(1, (len(cluster.names) - 1) // 2), "majority": len(cluster.names) // 2 + 1,
             "all": len(running)}
    if target not in sizes:
        raise ValueError(f"unknown target {target!r}: use {', '.join(TARGETS)}")
    return sorted(rng.sample(running, min(sizes[target], len(running)))), {"target": target}


def _check_targets(targets: Sequence[str]) -> tuple[str, ...]:
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise ValueError(f"unknown target {unknown[0] if unknown else None!r}; use {', '.join(TARGETS)}")
    return tuple(targets)


class NoNemesis:
    """Injects nothing; for a baseline run."""

    name = "none"

    def problems(self, nodes: int) -> list[str]:
        return []

    async def start(self, cluster: FaultCluster, rng: random.Random) -> NemesisOp:
        return NemesisOp("start")

    async def stop(self, cluster: FaultCluster) -> NemesisOp:
        return NemesisOp("stop")

    async def heal(self, cluster: FaultCluster) -> None:
        return None


class PartitionNemesis:
    """Each start cuts the network along a grudge drawn at random from ``grudges``.

    Grudge names are those of :data:`chaos.nemesis.grudges.GRUDGES`. With the default set, the
    grudges a cluster is too small for are left out (2 nodes: no bridge, no majorities ring);
    grudges named explicitly must all fit. ``isolate_leader`` asks the cluster for the leader and
    falls back to ``isolate_one`` when none is agreed (the op says so).
    """

    name = "partition"

    def __init__(self, grudges: Sequence[str] | None = None) -> None:
        chosen = tuple(grudges) if grudges is not None else DEFAULT_GRUDGES
        unknown = [g for g in chosen if g not in GRUDGES]
        if unknown or not chosen:
            raise ValueError(f"unknown grudge {unknown[0] if unknown else None!r}; known: {', '.join(GRUDGES)}")
        self.grudges = chosen
        self.explicit = grudges is not None

    def _fitting(self, nodes: int) -> tuple[str, ...]:
        return tuple(g for g in self.grudges if MIN_NODES[g] <= nodes)

    def problems(self, nodes: int) -> list[str]:
        if self.explicit:
            return [f"{g} needs at least {MIN_NODES[g]} nodes, not {nodes}" for g in self.grudges if MIN_NODES[g] > nodes]
        return [] if self._fitting(nodes) else [f"a partition needs at least 2 nodes, not {nodes}"]

    async def start(self, cluster: FaultCluster, rng: random.Random) -> NemesisOp:
        kind = rng.choice(self._fitting(len(cluster.names)))
        leader, group = await some_leader(cluster, rng) if kind == "isolate_leader" else (None, None)
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
            if group is not None:
                value["group"] = group
        return NemesisOp("start-partition", value)

    async def stop(self, cluster: FaultCluster) -> NemesisOp:
        await cluster.apply_grudge({})
        return NemesisOp("stop-partition", "network healed")

    async def heal(self, cluster: FaultCluster) -> None:
        await cluster.heal_network()


class KillNemesis:
    """Each start SIGKILLs nodes (``targets`` drawn at random: one, minority, majority, leader, all);
    stop restarts them."""

    name = "kill"

    def __init__(self, targets: Sequence[str] = ("one", "minority", "leader")) -> None:
        self.targets = _check_targets(targets)
        self.killed: list[str] = []

    def problems(self, nodes: int) -> list[str]:
        return []

    async def start(self, cluster: FaultCluster, rng: random.Random) -> NemesisOp:
        nodes, chosen = await _pick(cluster, rng, rng.choice(self.targets))
        for name in nodes:
            await cluster.kill(name)
            self.killed.append(name)
        return NemesisOp("kill", {**chosen, "nodes": nodes})

    async def stop(self, cluster: FaultCluster) -> NemesisOp:
        nodes, self.killed = self.killed, []
        await restart_all(cluster, nodes)
        return NemesisOp("restart", {"nodes": nodes})

    async def heal(self, cluster: FaultCluster) -> None:
        self.killed = []
        await restart_all(cluster, cluster.faults["killed"])


async def restart_all(cluster: FaultCluster, names: Sequence[str]) -> None:
    """Restart every node of ``names`` that is down; the first error is raised after trying them all."""
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
    """Each start SIGSTOPs nodes (``targets``: one, leader, minority...); stop SIGCONTs them."""

    name = "pause"

    def __init__(self, targets: Sequence[str] = ("one", "leader")) -> None:
        self.targets = _check_targets(targets)
        self.paused: list[str] = []

    def problems(self, nodes: int) -> list[str]:
        return []

    async def start(self, cluster: FaultCluster, rng: random.Random) -> NemesisOp:
        nodes, chosen = await _pick(cluster, rng, rng.choice(self.targets))
        for name in nodes:
            await cluster.pause(name)
            self.paused.append(name)
        return NemesisOp("pause", {**chosen, "nodes": nodes})

    async def stop(self, cluster: FaultCluster) -> NemesisOp:
        nodes, self.paused = self.paused, []
        for name in nodes:
            await cluster.resume(name)
        return NemesisOp("resume", {"nodes": nodes})

    async def heal(self, cluster: FaultCluster) -> None:
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

    def problems(self, nodes: int) -> list[str]:
        return [] if nodes >= 2 else [f"latency needs links: at least 2 nodes, not {nodes}"]

    async def start(self, cluster: FaultCluster, rng: random.Random) -> NemesisOp:
        target = rng.choice(self.targets)
        nodes = list(cluster.names) if target == "all" else [rng.choice(cluster.names)]
        await cluster.slow(self.latency_ms, self.jitter_ms, nodes)
        return NemesisOp("start-latency", {"latency_ms": self.latency_ms, "jitter_ms": self.jitter_ms, "nodes": nodes})

    async def stop(self, cluster: FaultCluster) -> NemesisOp:
        await cluster.unslow()
        return NemesisOp("stop-latency")

    async def heal(self, cluster: FaultCluster) -> None:
        await cluster.unslow()


class MixNemesis:
    """Each start picks one of several nemeses at random; stop stops the one started last; heal
    heals them all. ``--nemesis partition,kill`` and ``all`` are mixes."""

    def __init__(self, nemeses: Sequence[Nemesis], name: str = "all", *, explicit: bool = True) -> None:
        if not nemeses:
            raise ValueError("a mix needs at least one nemesis")
        self.nemeses = list(nemeses)
        self.name = name
        self.explicit = explicit  # a list the user named must fit whole; "all" keeps what fits
        self.active: list[Nemesis] = []

    def _fitting(self, nodes: int) -> list[Nemesis]:
        return [n for n in self.nemeses if not n.problems(nodes)]

    def problems(self, nodes: int) -> list[str]:
        found = [f"{n.name}: {p}" for n in self.nemeses for p in n.problems(nodes)]
        return found if self.explicit or not self._fitting(nodes) else []

    async def start(self, cluster: FaultCluster, rng: random.Random) -> NemesisOp:
        nemesis = rng.choice(self._fitting(len(cluster.names)))
        op = await nemesis.start(cluster, rng)
        self.active.append(nemesis)
        return op

    async def stop(self, cluster: FaultCluster) -> NemesisOp:
        if not self.active:
            return NemesisOp("stop")
        return await self.active.pop().stop(cluster)

    async def heal(self, cluster: FaultCluster) -> None:
        self.active = []
        errors: list[Exception] = []
        for nemesis in self.nemeses:
            try:
                await nemesis.heal(cluster)
            except Exception as exc:  # heal the rest anyway
                errors.append(exc)
        if errors:
            raise errors[0]
