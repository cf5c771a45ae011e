"""Network topologies for partitions ("grudges"), as pure functions of the node names and a seeded RNG.

Each function sorts the names first, so the result depends only on the set of names and the
RNG's state, never on the order names were given in. Two shapes come out:

- **groups** (``list[list[str]]``): a clean partition; every link between groups is cut both
  ways (``isolate_one``, ``isolate_leader``, ``random_halves``).
- **grudge** (``dict[str, list[str]]``, Jepsen's word): receiver -> the senders it must not hear
  from. Symmetric entries are cut links; an entry without its mirror is a one-way loss
  (``majorities_ring``, ``bridge``, ``one_way``).

``GRUDGES`` maps a name to a function ``(nodes, rng, leader) -> grudge`` for all of them, which
is what the partition nemesis and ``ChaosCluster.apply_grudge`` use.
"""

from __future__ import annotations

import random
from typing import Callable, Iterable, Sequence

from chaos.cluster._topology import groups_grudge

Groups = list[list[str]]
Grudge = dict[str, list[str]]


def _sorted(nodes: Iterable[str]) -> list[str]:
    given = list(nodes)
    names = sorted(set(given), key=_natural)
    if len(names) != len(given):
        raise ValueError("node names must be distinct")
    return names


def _natural(name: str) -> tuple[str, int]:
    # "n10" after "n9": split a trailing number off so reports read naturally.
    stem = name.rstrip("0123456789")
    digits = name[len(stem):]
    return stem, int(digits) if digits else -1


def _need(nodes: Sequence[str], at_least: int, what: str) -> None:
    if len(nodes) < at_least:
        raise ValueError(f"{what} needs at least {at_least} nodes, not {len(nodes)}")


def isolate_one(nodes: Iterable[str], rng: random.Random) -> Groups:
    """Cut one node, chosen at random, off from the rest: ``[[x], rest]``."""
    names = _sorted(nodes)
    _need(names, 2, "isolate_one")
    x = rng.choice(names)
    return [[x], [n for n in names if n != x]]


def isolate_leader(nodes: Iterable[str], leader: str) -> Groups:
    """Cut the leader off from the rest: ``[[leader], rest]``."""
    names = _sorted(nodes)
    _need(names, 2, "isolate_leader")
    if leader not in names:
        raise ValueError(f"leader {leader!r} is not one of the nodes")
    return [[leader], [n for n in names if n != leader]]


def random_halves(nodes: Iterable[str], rng: random.Random) -> Groups:
    """Split the nodes at random into a minority and a majority: ``[smaller, larger]``."""
    names = _sorted(nodes)
    _need(names, 2, "random_halves")
    rng.shuffle(names)
    half = len(names) // 2
    return [sorted(names[:half], key=_natural), sorted(names[half:], key=_natural)]


def majorities_ring(nodes: Iterable[str], rng: random.Random) -> Grudge:
    """Every node sees a majority (itself included), and no two nodes see the same majority.

    The nodes are shuffled into a ring and each keeps links to its ``k = majority // 2``
    nearest neighbours on either side (so it sees ``2k + 1 >= majority`` nodes). With three
    nodes that ring is complete, so one link of it is cut instead: a line ``a - b - c`` where
    ``a`` sees {a, b}, ``b`` all three, ``c`` {b, c}.
    """
    names = _sorted(nodes)
    _need(names, 3, "majorities_ring")
    rng.shuffle(names)
    n = len(names)
    if n == 3:
        a, _, c = names
        return _canonical({a: [c], c: [a]})
    k = (n // 2 + 1) // 2
    grudge: Grudge = {}
    for i, name in enumerate(names):
        visible = {names[(i + d) % n] for d in range(-k, k + 1)}
        grudge[name] = [m for m in names if m not in visible]
    return _canonical(grudge)


def bridge(nodes: Iterable[str], rng: random.Random) -> Grudge:
    """Cut the nodes into two halves that cannot talk, joined by one node that talks to both."""
    names = _sorted(nodes)
    _need(names, 3, "bridge")
    rng.shuffle(names)
    middle = len(names) // 2
    left, right = names[:middle], names[middle + 1:]
    grudge: Grudge = {}
    for a in left:
        grudge[a] = list(right)
    for b in right:
        grudge[b] = list(left)
    return _canonical(grudge)


def one_way(nodes: Iterable[str], rng: random.Random) -> Grudge:
    """Lose everything one random node sends; it still hears every other node.

    A leader hit by this keeps receiving but its heartbeats are lost: the others elect a new
    leader, whose messages reach the old one and depose it. A follower hit by it keeps getting
    heartbeats, so it never times out, but its acknowledgements and votes are lost.
    """
    names = _sorted(nodes)
    _need(names, 2, "one_way")
    sender = rng.choice(names)
    return _canonical({r: [sender] for r in names if r != sender})


def _canonical(grudge: Grudge) -> Grudge:
    """Sort keys and values naturally and drop empty entries, so equal grudges print the same."""
    return {k: sorted(v, key=_natural) for k, v in sorted(grudge.items(), key=lambda kv: _natural(kv[0])) if v}


def as_grudge(nodes: Iterable[str], groups: Groups) -> Grudge:
    """Return the grudge of a partition into ``groups``."""
    names = _sorted(nodes)
    return _canonical(groups_grudge(names, groups))


def cut_pairs(grudge: Grudge) -> list[list[str]]:
    """Return the links a grudge cuts both ways, as sorted pairs."""
    pairs = {tuple(sorted((a, b), key=_natural)) for a, senders in grudge.items() for b in senders
             if a in grudge.get(b, ())}
    return [list(p) for p in sorted(pairs, key=lambda p: (_natural(p[0]), _natural(p[1])))]


GrudgeFn = Callable[[Sequence[str], random.Random, "str | None"], Grudge]


def _isolate_leader_or_one(nodes: Sequence[str], rng: random.Random, leader: str | None) -> Grudge:
    if leader is None:
        raise ValueError("isolate_leader needs the leader")
    return as_grudge(nodes, isolate_leader(nodes, leader))


# The fewest nodes each grudge can cut (a nemesis that draws one on fewer is a usage error).
MIN_NODES: dict[str, int] = {"isolate_one": 2, "isolate_leader": 2, "random_halves": 2, "majorities_ring": 3,
                             "bridge": 3, "one_way": 2}

GRUDGES: dict[str, GrudgeFn] = {
    "isolate_one": lambda nodes, rng, leader: as_grudge(nodes, isolate_one(nodes, rng)),
    "isolate_leader": _isolate_leader_or_one,
    "random_halves": lambda nodes, rng, leader: as_grudge(nodes, random_halves(nodes, rng)),
    "majorities_ring": lambda nodes, rng, leader: majorities_ring(nodes, rng),
    "bridge": lambda nodes, rng, leader: bridge(nodes, rng),
    "one_way": lambda nodes, rng, leader: one_way(nodes, rng),
}
