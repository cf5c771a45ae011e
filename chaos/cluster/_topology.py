"""Pure helpers that turn partitions (groups) and grudges into the links to cut."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

Pair = frozenset[str]


def complete_groups(names: Sequence[str], groups: Iterable[Iterable[str]]) -> list[list[str]]:
    """Return ``groups`` plus one more group of every node not listed (if any); check the names.

    Raises ``ValueError`` for an unknown name or a name listed twice.
    """
    known = set(names)
    seen: set[str] = set()
    result: list[list[str]] = []
    for group in groups:
        members = list(group)
        for name in members:
            if name not in known:
                raise ValueError(f"unknown node {name!r}; nodes are {', '.join(names)}")
            if name in seen:
                raise ValueError(f"node {name!r} is in two groups")
            seen.add(name)
        if members:
            result.append(members)
    rest = [n for n in names if n not in seen]
    if rest:
        result.append(rest)
    return result


def groups_grudge(names: Sequence[str], groups: Iterable[Iterable[str]]) -> dict[str, list[str]]:
    """Return the grudge of a partition: each node drops every node outside its group."""
    grudge: dict[str, list[str]] = {}
    for group in complete_groups(names, groups):
        inside = set(group)
        for name in group:
            dropped = [n for n in names if n not in inside]
            if dropped:
                grudge[name] = dropped
    return grudge


def grudge_links(names: Sequence[str], grudge: Mapping[str, Iterable[str]]) -> tuple[set[Pair], set[tuple[str, str]]]:
    """Split a grudge (receiver -> senders it drops) into cut pairs and one-way drops.

    A pair where each end drops the other is cut (both directions); where only one does, the
    result has ``(sender, receiver)`` in the one-way set.
    """
    known = set(names)
    drops: set[tuple[str, str]] = set()  # (sender, receiver)
    for receiver, senders in grudge.items():
        for sender in senders:
            if receiver not in known or sender not in known:
                raise ValueError(f"unknown node in grudge: {receiver!r} <- {sender!r}")
            if sender != receiver:
                drops.add((sender, receiver))
    cuts = {frozenset(d) for d in drops if (d[1], d[0]) in drops}
    one_way = {d for d in drops if frozenset(d) not in cuts}
    return cuts, one_way
