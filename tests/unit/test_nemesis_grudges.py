"""Grudges are pure functions of (names, seeded RNG, leader): golden outputs and properties.

Regenerate the golden file after an intended change with:
    RAFTWORK_UPDATE_GOLDEN=1 python -m pytest tests/unit/test_nemesis_grudges.py
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaos.cluster import complete_groups, groups_grudge, grudge_links
from chaos.nemesis import (
    GRUDGES,
    NEMESES,
    UnknownNemesis,
    as_grudge,
    bridge,
    cut_pairs,
    isolate_leader,
    isolate_one,
    majorities_ring,
    make_nemesis,
    one_way,
    random_halves,
)

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "nemesis" / "grudges.json"


def names(n: int) -> list[str]:
    return [f"n{i + 1}" for i in range(n)]


def golden_cases() -> dict[str, object]:
    cases: dict[str, object] = {}
    for n in (3, 4, 5, 7):
        for seed in (0, 1, 2):
            for kind, fn in GRUDGES.items():
                cases[f"{kind} n={n} seed={seed}"] = fn(names(n), random.Random(seed), "n2")
    return cases


def test_grudges_match_the_golden_file():
    cases = golden_cases()
    if os.environ.get("RAFTWORK_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(cases.items())]
        GOLDEN.write_text("{\n" + ",\n".join(lines) + "\n}\n")  # one case a line: readable diffs
    assert cases == json.loads(GOLDEN.read_text())


def test_golden_examples_read_as_documented():
    golden = json.loads(GOLDEN.read_text())
    # Three nodes: the majorities ring is a line a - b - c (one link cut).
    ring3 = golden["majorities_ring n=3 seed=0"]
    assert len(cut_pairs(ring3)) == 1
    # Five nodes: each node drops two others.
    assert all(len(v) == 2 for v in golden["majorities_ring n=5 seed=1"].values())
    assert golden["isolate_leader n=5 seed=0"]["n2"] == ["n1", "n3", "n4", "n5"]


@given(n=st.integers(3, 11), seed=st.integers(0, 2**32))
def test_majorities_ring_every_node_sees_a_distinct_majority(n, seed):
    grudge = majorities_ring(names(n), random.Random(seed))
    views = [frozenset(set(names(n)) - set(grudge.get(x, []))) for x in names(n)]
    assert all(len(v) > n // 2 for v in views)
    assert len(set(views)) == n
    assert all(a in grudge.get(b, []) for a in grudge for b in grudge[a])  # symmetric: links cut both ways


@given(n=st.integers(3, 11), seed=st.integers(0, 2**32))
def test_bridge_joins_two_halves_through_one_node(n, seed):
    grudge = bridge(names(n), random.Random(seed))
    bridges = [x for x in names(n) if x not in grudge]
    assert len(bridges) == 1
    left = set(grudge[next(iter(grudge))])
    right = set(grudge) - left
    assert left and right and left | right | set(bridges) == set(names(n))
    assert all(set(grudge[x]) == right for x in left) and all(set(grudge[x]) == left for x in right)


@given(n=st.integers(2, 11), seed=st.integers(0, 2**32))
def test_halves_and_isolation_are_partitions(n, seed):
    small, large = random_halves(names(n), random.Random(seed))
    assert (len(small), len(large)) == (n // 2, n - n // 2)
    assert sorted(small + large) == sorted(names(n))
    alone, rest = isolate_one(names(n), random.Random(seed))
    assert len(alone) == 1 and sorted(alone + rest) == sorted(names(n))


@given(n=st.integers(2, 11), seed=st.integers(0, 2**32))
def test_one_way_silences_one_sender_only(n, seed):
    grudge = one_way(names(n), random.Random(seed))
    senders = {s for v in grudge.values() for s in v}
    assert len(senders) == 1
    sender = senders.pop()
    assert sender not in grudge and set(grudge) == set(names(n)) - {sender}
    assert cut_pairs(grudge) == []


@given(seed=st.integers(0, 2**32), order=st.permutations(names(5)))
def test_the_order_names_are_given_in_does_not_matter(seed, order):
    for kind, fn in GRUDGES.items():
        assert fn(order, random.Random(seed), "n1") == fn(names(5), random.Random(seed), "n1"), kind


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="at least 3"):
        majorities_ring(names(2), random.Random(0))
    with pytest.raises(ValueError, match="at least 3"):
        bridge(names(2), random.Random(0))
    with pytest.raises(ValueError, match="not one of"):
        isolate_leader(names(3), "n9")
    with pytest.raises(ValueError, match="distinct"):
        isolate_one(["n1", "n1"], random.Random(0))
    with pytest.raises(ValueError, match="needs the leader"):
        GRUDGES["isolate_leader"](names(3), random.Random(0), None)


def test_unlisted_nodes_form_one_more_group():
    assert complete_groups(names(4), [["n1"]]) == [["n1"], ["n2", "n3", "n4"]]
    assert complete_groups(names(3), [["n1"], [], ["n2", "n3"]]) == [["n1"], ["n2", "n3"]]
    assert groups_grudge(names(3), []) == {}
    assert as_grudge(names(3), [["n2"]]) == {"n1": ["n2"], "n2": ["n1", "n3"], "n3": ["n2"]}
    with pytest.raises(ValueError, match="two groups"):
        complete_groups(names(3), [["n1"], ["n1"]])
    with pytest.raises(ValueError, match="unknown node"):
        complete_groups(names(3), [["x"]])


def test_grudge_links_split_cuts_from_one_way_drops():
    cuts, drops = grudge_links(names(3), {"n1": ["n2", "n3"], "n2": ["n1"]})
    assert cuts == {frozenset(("n1", "n2"))}
    assert drops == {("n3", "n1")}  # n1 does not hear n3; n3 still hears n1
    with pytest.raises(ValueError, match="unknown node"):
        grudge_links(names(2), {"n1": ["n5"]})


def test_registry_builds_every_nemesis_and_names_the_known_ones_on_a_typo():
    for name in NEMESES:
        assert make_nemesis(name).name in NEMESES
    with pytest.raises(UnknownNemesis, match=r"unknown nemesis 'partiton'; known: all, bridge, kill, .*partition"):
        make_nemesis("partiton")
    with pytest.raises(ValueError, match="unknown grudge"):
        make_nemesis("partition", grudges=("nope",))
