"""Nemeses for chaos runs: pure network topologies (grudges) and fault packages built on them.

::

    from chaos.nemesis import make_nemesis

    nemesis = make_nemesis("partition")
    op = await nemesis.start(cluster, rng)   # {"f": "start-partition", "value": {"grudge": ..., "cut": [...]}}
    op = await nemesis.stop(cluster)         # {"f": "stop-partition", "value": "network healed"}
    await nemesis.heal(cluster)              # final heal; always safe

See ``docs/chaos-cluster.md``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from chaos.nemesis.grudges import (
    GRUDGES,
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
    NoNemesis,
    PartitionNemesis,
    PauseNemesis,
)

NEMESES: dict[str, Callable[..., Nemesis]] = {
    "none": NoNemesis,
    "partition": PartitionNemesis,
    "partition-leader": functools.partial(PartitionNemesis, grudges=("isolate_leader",)),
    "one-way": functools.partial(PartitionNemesis, grudges=("one_way",)),
    "kill": KillNemesis,
    "kill-leader": functools.partial(KillNemesis, targets=("leader",)),
    "pause": PauseNemesis,
    "pause-leader": functools.partial(PauseNemesis, targets=("leader",)),
    "latency": LatencyNemesis,
    "all": MixNemesis,
}


class UnknownNemesis(ValueError):
    """No nemesis has that name."""


def make_nemesis(name: str, **options: Any) -> Nemesis:
    """Build the nemesis registered as ``name`` (options go to its constructor)."""
    try:
        factory = NEMESES[name]
    except KeyError:
        raise UnknownNemesis(f"unknown nemesis {name!r}; known: {', '.join(sorted(NEMESES))}") from None
    return factory(**options)


__all__ = [
    "GRUDGES", "NEMESES", "Groups", "Grudge", "KillNemesis", "LatencyNemesis", "MixNemesis", "Nemesis", "NoNemesis",
    "PartitionNemesis", "PauseNemesis", "UnknownNemesis", "as_grudge", "bridge", "cut_pairs", "isolate_leader",
    "isolate_one", "majorities_ring", "make_nemesis", "one_way", "random_halves",
]
