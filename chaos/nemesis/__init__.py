"""Nemeses for chaos runs: pure network topologies (grudges) and fault packages built on them.

::

    from chaos.nemesis import make_nemesis

    nemesis = make_nemesis("partition,kill")        # a comma list: each fault one of them
    nemesis.problems(nodes=3)                       # [] when it can run on 3 nodes
    op = await nemesis.start(cluster, rng)          # NemesisOp("start-partition", {"grudge": ..., "cut": [...]})
    op = await nemesis.stop(cluster)                # NemesisOp("stop-partition", "network healed")
    await nemesis.heal(cluster)                     # final heal; always safe

See ``docs/chaos-cluster.md``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from chaos.nemesis.grudges import (
    GRUDGES,
    MIN_NODES,
    Groups,
    Grudge,
    as_grudge,
    bridge,
    cut_pairs,
    isolate_leader,
    isolate_one,
    majorities_ring,
    one_way,
    random_halves,
)
from chaos.nemesis.packages import (
    KillNemesis,
    LatencyNemesis,
    MixNemesis,
    Nemesis,
    NemesisOp,
    NoNemesis,
    PartitionNemesis,
    PauseNemesis,
)
from chaos.nemesis.coordinator import KillCoordinatorNemesis, node_env
from chaos.nemesis.restart import RestartFollowerNemesis


def _all() -> Nemesis:
    return MixNemesis([PartitionNemesis(), KillNemesis(targets=("one", "minority", "leader", "majority")),
                       PauseNemesis(), LatencyNemesis(), RestartFollowerNemesis()], name="all", explicit=False)


NEMESES: dict[str, Callable[..., Nemesis]] = {
    "none": NoNemesis,
    "partition": PartitionNemesis,
    "partition-leader": functools.partial(PartitionNemesis, grudges=("isolate_leader",)),
    "one-way": functools.partial(PartitionNemesis, grudges=("one_way",)),
    "bridge": functools.partial(PartitionNemesis, grudges=("bridge",)),
    "kill": KillNemesis,
    "kill-leader": functools.partial(KillNemesis, targets=("leader",)),
    "kill-majority": functools.partial(KillNemesis, targets=("majority",)),
    "pause": PauseNemesis,
    "pause-leader": functools.partial(PauseNemesis, targets=("leader",)),
    "latency": LatencyNemesis,
    "restart-follower": RestartFollowerNemesis,
    "kill-coordinator": KillCoordinatorNemesis,
    "all": _all,
}


class UnknownNemesis(ValueError):
    """No nemesis has that name."""


def make_nemesis(name: str, **options: Any) -> Nemesis:
    """Build the nemesis registered as ``name``, or a mix of a comma list of them (options go to
    the constructor of a single one)."""
    names = [n.strip() for n in name.split(",") if n.strip()]
    unknown = [n for n in names if n not in NEMESES]
    if unknown or not names:
        raise UnknownNemesis(f"unknown nemesis {unknown[0] if unknown else name!r}; known: {', '.join(sorted(NEMESES))}")
    if len(names) == 1:
        return NEMESES[names[0]](**options)
    if "none" in names:
        raise UnknownNemesis("'none' cannot be mixed with other nemeses")
    return MixNemesis([NEMESES[n]() for n in names], name=",".join(names))


__all__ = [
    "GRUDGES", "MIN_NODES", "NEMESES", "Groups", "Grudge", "KillCoordinatorNemesis", "KillNemesis", "LatencyNemesis", "MixNemesis", "Nemesis",
    "NemesisOp", "NoNemesis", "PartitionNemesis", "PauseNemesis", "RestartFollowerNemesis", "UnknownNemesis",
    "as_grudge", "bridge", "cut_pairs", "isolate_leader", "isolate_one", "majorities_ring", "make_nemesis", "node_env", "one_way",
    "random_halves",
]
